#include "pipehook/cli/commands.hpp"

#include "common.hpp"

#include <CLI/CLI.hpp>

namespace pipehook::cli {

int run(int argc, char** argv) {
  CLI::App app{"pipehook: a durable receiver for Pipedrive webhooks"};
  app.require_subcommand(1);
  app.fallthrough();
  context ctx;
  app.add_option("-c,--config", ctx.config_path, "TOML config file (default: built-in defaults)")
      ->envname("PIPEHOOK_CONFIG")
      ->check(CLI::ExistingFile);
  add_serve_commands(app, ctx);
  add_events_commands(app, ctx);
  add_handlers_commands(app, ctx);
  add_webhooks_commands(app, ctx);
  add_backfill_commands(app, ctx);
  try {
    app.parse(argc, argv);  // runs the chosen subcommand's callback, which sets ctx.exit_code
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? exit_ok : exit_usage;
  }
  return ctx.exit_code;
}

}  // namespace pipehook::cli
