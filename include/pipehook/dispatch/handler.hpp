#pragma once
// The handler interface and the registry of handler types. A handler type is one class that
// delivers one event at a time (asynchronously) and says how it went: done, retry later, or
// permanent failure. It is built from its [[handlers]] table by a factory registered under the
// type's name; the factory reads its own keys through settings_reader, which rejects the ones
// nobody read. The dispatcher does the rest (matching, outbox, retries, ordering, concurrency).

#include "pipehook/config/config.hpp"
#include "pipehook/core/error.hpp"
#include "pipehook/event/event.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace pipehook::dispatch {

enum class verdict { done, retry, permanent };

struct delivery_result {
  verdict v = verdict::done;
  std::string error;  // what went wrong (retry, permanent), for the outbox row and `handlers status`
  std::optional<std::chrono::milliseconds> retry_after;  // the receiver's wish (Retry-After)

  static delivery_result ok() { return {}; }
  static delivery_result retry(std::string why, std::optional<std::chrono::milliseconds> after = {}) {
    return {verdict::retry, std::move(why), after};
  }
  static delivery_result permanent(std::string why) { return {verdict::permanent, std::move(why), {}}; }
};

class handler {
 public:
  virtual ~handler() = default;
  // Beyond the config's match filter, a type may decline events itself. Called on the event log's
  // writer thread: must be fast and thread-safe.
  virtual bool accepts(const event::event&) const { return true; }
  // Delivers one event (at most `concurrency` at once). Never throws: failures are results.
  virtual boost::asio::awaitable<delivery_result> deliver(const event::stored_event& ev) = 0;
  // Shutdown: abort deliveries in flight (they end as retry; the outbox redelivers after restart).
  virtual void cancel() {}
};

// A handler type's own keys: typed getters that name the key in errors, and finish() that rejects
// keys nobody asked for ("unknown key 'handlers.sink.urll'").
class settings_reader {
 public:
  explicit settings_reader(const config::handler_config& h) : h_(h) {}
  outcome<std::string> string(const std::string& key, std::string fallback = {});
  outcome<bool> boolean(const std::string& key, bool fallback);
  outcome<std::int64_t> integer(const std::string& key, std::int64_t fallback, std::int64_t min, std::int64_t max);
  outcome<std::int64_t> duration_ms(const std::string& key, std::int64_t fallback, std::int64_t min, std::int64_t max);
  outcome<std::map<std::string, std::string>> table(const std::string& key);
  outcome<std::string> one_of(const std::string& key, std::string fallback, std::initializer_list<std::string_view> allowed);
  // A file path the process must be able to read ("" when the key is absent).
  outcome<std::string> readable_file(const std::string& key);
  // ca_file, client_cert and client_key (TLS for a queue's client): readable, the last two together.
  struct tls_files {
    std::string ca_file, client_cert, client_key;
  };
  outcome<tls_files> tls();
  outcome<void> finish() const;
  std::string name(const std::string& key) const { return h_.where + "." + key; }

 private:
  const config::setting_value* find(const std::string& key);
  const config::handler_config& h_;
  std::set<std::string> used_;
};

using factory = std::function<outcome<std::unique_ptr<handler>>(const config::handler_config& h, settings_reader& s,
                                                                  boost::asio::any_io_executor ex)>;

void register_handler_type(const std::string& type, factory f);
std::vector<std::string> handler_types();

// Builds the handler of one [[handlers]] table (no I/O: connections are made on first use).
outcome<std::unique_ptr<handler>> make_handler(const config::handler_config& h, boost::asio::any_io_executor ex);

// "${NAME}" in a configured value is replaced by the environment variable NAME (an error names it
// when unset), so secrets such as Authorization headers stay out of the file.
outcome<std::string> expand_env(const std::string& value, const std::string& key_name, const config::env_lookup& env);

}  // namespace pipehook::dispatch
