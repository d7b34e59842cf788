// `log`: each event as one JSON line, to stdout or appended to a file — for debugging and for
// piping into other tools. body = "envelope" (default: the event fields with data/previous) or
// "original" (the payload as Pipedrive sent it, on one line).
#include "handlers.hpp"

#include "pipehook/event/json.hpp"

#include <boost/json/serialize.hpp>

#include <cstdio>
#include <mutex>

namespace pipehook::handlers {
namespace {

namespace asio = boost::asio;

class log_handler final : public dispatch::handler {
 public:
  log_handler(std::string path, bool original) : path_(std::move(path)), original_(original) {}
  ~log_handler() override {
    if (out_ && out_ != stdout) std::fclose(out_);
  }

  asio::awaitable<dispatch::delivery_result> deliver(const event::stored_event& ev) override {
    std::string line = original_ ? one_line(ev.ev.body) : boost::json::serialize(event::to_json_envelope(ev));
    line += '\n';
    std::lock_guard lk(mu_);
    if (!out_) {  // opened on first use: building the handler (check-config) creates no file
      out_ = path_ == "-" ? stdout : std::fopen(path_.c_str(), "a");
      if (!out_) co_return dispatch::delivery_result::retry("cannot open " + path_ + ": " + std::strerror(errno));
    }
    if (std::fwrite(line.data(), 1, line.size(), out_) != line.size() || std::fflush(out_) != 0)
      co_return dispatch::delivery_result::retry(std::string("write failed: ") + std::strerror(errno));
    co_return dispatch::delivery_result::ok();
  }

 private:
  // JSON allows raw newlines only as whitespace between tokens: they can go.
  static std::string one_line(const std::string& body) {
    std::string out = body;
    for (char& c : out)
      if (c == '\n' || c == '\r') c = ' ';
    return out;
  }

  std::string path_;
  bool original_;
  std::FILE* out_ = nullptr;
  std::mutex mu_;
};

outcome<std::unique_ptr<dispatch::handler>> make_log(const config::handler_config& h, dispatch::settings_reader& s,
                                                     asio::any_io_executor) {
  auto path = s.string("path", "-");
  if (!path) return path.error();
  auto body = s.one_of("body", "envelope", {"envelope", "original"});
  if (!body) return body.error();
  return std::make_unique<log_handler>(path->empty() ? "-" : *path, *body == "original");
}

}  // namespace

void register_log() { dispatch::register_handler_type("log", make_log); }

}  // namespace pipehook::handlers
