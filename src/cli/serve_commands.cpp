// `pipehook serve`, `check-config` and `version`.
#include "common.hpp"

#include "pipehook/cli/daemon.hpp"
#include "pipehook/cli/logging.hpp"
#include "pipehook/dispatch/dispatcher.hpp"
#include "pipehook/handlers/builtin.hpp"

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <iostream>
#include <memory>

namespace pipehook::cli {
namespace {

int cmd_check_config(const std::string& config_path) {
  auto cfg = load(config_path);
  if (!cfg) return fail(exit_usage, cfg.error().message);
  std::cout << config::render_effective(*cfg);
  for (const auto& w : cfg->warnings) std::cerr << "warning: " << w << "\n";
  handlers::register_builtin();
  if (auto built = dispatch::dispatcher::create(cfg->handlers); !built) return fail(exit_usage, built.error().message);
  if (auto ready = config::check_serve_ready(*cfg); !ready) return fail(exit_usage, ready.error().message);
  std::cerr << "configuration OK\n";
  return exit_ok;
}

int cmd_serve(const std::string& config_path, const std::string& log_level) {
  auto cfg = load(config_path);
  if (!cfg) return fail(exit_usage, cfg.error().message);
  if (!log_level.empty()) cfg->log.level = log_level;  // until a SIGHUP rereads the file
  if (auto logged = setup_logging(cfg->log); !logged) return fail(exit_usage, logged.error().message);
  for (const auto& w : cfg->warnings) spdlog::warn("{}", w);
  auto d = daemon::create(*cfg);
  if (!d) {
    const bool usage = d.error().code == make_error_code(errc::invalid_config);
    spdlog::critical("cannot start: {}", d.error().message);
    return usage ? exit_usage : exit_failed;
  }
  (*d)->run(true);
  return exit_ok;
}

}  // namespace

void add_serve_commands(CLI::App& app, context& ctx) {
  auto log_level = std::make_shared<std::string>();
  auto* serve = app.add_subcommand("serve", "receive webhooks and store them in the event log");
  serve->add_option("--log-level", *log_level, "override log.level")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
  serve->callback([&ctx, log_level] { ctx.exit_code = cmd_serve(ctx.config_path, *log_level); });

  app.add_subcommand("check-config", "validate the config and print it, secrets masked")->callback([&ctx] {
    ctx.exit_code = cmd_check_config(ctx.config_path);
  });
  app.add_subcommand("version", "print the version")->callback([&ctx] {
    std::cout << "pipehook " << PIPEHOOK_VERSION << "\n";
    ctx.exit_code = exit_ok;
  });
}

}  // namespace pipehook::cli
