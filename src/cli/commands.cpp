#include "pipehook/cli/commands.hpp"

#include "pipehook/admin/query.hpp"
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
#include "pipehook/store/retention.hpp"

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

// The event filters of `events list|export|replay`: the admin API's parameters under flag names
// (--entity-id for entity_id), parsed by the same code so both accept and refuse the same things.
struct filter_args {
  std::map<std::string, std::string> values;  // API parameter name -> flag value
  void add_to(CLI::App* cmd, bool paging) {
    auto opt = [&](const std::string& name, const std::string& help) {
      std::string flag = "--" + name;
      std::replace(flag.begin(), flag.end(), '_', '-');
      cmd->add_option(flag, values[name], help);
    };
    opt("entity", "entity, e.g. deal, person, lead");
    opt("action", "create, change or delete");
    opt("entity_id", "the object's id");
    opt("company_id", "the Pipedrive company id");
    opt("user_id", "the user who made the change");
    opt("webhook_id", "the webhook that delivered it");
    opt("change_source", "app, api, ...");
    opt("q", "a changed field's name contains this (case-insensitive)");
    opt("since", "occurred at or after: RFC 3339, a date, epoch seconds, or an age like 2h");
    opt("until", "occurred before (same forms as --since)");
    if (paging) {
      opt("limit", "at most this many (1-1000, default 50)");
      opt("cursor", "the next_cursor of the previous page");
      opt("order", "desc (newest first, default) or asc");
    }
  }
  admin::params as_params() const {
    admin::params p;
    for (const auto& [k, v] : values)
      if (!v.empty()) p.emplace_back(k, v);
    return p;
  }
  outcome<admin::list_query> parsed() const { return flag_errors(admin::parse_list_query(as_params())); }

  // "entity_id: ..." -> "--entity-id: ...": the error names the flag the user typed.
  template <class T>
  static outcome<T> flag_errors(outcome<T> r) {
    if (r) return r;
    failure f = r.error();
    const auto colon = f.message.find(':');
    if (colon != std::string::npos && colon < 20) {
      std::string flag = "--" + f.message.substr(0, colon);
      std::replace(flag.begin(), flag.end(), '_', '-');
      f.message = flag + f.message.substr(colon);
    }
    return f;
  }
};

outcome<std::unique_ptr<store::reader>> open_reader(const std::string& config_path) {
  auto cfg = load(config_path);
  if (!cfg) return cfg.error();
  return store::reader::open(cfg->store.path);
}

// Exit codes: a bad flag or config is a usage error (2), the store failing is 1.
int fail_with(const failure& f) {
  return fail(f.code == errc::invalid_argument || f.code == errc::invalid_config ? exit_usage : exit_failed, f.message);
}

int cmd_events_list(const std::string& config_path, const filter_args& args, const std::string& format) {
  auto q = args.parsed();
  if (!q) return fail_with(q.error());
  auto rd = open_reader(config_path);
  if (!rd) return fail_with(rd.error());
  auto page = admin::read_page(**rd, q->filter, false);
  if (!page) return fail_with(page.error());
  if (format == "ndjson") {
    std::string out;
    for (const auto& r : page->events) {
      event::append_json(out, r);
      out += '\n';
    }
    std::cout << out;
  } else if (format == "json") {
    std::cout << boost::json::serialize(admin::page_json(*page, event::to_json)) << "\n";
  } else if (page->events.empty()) {
    std::cerr << "no events match\n";
  } else {
    print_table(page->events);
    if (page->next_cursor) std::cerr << "more: --cursor " << *page->next_cursor << "\n";
  }
  return exit_ok;
}

// Every matching event as NDJSON, a page at a time: constant memory, short read transactions.
int cmd_events_export(const std::string& config_path, const filter_args& args) {
  auto q = args.parsed();
  if (!q) return fail_with(q.error());
  auto rd = open_reader(config_path);
  if (!rd) return fail_with(rd.error());
  store::event_filter f = q->filter;
  f.limit = admin::export_page_size;
  std::string out;
  for (bool more = true; more;) {
    out.clear();
    auto next = admin::append_export_page(**rd, f, out);
    if (!next) return fail_with(next.error());
    more = *next;
    std::fwrite(out.data(), 1, out.size(), stdout);
  }
  std::fflush(stdout);
  return std::ferror(stdout) ? fail(exit_failed, "writing to stdout failed") : exit_ok;
}

// "before -> after" of one change, JSON texts shortened for a terminal.
std::string change_text(const event::field_change& c) {
  auto shorten = [](const std::optional<std::string>& v) {
    if (!v) return std::string("(none)");
    return v->size() > 60 ? v->substr(0, 57) + "..." : *v;
  };
  return shorten(c.before) + " -> " + shorten(c.after);
}

