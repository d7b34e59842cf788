#include "pipehook/cli/logging.hpp"

#include "pipehook/core/codec.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

namespace pipehook::cli {

namespace {

// The message as a JSON string body (the pattern supplies the quotes).
class json_escaped_message final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    append_json_escaped(dest, std::string_view(msg.payload.data(), msg.payload.size()));
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<json_escaped_message>(); }
};

}  // namespace

outcome<void> setup_logging(const config::log_config& c) {
  spdlog::sink_ptr sink;
  if (c.file.empty()) {
    sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  } else {
    try {  // opened anew each time: after logrotate moved the file, SIGHUP starts a new one
      sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(c.file, false);
    } catch (const spdlog::spdlog_ex& e) {
      return make_failure(errc::invalid_config, "log.file \"" + c.file + "\": " + e.what());
    }
  }
  auto logger = std::make_shared<spdlog::logger>("pipehook", std::move(sink));
  if (c.format == "json") {
    auto f = std::make_unique<spdlog::pattern_formatter>();
    f->add_flag<json_escaped_message>('*').set_pattern(R"({"time":"%Y-%m-%dT%H:%M:%S.%e%z","level":"%l","msg":"%*"})");
    logger->set_formatter(std::move(f));
  } else {
    logger->set_pattern(c.file.empty() ? "%Y-%m-%dT%H:%M:%S.%e%z %^%l%$ %v" : "%Y-%m-%dT%H:%M:%S.%e%z %l %v");
  }
  logger->set_level(spdlog::level::from_str(c.level));
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(std::move(logger));
  return {};
}

}  // namespace pipehook::cli
