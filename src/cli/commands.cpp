#include "pipehook/cli/commands.hpp"

#include "pipehook/cli/daemon.hpp"
#include "pipehook/config/config.hpp"
#include "pipehook/core/run_blocking.hpp"
#include "pipehook/core/time.hpp"
#include "pipehook/dispatch/dispatcher.hpp"
#include "pipehook/dispatch/handler.hpp"
#include "pipehook/dispatch/policy.hpp"
#include "pipehook/handlers/builtin.hpp"
#include "pipehook/store/outbox.hpp"
#include "pipehook/event/json.hpp"
#include "pipehook/pipedrive/client.hpp"
#include "pipehook/pipedrive/registrar.hpp"
#include "pipehook/store/reader.hpp"

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/json/array.hpp>
#include <boost/json/serialize.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <optional>
#include <tuple>
#include <variant>

namespace pipehook::cli {
namespace {

constexpr int exit_ok = 0;
constexpr int exit_failed = 1;
constexpr int exit_usage = 2;

int fail(int code, const std::string& message) {
  std::cerr << "pipehook: " << message << "\n";
  return code;
}

// --since/--until: RFC 3339 or a date ("2024-05-01"), epoch seconds, or a duration meaning "ago" ("2h").
outcome<std::int64_t> parse_time_arg(const std::string& flag, const std::string& text) {
  if (auto t = parse_iso8601_us(text)) return *t;
  if (!text.empty() && std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; }) &&
      text.size() <= 12)
    return std::stoll(text) * 1'000'000;
  if (auto ms = parse_duration_ms(text); ms && std::any_of(text.begin(), text.end(), [](char c) { return c > '9'; }))
    return now_us() - *ms * 1000;
  return make_failure(errc::invalid_argument, flag + " \"" + text +
                                                  "\" is not a time: use RFC 3339 (2024-05-01T10:00:00Z), a date "
                                                  "(2024-05-01), epoch seconds, or an age like 30m, 2h, 7d");
}

outcome<config::config> load(const std::string& path) {
  return config::load_config(path, config::process_env());
}

std::string relative(std::int64_t us) {
  const std::int64_t secs = (now_us() - us) / 1'000'000;
  if (secs < 0) return "in the future";
  if (secs < 60) return std::to_string(secs) + "s ago";
  if (secs < 3600) return std::to_string(secs / 60) + "m ago";
  if (secs < 86400) return std::to_string(secs / 3600) + "h ago";
  return std::to_string(secs / 86400) + "d ago";
}

