#pragma once
// `pipehook serve`: the event log, the webhook endpoint and the HTTP server wired together, with
// signal handling, a per-minute summary line and graceful shutdown.

#include "pipehook/config/config.hpp"
#include "pipehook/core/error.hpp"
#include "pipehook/http/types.hpp"

#include <boost/asio/ip/tcp.hpp>

#include <chrono>

#include <memory>

namespace pipehook::cli {

class daemon {
 public:
  // Intervals no config sets: the production values by default; tests shorten them rather than
  // wait for them.
  struct tuning {
    std::chrono::milliseconds dispatch_poll{1'000};         // workers look at the outbox at least this often
    std::chrono::milliseconds registrar_retry_floor{2'000};  // first wait after a transient registrar failure
    std::chrono::milliseconds registrar_resync{0};           // > 0: instead of registrar.resync_interval (tests)
  };

  // Opens the event log and binds the listener; errors say what could not be opened or bound.
  static outcome<std::unique_ptr<daemon>> create(const config::config& c, tuning t);
  static outcome<std::unique_ptr<daemon>> create(const config::config& c) { return create(c, tuning{}); }
  ~daemon();

  // The bound address (the real port when the config asked for port 0).
  boost::asio::ip::tcp::endpoint endpoint() const;
  // The admin listener's bound address (port 0 in the config: the real one); unset when disabled.
  boost::asio::ip::tcp::endpoint admin_endpoint() const;
  // The webhook listener's connections now (any thread): also on /metrics.
  http::connection_counts webhook_connections() const;

  // Serves until SIGINT/SIGTERM (if handle_signals; SIGHUP then reloads, see reload()) or stop();
  // returns once in-flight requests are
  // answered and the writer has committed everything queued.
  void run(bool handle_signals);

  // Begins a graceful stop; callable from any thread.
  void stop();

  struct impl;  // opaque

 private:
  explicit daemon(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

}  // namespace pipehook::cli