void print_changes(const event::stored_event& e) {
  const auto changes = event::diff_body(e.ev.body, e.ev.version);
  if (changes.empty()) std::cout << "    (no field changes)\n";
  std::size_t width = 0;
  for (const auto& c : changes) width = std::max(width, c.field.size());
  for (const auto& c : changes)
    std::cout << "    " << c.field << std::string(width - c.field.size() + 2, ' ') << change_text(c) << "\n";
}

int cmd_events_show(const std::string& config_path, std::int64_t id, const std::string& format) {
  auto rd = open_reader(config_path);
  if (!rd) return fail_with(rd.error());
  auto ev = (*rd)->get(id);
  if (!ev) return fail_with(ev.error());
  boost::json::object o = event::to_json_detail(*ev);
  if (format == "json") {
    o["changes"] = admin::changes_json(event::diff_body(ev->ev.body, ev->ev.version));
    std::cout << boost::json::serialize(o) << "\n";
    return exit_ok;
  }
  for (const auto& [key, value] : o) {
    if (key == "body") continue;
    std::cout << key << ": " << (value.is_string() ? std::string(value.as_string()) : boost::json::serialize(value)) << "\n";
  }
  std::cout << "changes:\n";
  print_changes(*ev);
  std::cout << "body:\n" << ev->ev.body << "\n";
  return exit_ok;
}

int cmd_events_timeline(const std::string& config_path, const std::string& entity, const std::string& entity_id,
                        const std::string& limit, const std::string& format) {
  admin::params p{{"order", "asc"}};
  if (!limit.empty()) p.emplace_back("limit", limit);
  auto q = filter_args::flag_errors(admin::parse_list_query(p));
  if (!q) return fail_with(q.error());
  auto rd = open_reader(config_path);
  if (!rd) return fail_with(rd.error());
  store::event_filter f = q->filter;
  f.entity = entity;
  f.entity_id = entity_id;
  auto rows = (*rd)->list(f, true);
  if (!rows) return fail_with(rows.error());
  if (format == "json" || format == "ndjson") {
    boost::json::array items;
    for (const auto& r : *rows) {
      if (format == "ndjson") std::cout << boost::json::serialize(admin::timeline_entry_json(r)) << "\n";
      else items.push_back(admin::timeline_entry_json(r));
    }
    if (format == "json") std::cout << boost::json::serialize(boost::json::object{{"events", std::move(items)}}) << "\n";
    return exit_ok;
  }
  if (rows->empty()) {
    std::cerr << "no events for " << entity << " " << entity_id << "\n";
    return exit_ok;
  }
  for (const auto& r : *rows) {
    std::cout << "#" << r.id << "  " << format_rfc3339_us(r.ev.occurred_at_us) << " (" << relative(r.ev.occurred_at_us)
              << ")  " << r.ev.action << (r.ev.user_id.empty() ? "" : " by user " + r.ev.user_id)
              << (r.ev.change_source.empty() ? "" : " via " + r.ev.change_source) << "\n";
    print_changes(r);
  }
  return exit_ok;
}

int cmd_events_stats(const std::string& config_path, const std::string& since, const std::string& until,
                     const std::string& format) {
  admin::params p;
  if (!since.empty()) p.emplace_back("since", since);
  if (!until.empty()) p.emplace_back("until", until);
  auto window = filter_args::flag_errors(admin::parse_window(p));
  if (!window) return fail_with(window.error());
  auto cfg = load(config_path);
  if (!cfg) return fail_with(cfg.error());
  auto rd = store::reader::open(cfg->store.path);
  if (!rd) return fail_with(rd.error());
  auto s = (*rd)->stats(window->first, window->second);
  if (!s) return fail_with(s.error());
  auto ob = store::outbox::open(cfg->store.path);
  if (!ob) return fail_with(ob.error());
  auto counts = (*ob)->counts();
  if (!counts) return fail_with(counts.error());
  boost::json::object o = admin::stats_json(*s, window->first, window->second);
  boost::json::array hs;
  for (const auto& h : *counts) hs.push_back(admin::handler_json(h));
  o["handlers"] = std::move(hs);
  if (format == "json") {
    std::cout << boost::json::serialize(o) << "\n";
    return exit_ok;
  }
  std::cout << "from " << format_rfc3339_us(window->first) << " to " << format_rfc3339_us(window->second) << ": "
            << s->events << " events, " << s->duplicates << " duplicate deliveries, " << s->quarantined << " quarantined\n";
  if (!s->by_entity_action.empty()) {
    std::vector<std::vector<std::string>> cells{{"ENTITY", "ACTION", "EVENTS", "DUPLICATES"}};
    for (const auto& r : s->by_entity_action)
      cells.push_back({r.entity, r.action, std::to_string(r.events), std::to_string(r.duplicates)});
    print_cells(cells);
  }
  std::int64_t peak = 1;
  for (const auto& [h, n] : s->per_hour) peak = std::max(peak, n);
  for (const auto& [h, n] : s->per_hour)
    std::cout << format_rfc3339_us(h).substr(0, 16) << "  " << std::string(static_cast<std::size_t>(n * 40 / peak), '#')
              << " " << n << "\n";
  return exit_ok;
}