// Aligned columns, two spaces apart; the first row is the header.
void print_cells(const std::vector<std::vector<std::string>>& cells) {
  std::vector<std::size_t> width(cells[0].size(), 0);
  for (const auto& row : cells)
    for (std::size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  for (const auto& row : cells) {
    std::string line;
    for (std::size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(width[i] - row[i].size() + 2, ' ');
    }
    std::cout << line << "\n";
  }
}

void print_table(const std::vector<event::stored_event>& rows) {
  std::vector<std::vector<std::string>> cells;
  cells.push_back({"ID", "OCCURRED_AT", "AGE", "ENTITY", "ACTION", "ENTITY_ID", "COMPANY", "USER", "V", "DELIVERIES"});
  for (const auto& r : rows) {
    const auto& e = r.ev;
    cells.push_back({std::to_string(r.id), format_rfc3339_us(e.occurred_at_us), relative(e.occurred_at_us), e.entity,
                     e.source_action == e.action ? e.action : e.action + " (" + e.source_action + ")",
                     e.entity_id.empty() ? "-" : e.entity_id, e.company_id.empty() ? "-" : e.company_id,
                     e.user_id.empty() ? "-" : e.user_id, std::to_string(e.version), std::to_string(r.deliveries)});
  }
  print_cells(cells);
}

// The event filters of `events list` and `events replay`, with --since/--until as text until parsed.
struct filter_args {
  store::event_filter f;
  std::string since, until;

  void add_to(CLI::App* cmd) {
    cmd->add_option("--entity", f.entity, "entity, e.g. deal, person, lead");
    cmd->add_option("--action", f.action, "create, change or delete")->check(CLI::IsMember({"create", "change", "delete"}));
    cmd->add_option("--entity-id", f.entity_id, "the object's id");
    cmd->add_option("--company-id", f.company_id, "the Pipedrive company id");
    cmd->add_option("--since", since, "occurred at or after: RFC 3339, a date, epoch seconds, or an age like 2h");
    cmd->add_option("--until", until, "occurred before (same forms as --since)");
  }
  outcome<store::event_filter> parsed() const {
    store::event_filter out = f;
    for (auto [flag, text, slot] : {std::tuple{"--since", &since, &out.since_us}, std::tuple{"--until", &until, &out.until_us}}) {
      if (text->empty()) continue;
      auto t = parse_time_arg(flag, *text);
      if (!t) return t.error();
      *slot = *t;
    }
    return out;
  }
};

int cmd_events_list(const std::string& config_path, const filter_args& args, const std::string& format) {
  auto parsed = args.parsed();
  if (!parsed) return fail(exit_usage, parsed.error().message);
  const store::event_filter& f = *parsed;
  auto cfg = load(config_path);
  if (!cfg) return fail(exit_usage, cfg.error().message);
  auto rd = store::reader::open(cfg->store.path);
  if (!rd) return fail(exit_failed, rd.error().message);
  auto rows = (*rd)->list(f, false);
  if (!rows) return fail(exit_failed, rows.error().message);
  if (format == "ndjson") {
    for (const auto& r : *rows) std::cout << boost::json::serialize(event::to_json(r)) << "\n";
  } else if (rows->empty()) {
    std::cerr << "no events match\n";
  } else {
    print_table(*rows);
  }
  return exit_ok;
}

int cmd_events_show(const std::string& config_path, std::int64_t id, const std::string& format) {
  auto cfg = load(config_path);
  if (!cfg) return fail(exit_usage, cfg.error().message);
  auto rd = store::reader::open(cfg->store.path);
  if (!rd) return fail(exit_failed, rd.error().message);
  auto ev = (*rd)->get(id);
  if (!ev) return fail(exit_failed, ev.error().message);
  if (format == "json") {
    std::cout << boost::json::serialize(event::to_json_detail(*ev)) << "\n";
    return exit_ok;
  }
  const boost::json::object o = event::to_json_detail(*ev);
  for (const auto& [key, value] : o) {
    if (key == "body") continue;
    std::cout << key << ": " << (value.is_string() ? std::string(value.as_string()) : boost::json::serialize(value)) << "\n";
  }
  std::cout << "body:\n" << ev->ev.body << "\n";
  return exit_ok;
}

int cmd_check_config(const std::string& config_path) {
  auto cfg = load(config_path);
  if (!cfg) return fail(exit_usage, cfg.error().message);
  std::cout << config::render_effective(*cfg);
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
  auto d = daemon::create(*cfg);
  if (!d) {
    const bool usage = d.error().code == make_error_code(errc::invalid_config);
    spdlog::critical("cannot start: {}", d.error().message);
    return usage ? exit_usage : exit_failed;
  }
  (*d)->run(true);
  return exit_ok;
}


// ---- pipehook webhooks: the Pipedrive API, one call at a time on a private io_context ----------

namespace asio = boost::asio;
namespace pd = pipedrive;

struct api_session {
  config::config cfg;
  asio::io_context ioc;
  std::unique_ptr<pd::client> api;
};

// Loads the config and builds the client; on failure prints why and returns the exit code.
std::variant<std::unique_ptr<api_session>, int> open_api(const std::string& config_path) {
  auto cfg = load(config_path);
  if (!cfg) return fail(exit_usage, cfg.error().message);
  if (auto ready = config::check_pipedrive_ready(*cfg); !ready) return fail(exit_usage, ready.error().message);
  auto s = std::make_unique<api_session>();
  s->cfg = *cfg;
  auto api = pd::client::create(s->ioc.get_executor(), s->cfg.pipedrive);
  if (!api) return fail(exit_usage, api.error().message);
  s->api = std::move(*api);
  return s;
}

int api_failed(const pd::api_error& e) { return fail(exit_failed, e.message); }

std::string event_label(const pd::webhook& w) {
  return pd::normalized_action(w.event_action) + "." + w.event_object;
}

int cmd_webhooks_list(const std::string& config_path, const std::string& format) {
  auto opened = open_api(config_path);
  if (auto* code = std::get_if<int>(&opened)) return *code;
  auto& s = *std::get<0>(opened);
  auto r = run_blocking(s.ioc, s.api->list_webhooks());
  if (!r) return api_failed(r.error());
  const std::string& ours = s.cfg.registrar.subscription_url;
  if (format == "json") {
    boost::json::array arr;
    for (const auto& w : *r) {
      boost::json::object o;
      o["id"] = w.id;
      o["event"] = event_label(w);
      o["event_action"] = w.event_action;
      o["event_object"] = w.event_object;
      o["version"] = w.version;
      o["subscription_url"] = w.subscription_url;
      o["ours"] = !ours.empty() && w.subscription_url == ours;
      o["is_active"] = w.is_active;
      o["name"] = w.name;
      o["type"] = w.type;
      o["user_id"] = w.user_id;
      o["http_auth_user"] = w.http_auth_user;
      o["add_time"] = w.add_time;
      if (w.last_http_status) o["last_http_status"] = w.last_http_status;
      else o["last_http_status"] = nullptr;
      if (w.last_delivery_time.empty()) o["last_delivery_time"] = nullptr;
      else o["last_delivery_time"] = w.last_delivery_time;
      arr.push_back(std::move(o));
    }
    std::cout << boost::json::serialize(arr) << "\n";
    return exit_ok;
  }
  if (r->empty()) {
    std::cerr << "no webhooks\n";
    return exit_ok;
  }
  std::vector<std::vector<std::string>> cells;
  cells.push_back({"ID", "EVENT", "VERSION", "ACTIVE", "LAST_DELIVERY", "USER", "NAME", "URL"});
  for (const auto& w : *r) {
    std::string last = w.last_http_status ? std::to_string(w.last_http_status) : "-";
    if (!w.last_delivery_time.empty()) last += " at " + w.last_delivery_time;
    std::string url = w.subscription_url;
    if (!ours.empty() && url == ours) url += "  (pipehook)";
    cells.push_back({std::to_string(w.id), event_label(w), w.version, w.is_active ? "yes" : "no", last,
                     w.user_id ? std::to_string(w.user_id) : "-", w.name, url});
  }
  print_cells(cells);
  return exit_ok;
}

int cmd_webhooks_whoami(const std::string& config_path) {
  auto opened = open_api(config_path);
  if (auto* code = std::get_if<int>(&opened)) return *code;
  auto& s = *std::get<0>(opened);
  auto r = run_blocking(s.ioc, s.api->whoami());
  if (!r) return api_failed(r.error());
  std::cout << "user:    " << r->id << " " << r->name << (r->email.empty() ? "" : " <" + r->email + ">")
            << (r->is_admin ? " (admin)" : "") << "\n"
            << "company: " << r->company_id << " " << r->company_name
            << (r->company_domain.empty() ? "" : " (" + r->company_domain + ".pipedrive.com)") << "\n"
            << "api:     " << s.api->base_url() << "\n";
  return exit_ok;
}

int cmd_webhooks_delete(const std::string& config_path, std::int64_t id) {
  auto opened = open_api(config_path);
  if (auto* code = std::get_if<int>(&opened)) return *code;
  auto& s = *std::get<0>(opened);
  auto r = run_blocking(s.ioc, s.api->delete_webhook(id));
  if (!r) return api_failed(r.error());
  std::cout << "deleted webhook #" << id << "\n";
  return exit_ok;
}

int cmd_webhooks_sync(const std::string& config_path, bool dry_run, bool prune) {
  auto opened = open_api(config_path);
  if (auto* code = std::get_if<int>(&opened)) return *code;
  auto& s = *std::get<0>(opened);
  if (auto ready = config::check_registrar_ready(s.cfg); !ready) return fail(exit_usage, ready.error().message);
  pd::desired_state d = pd::desired_from(s.cfg);
  d.prune = d.prune || prune;
  std::cout << (dry_run ? "dry run: " : "") << "webhooks for " << d.subscription_url << " (version " << d.version
            << (d.prune ? ", prune" : "") << ")\n";
  auto r = run_blocking(s.ioc, pd::reconcile(*s.api, d, dry_run, [](const std::string& line) {
    std::cout << line << "\n" << std::flush;
  }));
  if (!r) return api_failed(r.error());
  if (dry_run) {
    std::cout << "dry run: nothing was changed\n";
    return exit_ok;
  }
  std::cout << r->managed.size() << " webhook(s) in place (" << r->created.size() << " created, "
            << r->deleted.size() << " deleted)\n";
  return exit_ok;
}


// ---- pipehook handlers / events replay: the outbox ----------------------------------------------

std::string age(std::int64_t since_us) {
  std::string r = relative(since_us);
  return r.size() > 4 && r.compare(r.size() - 4, 4, " ago") == 0 ? r.substr(0, r.size() - 4) : r;
}

const config::handler_config* find_handler(const config::config& c, const std::string& name) {
  for (const auto& h : c.handlers)
    if (h.name == name) return &h;
  return nullptr;
}

std::string handler_names(const config::config& c) {
  std::string out;
  for (const auto& h : c.handlers) out += (out.empty() ? "" : ", ") + h.name;
  return out.empty() ? "none configured" : out;
}

int cmd_handlers_status(const std::string& config_path, const std::string& format) {
  auto cfg = load(config_path);
  if (!cfg) return fail(exit_usage, cfg.error().message);
  auto ob = store::outbox::open(cfg->store.path);
  if (!ob) return fail(exit_failed, ob.error().message);
  auto counts = (*ob)->counts();
  if (!counts) return fail(exit_failed, counts.error().message);
  // Every configured handler, also those with no rows yet; rows of handlers no longer configured too.
  std::vector<store::handler_counts> rows;
  for (const auto& h : cfg->handlers) {
    store::handler_counts c;
    c.handler = h.name;
    for (const auto& have : *counts)
      if (have.handler == h.name) c = have;
    rows.push_back(c);
  }
  for (const auto& have : *counts)
    if (!find_handler(*cfg, have.handler)) rows.push_back(have);
  if (format == "json") {
    boost::json::array arr;
    for (const auto& r : rows) {
      boost::json::object o;
      o["handler"] = r.handler;
      o["configured"] = find_handler(*cfg, r.handler) != nullptr;
      o["pending"] = r.pending;
      o["retrying"] = r.retrying;
      o["dead"] = r.dead;
      o["done"] = r.done;
      if (r.oldest_pending_us) o["oldest_pending_at"] = format_rfc3339_us(*r.oldest_pending_us);
      else o["oldest_pending_at"] = nullptr;
      if (r.last_error.empty()) o["last_error"] = nullptr;
      else o["last_error"] = r.last_error;
      if (r.last_error_at_us) o["last_error_at"] = format_rfc3339_us(r.last_error_at_us);
      else o["last_error_at"] = nullptr;
      arr.push_back(std::move(o));
    }
    std::cout << boost::json::serialize(arr) << "\n";
    return exit_ok;
  }
  if (rows.empty()) {
    std::cerr << "no handlers configured\n";
    return exit_ok;
  }
  std::vector<std::vector<std::string>> cells;
  cells.push_back({"HANDLER", "PENDING", "RETRYING", "DEAD", "DONE", "OLDEST_PENDING", "LAST_ERROR"});
  for (const auto& r : rows) {
    std::string name = r.handler + (find_handler(*cfg, r.handler) ? "" : " (not configured)");
    std::string last = r.last_error.empty() ? "-" : relative(r.last_error_at_us) + ": " + r.last_error;
    if (last.size() > 120) last = last.substr(0, 117) + "...";
    cells.push_back({name, std::to_string(r.pending), std::to_string(r.retrying), std::to_string(r.dead),
                     std::to_string(r.done), r.oldest_pending_us ? age(*r.oldest_pending_us) : "-", last});
  }
  print_cells(cells);
  return exit_ok;
}

int cmd_handlers_retry(const std::string& config_path, const std::string& name) {
  auto cfg = load(config_path);
  if (!cfg) return fail(exit_usage, cfg.error().message);
  if (!find_handler(*cfg, name))
    return fail(exit_usage, "no handler named \"" + name + "\" in the config (" + handler_names(*cfg) + ")");
  auto ob = store::outbox::open(cfg->store.path);
  if (!ob) return fail(exit_failed, ob.error().message);
  auto n = (*ob)->retry_dead(name);
  if (!n) return fail(exit_failed, n.error().message);
  std::cout << "moved " << *n << " dead deliveries of " << name << " back to pending\n";
  return exit_ok;
}

constexpr std::int64_t replay_confirm_threshold = 1000;

int cmd_events_replay(const std::string& config_path, const std::string& name, const filter_args& args, bool yes) {
  auto parsed = args.parsed();
  if (!parsed) return fail(exit_usage, parsed.error().message);
  const store::event_filter& f = *parsed;
  auto cfg = load(config_path);
  if (!cfg) return fail(exit_usage, cfg.error().message);
  const config::handler_config* hc = find_handler(*cfg, name);
  if (!hc) return fail(exit_usage, "no handler named \"" + name + "\" in the config (" + handler_names(*cfg) + ")");
  handlers::register_builtin();
  asio::io_context ioc;
  auto h = dispatch::make_handler(*hc, ioc.get_executor());
  if (!h) return fail(exit_usage, h.error().message);
  auto ob = store::outbox::open(cfg->store.path);
  if (!ob) return fail(exit_failed, ob.error().message);
  // The handler's own rule applies too: a replay never sends a handler what it would not get.
  const dispatch::handler* handler = h->get();
  store::event_predicate matches = [hc, handler](const event::event& e) {
    return dispatch::matches(hc->match, e) && handler->accepts(e);
  };
  auto n = (*ob)->count_matching(f, matches);
  if (!n) return fail(exit_failed, n.error().message);
  std::cout << *n << " event(s) match for handler " << name << "\n";
  if (*n == 0) return exit_ok;
  if (*n > replay_confirm_threshold && !yes)
    return fail(exit_usage, "more than " + std::to_string(replay_confirm_threshold) +
                                " events: add --yes to re-queue them (narrow it with --entity, --since, ...)");
  auto queued = (*ob)->replay(name, hc->ordered, f, matches);
  if (!queued) return fail(exit_failed, queued.error().message);
  std::cout << "re-queued " << *queued << " delivery(ies) for " << name
            << "; a running pipehook delivers them within a second\n";
  return exit_ok;
}

}  // namespace

