#pragma once
// What the command families share (internal to src/cli): exit codes and the one mapping from
// failures to them, config loading, tables, the handler lookup, and each family's registration.

#include "pipehook/config/config.hpp"
#include "pipehook/core/error.hpp"
#include "pipehook/store/event_log.hpp"
#include "pipehook/store/location.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace pipehook::cli {

inline constexpr int exit_ok = 0;
inline constexpr int exit_failed = 1;  // failed at run time (the store, the network, Pipedrive)
inline constexpr int exit_usage = 2;   // a bad flag, parameter or config

// Prints "pipehook: <message>" on stderr and returns `code`.
int fail(int code, const std::string& message);

// The one mapping from a failure to an exit code: invalid arguments and configs are usage errors,
// everything else failed at run time. Prints the message.
int fail_with(const failure& f);

outcome<config::config> load(const std::string& path);

// Where the config says the event log is.
store::location store_location(const config::config& c);

// Opens the config's event log for writing (SQLite or PostgreSQL), creating or upgrading its schema.
// PostgreSQL: new delivery rows start as claims of `replica_id` ("": this process as a replica).
outcome<std::unique_ptr<store::event_log>> open_event_log(const config::config& c, const store::writer_options& writer,
                                                          const std::string& replica_id = {});

// "5m ago"; age() without the " ago".
std::string relative(std::int64_t us);
std::string age(std::int64_t since_us);

// Aligned columns, two spaces apart; the first row is the header.
void print_cells(const std::vector<std::vector<std::string>>& cells);

const config::handler_config* find_handler(const config::config& c, const std::string& name);
std::string handler_names(const config::config& c);  // "a, b" or "none configured"

// What every subcommand's callback reads (--config) and writes (its exit code).
struct context {
  std::string config_path;
  int exit_code = exit_usage;
};

// Each family registers its subcommands on `app`, each with a callback that runs it.
void add_serve_commands(CLI::App& app, context& ctx);     // serve, check-config, version
void add_events_commands(CLI::App& app, context& ctx);    // events list|export|show|timeline|stats|purge|replay
void add_handlers_commands(CLI::App& app, context& ctx);  // handlers status|retry
void add_webhooks_commands(CLI::App& app, context& ctx);  // webhooks list|sync|delete|whoami
void add_backfill_commands(CLI::App& app, context& ctx);  // backfill [--since ...], backfill list|show

}  // namespace pipehook::cli