int cmd_events_purge(const std::string& config_path, const std::string& before, bool dry_run) {
  auto t = filter_args::flag_errors(admin::parse_time("before", before));
  if (!t) return fail_with(t.error());
  auto cfg = load(config_path);
  if (!cfg) return fail_with(cfg.error());
  auto rd = store::reader::open(cfg->store.path);
  if (!rd) return fail_with(rd.error());
  auto n = (*rd)->count_purgeable(*t);
  if (!n) return fail_with(n.error());
  std::cout << *n << " row(s) received before " << format_rfc3339_us(*t)
            << " can be deleted (events whose deliveries are settled, and quarantined bodies)\n";
  if (dry_run || *n == 0) return exit_ok;
  rd->reset();
  auto deleted = store::purge_before(cfg->store.path, *t);
  if (!deleted) return fail_with(deleted.error());
  std::cout << "deleted " << *deleted << " row(s)\n";
  return exit_ok;
}

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
      boost::json::object o = admin::handler_json(r);
      o["configured"] = find_handler(*cfg, r.handler) != nullptr;
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
  const store::event_filter& f = parsed->filter;
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
  auto* list = events->add_subcommand("list", "list events, newest first (a page; --cursor for the next)");
  list_args.add_to(list, true);
  list->add_option("--format", format, "table, json or ndjson")->check(CLI::IsMember({"table", "json", "ndjson"}));

  filter_args export_args;
  auto* export_cmd = events->add_subcommand("export", "every matching event as NDJSON (constant memory)");
  export_args.add_to(export_cmd, false);
  export_cmd->add_option("--order", export_args.values["order"], "desc (default) or asc");

  std::int64_t show_id = 0;
  std::string show_format = "table";
  auto* show = events->add_subcommand("show", "show one event with its field changes and body");
  show->add_option("id", show_id, "event id")->required()->check(CLI::PositiveNumber);
  show->add_option("--format", show_format, "table or json")->check(CLI::IsMember({"table", "json"}));

  std::string tl_entity, tl_id, tl_limit, tl_format = "table";
  auto* timeline = events->add_subcommand("timeline", "one object's events, oldest first, with what each changed");
  timeline->add_option("entity", tl_entity, "entity, e.g. deal")->required();
  timeline->add_option("entity_id", tl_id, "the object's id")->required();
  timeline->add_option("--limit", tl_limit, "at most this many (1-1000, default 50)");
  timeline->add_option("--format", tl_format, "table, json or ndjson")->check(CLI::IsMember({"table", "json", "ndjson"}));

  std::string st_since, st_until, st_format = "table";
  auto* stats = events->add_subcommand("stats", "counts by entity and action, per hour, duplicates, quarantined, handlers");
  stats->add_option("--since", st_since, "window start (default: 24h ago)");
  stats->add_option("--until", st_until, "window end (default: now)");
  stats->add_option("--format", st_format, "table or json")->check(CLI::IsMember({"table", "json"}));

  std::string purge_before;
  bool purge_dry = false;
  auto* purge = events->add_subcommand("purge", "delete rows received before a time (pending deliveries keep theirs)");
  purge->add_option("--before", purge_before, "RFC 3339, a date, epoch seconds, or an age like 30d")->required();
  purge->add_flag("--dry-run", purge_dry, "only count what would be deleted");

  std::string replay_handler;
  filter_args replay_args;
  bool replay_yes = false;
  auto* replay = events->add_subcommand("replay", "re-queue matching events for a handler (at-least-once again)");
  replay->add_option("--handler", replay_handler, "the handler's name")->required();
  replay_args.add_to(replay, false);
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
  if (*export_cmd) return cmd_events_export(config_path, export_args);
  if (*timeline) return cmd_events_timeline(config_path, tl_entity, tl_id, tl_limit, tl_format);
  if (*stats) return cmd_events_stats(config_path, st_since, st_until, st_format);
  if (*purge) return cmd_events_purge(config_path, purge_before, purge_dry);
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