int run(int argc, char** argv) {
  CLI::App app{"pipehook: a durable receiver for Pipedrive webhooks"};
  app.require_subcommand(1);
  app.fallthrough();
  std::string config_path;
  app.add_option("-c,--config", config_path, "TOML config file (default: built-in defaults)")
      ->envname("PIPEHOOK_CONFIG")
      ->check(CLI::ExistingFile);

  std::string log_level;
  auto* serve = app.add_subcommand("serve", "receive webhooks and store them in the event log");
  serve->add_option("--log-level", log_level, "override log.level")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));

  auto* check = app.add_subcommand("check-config", "validate the config and print it, secrets masked");
  auto* version = app.add_subcommand("version", "print the version");

  auto* events = app.add_subcommand("events", "query the event log (read-only; safe while serve runs)");
  events->require_subcommand(1);
  filter_args list_args;
  std::string format = "table";
  auto* list = events->add_subcommand("list", "list events, newest first");
  list_args.add_to(list);
  list->add_option("--limit", list_args.f.limit, "at most this many (default 50)")->check(CLI::Range(1, 100000));
  list->add_option("--format", format, "table or ndjson")->check(CLI::IsMember({"table", "ndjson"}));

  std::int64_t show_id = 0;
  std::string show_format = "table";
  auto* show = events->add_subcommand("show", "show one event with its body");
  show->add_option("id", show_id, "event id")->required()->check(CLI::PositiveNumber);
  show->add_option("--format", show_format, "table or json")->check(CLI::IsMember({"table", "json"}));

  std::string replay_handler;
  filter_args replay_args;
  bool replay_yes = false;
  auto* replay = events->add_subcommand("replay", "re-queue matching events for a handler (at-least-once again)");
  replay->add_option("--handler", replay_handler, "the handler's name")->required();
  replay_args.add_to(replay);
  replay->add_flag("--yes", replay_yes, "confirm a replay of more than 1000 events");

  auto* handlers_cmd = app.add_subcommand("handlers", "the handlers' deliveries: status, retry the dead");
  handlers_cmd->require_subcommand(1);
  std::string status_format = "table", retry_handler;
  auto* h_status = handlers_cmd->add_subcommand("status", "per handler: pending, retrying, dead, done, oldest, last error");
  h_status->add_option("--format", status_format, "table or json")->check(CLI::IsMember({"table", "json"}));
  auto* h_retry = handlers_cmd->add_subcommand("retry", "move a handler's dead deliveries back to pending");
  h_retry->add_option("--handler", retry_handler, "the handler's name")->required();

  auto* webhooks = app.add_subcommand("webhooks", "the Pipedrive webhooks: list, sync with the config, delete");
  webhooks->require_subcommand(1);
  std::string wh_format = "table";
  auto* wh_list = webhooks->add_subcommand("list", "list the webhooks Pipedrive has for this token");
  wh_list->add_option("--format", wh_format, "table or json")->check(CLI::IsMember({"table", "json"}));
  bool dry_run = false, prune = false;
  auto* wh_sync = webhooks->add_subcommand("sync", "create the configured webhooks that are missing (prints the plan)");
  wh_sync->add_flag("--dry-run", dry_run, "print the plan; call no write endpoint");
  wh_sync->add_flag("--prune", prune, "also delete webhooks at registrar.subscription_url that are not configured");
  std::int64_t wh_delete_id = 0;
  auto* wh_delete = webhooks->add_subcommand("delete", "delete one webhook by id");
  wh_delete->add_option("id", wh_delete_id, "webhook id")->required()->check(CLI::PositiveNumber);
  auto* wh_whoami = webhooks->add_subcommand("whoami", "check the token: its user and company");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? exit_ok : exit_usage;
  }

  if (*version) {
    std::cout << "pipehook " << PIPEHOOK_VERSION << "\n";
    return exit_ok;
  }
  if (*check) return cmd_check_config(config_path);
  if (*serve) return cmd_serve(config_path, log_level);
  if (*list) return cmd_events_list(config_path, list_args, format);
  if (*show) return cmd_events_show(config_path, show_id, show_format);
  if (*replay) return cmd_events_replay(config_path, replay_handler, replay_args, replay_yes);
  if (*h_status) return cmd_handlers_status(config_path, status_format);
  if (*h_retry) return cmd_handlers_retry(config_path, retry_handler);
  if (*wh_list) return cmd_webhooks_list(config_path, wh_format);
  if (*wh_sync) return cmd_webhooks_sync(config_path, dry_run, prune);
  if (*wh_delete) return cmd_webhooks_delete(config_path, wh_delete_id);
  if (*wh_whoami) return cmd_webhooks_whoami(config_path);
  return exit_usage;
}

}  // namespace pipehook::cli
