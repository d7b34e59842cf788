// `pipehook events ...`: the event log from the command line (read-only, safe while serve runs),
// with the admin API's parameters and JSON; purge and replay.
#include "common.hpp"

#include "pipehook/admin/query.hpp"
#include "pipehook/core/time.hpp"
#include "pipehook/dispatch/handler.hpp"
#include "pipehook/dispatch/policy.hpp"
#include "pipehook/event/json.hpp"
#include "pipehook/handlers/builtin.hpp"
#include "pipehook/store/copy.hpp"
#include "pipehook/store/outbox.hpp"
#include "pipehook/store/reader.hpp"
#include "pipehook/store/retention.hpp"

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/json/array.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <memory>

namespace pipehook::cli {
namespace {

namespace asio = boost::asio;

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
  return store::reader::open(store_location(*cfg));
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

// The changes of one event, each field with its name in Pipedrive and option labels when the
// cached field definitions have them: "custom_fields.5f0e… (Region)  {…} -> {…}  [EU -> APAC]".
void print_changes(const event::stored_event& e, const store::field_map& fields) {
  const auto changes = event::diff_body(e.ev.body, e.ev.version);
  if (changes.empty()) std::cout << "    (no field changes)\n";
  const auto labelled = admin::changes_json(changes, &fields);
  std::vector<std::string> names;
  std::size_t width = 0;
  for (const auto& j : labelled) {
    const auto& o = j.as_object();
    std::string name(o.at("field").as_string());
    if (o.contains("label")) name += " (" + std::string(o.at("label").as_string()) + ")";
    width = std::max(width, name.size());
    names.push_back(std::move(name));
  }
  for (std::size_t i = 0; i < changes.size(); ++i) {
    const auto& o = labelled[i].as_object();
    std::string labels;
    if (o.contains("before_label") || o.contains("after_label")) {
      auto text = [&](const char* k) { return o.at(k).is_string() ? std::string(o.at(k).as_string()) : std::string("(none)"); };
      labels = "  [" + text("before_label") + " -> " + text("after_label") + "]";
    }
    std::cout << "    " << names[i] << std::string(width - names[i].size() + 2, ' ') << change_text(changes[i]) << labels << "\n";
  }
}

// The cached field definitions for an entity's events (none: keys only).
store::field_map fields_for(store::reader& rd, const std::string& entity) {
  const std::string object = store::fields_object_of(entity);
  if (object.empty()) return {};
  auto f = rd.fields(object);
  return f ? std::move(*f) : store::field_map{};
}

int cmd_events_show(const std::string& config_path, std::int64_t id, const std::string& format) {
  auto rd = open_reader(config_path);
  if (!rd) return fail_with(rd.error());
  auto ev = (*rd)->get(id);
  if (!ev) return fail_with(ev.error());
  boost::json::object o = event::to_json_detail(*ev);
  const store::field_map fields = fields_for(**rd, ev->ev.entity);
  if (format == "json") {
    o["changes"] = admin::changes_json(event::diff_body(ev->ev.body, ev->ev.version), &fields);
    std::cout << boost::json::serialize(o) << "\n";
    return exit_ok;
  }
  for (const auto& [key, value] : o) {
    if (key == "body") continue;
    std::cout << key << ": " << (value.is_string() ? std::string(value.as_string()) : boost::json::serialize(value)) << "\n";
  }
  std::cout << "changes:\n";
  print_changes(*ev, fields);
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
  const store::field_map fields = fields_for(**rd, entity);
  if (format == "json" || format == "ndjson") {
    boost::json::array items;
    for (const auto& r : *rows) {
      if (format == "ndjson") std::cout << boost::json::serialize(admin::timeline_entry_json(r, &fields)) << "\n";
      else items.push_back(admin::timeline_entry_json(r, &fields));
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
    print_changes(r, fields);
  }
  return exit_ok;
}

// "storage: 1.2 MiB on disk for 3,000 events (412 bytes per event, 0.46x the average body); bodies
// compressed to 0.22x (newest 1000)".
void print_storage(const store::storage_stats& s) {
  auto fixed = [](double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2f", v);
    return std::string(buf);
  };
  std::cout << "storage: " << s.bytes_on_disk << " bytes on disk for " << s.events << " events";
  if (s.events > 0) {
    std::cout << " (" << s.bytes_on_disk / s.events << " bytes per event";
    if (auto r = s.disk_per_raw_body()) std::cout << ", " << fixed(*r) << "x the average body as received";
    std::cout << ")";
  }
  std::cout << "\n";
  if (auto r = s.compression_ratio())
    std::cout << "bodies: stored at " << fixed(*r)
              << "x their size as received (the newest " << s.sampled << ")\n";
  if (s.plain_events > 0) std::cout << "uncompressed: " << s.plain_events << " event(s) from before compression, being compressed by the daemon\n";
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
  auto rd = store::reader::open(store_location(*cfg));
  if (!rd) return fail_with(rd.error());
  auto s = (*rd)->stats(window->first, window->second);
  if (!s) return fail_with(s.error());
  auto ob = store::outbox::open(store_location(*cfg));
  if (!ob) return fail_with(ob.error());
  auto counts = (*ob)->counts();
  if (!counts) return fail_with(counts.error());
  auto storage = (*rd)->storage();
  if (!storage) return fail_with(storage.error());
  boost::json::object o = admin::stats_json(*s, window->first, window->second);
  o["storage"] = admin::storage_json(*storage);
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
  print_storage(*storage);
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
  auto rd = store::reader::open(store_location(*cfg));
  if (!rd) return fail_with(rd.error());
  auto n = (*rd)->count_purgeable(*t);
  if (!n) return fail_with(n.error());
  std::cout << *n << " row(s) received before " << format_rfc3339_us(*t)
            << " can be deleted (events whose deliveries are settled, and quarantined bodies)\n";
  if (dry_run || *n == 0) return exit_ok;
  rd->reset();
  auto deleted = store::purge_before(store_location(*cfg), *t);
  if (!deleted) return fail_with(deleted.error());
  std::cout << "deleted " << *deleted << " row(s)\n";
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
  auto ob = store::outbox::open(store_location(*cfg));
  if (!ob) return fail(exit_failed, ob.error().message);
  // The handler's own rule applies too: a replay never sends a handler what it would not get.
  const dispatch::handler* handler = h->get();
  // when_changed may name fields: the cached definitions say which key a name is.
  auto defs = std::make_shared<dispatch::field_definitions>();
  if (!hc->match.changed.empty())
    if (auto rd = store::reader::open(store_location(*cfg)); rd)
      if (auto all = (*rd)->all_fields(); all) *defs = std::move(*all);
  store::event_predicate matches = [hc, handler, defs](const event::event& e) {
    return dispatch::matches(hc->match, e, defs.get()) && handler->accepts(e);
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

// Copies the log of one config into the PostgreSQL log of another, with a progress line.
int cmd_events_copy(const std::string& from_path, const std::string& to_path, int batch) {
  if (batch < 1 || batch > 10'000) return fail(exit_usage, "--batch must be between 1 and 10000");
  auto from = load(from_path);
  if (!from) return fail(exit_usage, "--from: " + from.error().message);
  auto to = load(to_path);
  if (!to) return fail(exit_usage, "--to: " + to.error().message);
  if (to->store.backend != config::store_backend::postgres)
    return fail(exit_usage, "--to: " + to_path + " keeps its log in SQLite; the target must have store.backend = \"postgres\"");
  const auto start = std::chrono::steady_clock::now();
  auto last_line = start;
  auto line = [&](const store::copy_progress& p, bool final) {
    const auto now = std::chrono::steady_clock::now();
    if (!final && now - last_line < std::chrono::seconds(1)) return;
    last_line = now;
    const double secs = std::max(1e-3, std::chrono::duration<double>(now - start).count());
    std::cerr << "copied " << p.copied << " event(s), " << p.seen << " of " << p.total << " looked at ("
              << static_cast<std::int64_t>(static_cast<double>(p.copied) / secs) << "/s)";
    if (final) std::cerr << "; " << p.quarantined << " quarantined, " << p.deliveries << " pending deliveries";
    std::cerr << "\n";
  };
  auto done = store::copy_log(store_location(*from), store_location(*to), batch,
                              [&](const store::copy_progress& p) { line(p, false); });
  if (!done) return fail_with(done.error());
  line(*done, true);
  std::cout << "copied " << done->copied << " event(s) (" << done->total - done->copied << " already there), "
            << done->quarantined << " quarantined body(ies) and " << done->deliveries << " pending delivery(ies) into "
            << store_location(*to).describe() << "\n";
  return exit_ok;
}

}  // namespace

void add_events_commands(CLI::App& app, context& ctx) {
  auto* events = app.add_subcommand("events", "query the event log (read-only; safe while serve runs)");
  events->require_subcommand(1);

  auto list_args = std::make_shared<filter_args>();
  auto format = std::make_shared<std::string>("table");
  auto* list = events->add_subcommand("list", "list events, newest first (a page; --cursor for the next)");
  list_args->add_to(list, true);
  list->add_option("--format", *format, "table, json or ndjson")->check(CLI::IsMember({"table", "json", "ndjson"}));
  list->callback([&ctx, list_args, format] { ctx.exit_code = cmd_events_list(ctx.config_path, *list_args, *format); });

  auto export_args = std::make_shared<filter_args>();
  auto* export_cmd = events->add_subcommand("export", "every matching event as NDJSON (constant memory)");
  export_args->add_to(export_cmd, false);
  export_cmd->add_option("--order", export_args->values["order"], "desc (default) or asc");
  export_cmd->callback([&ctx, export_args] { ctx.exit_code = cmd_events_export(ctx.config_path, *export_args); });

  struct show_flags {
    std::int64_t id = 0;
    std::string format = "table";
  };
  auto show_f = std::make_shared<show_flags>();
  auto* show = events->add_subcommand("show", "show one event with its field changes and body");
  show->add_option("id", show_f->id, "event id")->required()->check(CLI::PositiveNumber);
  show->add_option("--format", show_f->format, "table or json")->check(CLI::IsMember({"table", "json"}));
  show->callback([&ctx, show_f] { ctx.exit_code = cmd_events_show(ctx.config_path, show_f->id, show_f->format); });

  struct timeline_flags {
    std::string entity, id, limit, format = "table";
  };
  auto tl = std::make_shared<timeline_flags>();
  auto* timeline = events->add_subcommand("timeline", "one object's events, oldest first, with what each changed");
  timeline->add_option("entity", tl->entity, "entity, e.g. deal")->required();
  timeline->add_option("entity_id", tl->id, "the object's id")->required();
  timeline->add_option("--limit", tl->limit, "at most this many (1-1000, default 50)");
  timeline->add_option("--format", tl->format, "table, json or ndjson")->check(CLI::IsMember({"table", "json", "ndjson"}));
  timeline->callback([&ctx, tl] { ctx.exit_code = cmd_events_timeline(ctx.config_path, tl->entity, tl->id, tl->limit, tl->format); });

  struct stats_flags {
    std::string since, until, format = "table";
  };
  auto st = std::make_shared<stats_flags>();
  auto* stats = events->add_subcommand("stats", "counts by entity and action, per hour, duplicates, quarantined, handlers");
  stats->add_option("--since", st->since, "window start (default: 24h ago)");
  stats->add_option("--until", st->until, "window end (default: now)");
  stats->add_option("--format", st->format, "table or json")->check(CLI::IsMember({"table", "json"}));
  stats->callback([&ctx, st] { ctx.exit_code = cmd_events_stats(ctx.config_path, st->since, st->until, st->format); });

  struct purge_flags {
    std::string before;
    bool dry_run = false;
  };
  auto pf = std::make_shared<purge_flags>();
  auto* purge = events->add_subcommand("purge", "delete rows received before a time (pending deliveries keep theirs)");
  purge->add_option("--before", pf->before, "RFC 3339, a date, epoch seconds, or an age like 30d")->required();
  purge->add_flag("--dry-run", pf->dry_run, "only count what would be deleted");
  purge->callback([&ctx, pf] { ctx.exit_code = cmd_events_purge(ctx.config_path, pf->before, pf->dry_run); });

  struct replay_flags {
    std::string handler;
    filter_args filters;
    bool yes = false;
  };
  auto rf = std::make_shared<replay_flags>();
  auto* replay = events->add_subcommand("replay", "re-queue matching events for a handler (at-least-once again)");
  replay->add_option("--handler", rf->handler, "the handler's name")->required();
  rf->filters.add_to(replay, false);
  replay->add_flag("--yes", rf->yes, "confirm a replay of more than 1000 events");
  replay->callback([&ctx, rf] { ctx.exit_code = cmd_events_replay(ctx.config_path, rf->handler, rf->filters, rf->yes); });

  struct copy_flags {
    std::string from, to;
    int batch = 1000;
  };
  auto cf = std::make_shared<copy_flags>();
  auto* copy = events->add_subcommand("copy", "copy a log (events, quarantine, pending deliveries) into a PostgreSQL log; "
                                              "resumable, idempotent by event key");
  copy->add_option("--from", cf->from, "the config whose log is copied")->required();
  copy->add_option("--to", cf->to, "the config whose log (store.backend = \"postgres\") receives it")->required();
  copy->add_option("--batch", cf->batch, "events per transaction (default 1000)");
  copy->callback([&ctx, cf] { ctx.exit_code = cmd_events_copy(cf->from, cf->to, cf->batch); });
}

}  // namespace pipehook::cli
