// `pipehook handlers status|retry|pause|resume`: the handlers' deliveries in the outbox, and their
// breaker state.
#include "common.hpp"

#include "pipehook/admin/query.hpp"
#include "pipehook/core/time.hpp"
#include "pipehook/alerts/notifier.hpp"
#include "pipehook/store/handler_state.hpp"
#include "pipehook/store/outbox.hpp"

#include <CLI/CLI.hpp>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include <iostream>
#include <memory>

namespace pipehook::cli {
namespace {

int cmd_handlers_status(const std::string& config_path, const std::string& format) {
  auto cfg = load(config_path);
  if (!cfg) return fail(exit_usage, cfg.error().message);
  auto ob = store::outbox::open(store_location(*cfg));
  if (!ob) return fail(exit_failed, ob.error().message);
  auto counts = (*ob)->counts();
  if (!counts) return fail(exit_failed, counts.error().message);
  auto meta = store::meta_store::open(store_location(*cfg));
  if (!meta) return fail(exit_failed, meta.error().message);
  auto states = store::load_handler_states(**meta);
  if (!states) return fail(exit_failed, states.error().message);
  const auto state_of = [&](const std::string& name) {
    auto it = states->find(name);
    return it == states->end() ? store::handler_state{} : it->second;
  };
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
      boost::json::object o = admin::handler_json(r, state_of(r.handler));
      const config::handler_config* hc = find_handler(*cfg, r.handler);
      o["configured"] = hc != nullptr;
      o["rate"] = hc && !hc->rate_text.empty() ? boost::json::value(hc->rate_text) : boost::json::value(nullptr);
      o["rate_burst"] = hc && !hc->rate_text.empty() ? boost::json::value(hc->rate_burst) : boost::json::value(nullptr);
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
  cells.push_back({"HANDLER", "STATE", "RATE", "PENDING", "RETRYING", "DEAD", "DONE", "OLDEST_PENDING", "CLAIMED_BY", "LAST_ERROR"});
  for (const auto& r : rows) {
    std::string name = r.handler + (find_handler(*cfg, r.handler) ? "" : " (not configured)");
    std::string last = r.last_error.empty() ? "-" : relative(r.last_error_at_us) + ": " + r.last_error;
    if (last.size() > 120) last = last.substr(0, 117) + "...";
    std::string claims;  // replicas on PostgreSQL: "replica=rows ..."
    for (const auto& [replica, n] : r.claims) claims += (claims.empty() ? "" : " ") + replica + "=" + std::to_string(n);
    const config::handler_config* hc = find_handler(*cfg, r.handler);
    const std::string rate = hc && !hc->rate_text.empty() ? hc->rate_text + " (burst " + std::to_string(hc->rate_burst) + ")" : "-";
    const store::handler_state st = state_of(r.handler);
    std::string state = st.state_text();
    if (st.paused) {
      const std::int64_t to_probe = (st.next_probe_us - now_us()) / 1'000'000;
      state += " since " + age(st.since_us);
      if (!st.manual)
        state += to_probe <= 0 ? ", probe due" : ", probe in " + (to_probe < 60 ? std::to_string(to_probe) + "s" : std::to_string(to_probe / 60) + "m");
    }
    cells.push_back({name, state, rate, std::to_string(r.pending), std::to_string(r.retrying), std::to_string(r.dead),
                     std::to_string(r.done), r.oldest_pending_us ? age(*r.oldest_pending_us) : "-",
                     claims.empty() ? "-" : claims, last});
  }
  print_cells(cells);
  return exit_ok;
}

int cmd_handlers_retry(const std::string& config_path, const std::string& name) {
  auto cfg = load(config_path);
  if (!cfg) return fail(exit_usage, cfg.error().message);
  if (!find_handler(*cfg, name))
    return fail(exit_usage, "no handler named \"" + name + "\" in the config (" + handler_names(*cfg) + ")");
  auto ob = store::outbox::open(store_location(*cfg));
  if (!ob) return fail(exit_failed, ob.error().message);
  auto n = (*ob)->retry_dead(name);
  if (!n) return fail(exit_failed, n.error().message);
  std::cout << "moved " << *n << " dead deliveries of " << name << " back to pending\n";
  return exit_ok;
}

// pause|resume by hand: written to the event log, where serve (every replica) adopts it within a
// second; told to [alerts] url like the breaker's own pauses.
int cmd_handlers_pause(const std::string& config_path, const std::string& name, bool pause) {
  auto cfg = load(config_path);
  if (!cfg) return fail(exit_usage, cfg.error().message);
  if (!find_handler(*cfg, name))
    return fail(exit_usage, "no handler named \"" + name + "\" in the config (" + handler_names(*cfg) + ")");
  auto meta = store::meta_store::open(store_location(*cfg));
  if (!meta) return fail(exit_failed, meta.error().message);
  auto states = store::load_handler_states(**meta);
  if (!states) return fail(exit_failed, states.error().message);
  const store::handler_state current = states->count(name) ? states->at(name) : store::handler_state{};
  if (current.paused == pause && current.manual == pause) {
    std::cout << name << " is already " << (pause ? "paused by hand" : "active") << "\n";
    return exit_ok;
  }
  const store::handler_state next = store::changed_by_hand(current, pause, "cli");
  if (auto saved = store::save_handler_state(**meta, name, next); !saved) return fail(exit_failed, saved.error().message);
  std::cout << (pause ? "paused " : "resumed ") << name
            << (pause ? ": no deliveries until `pipehook handlers resume " + name + "`" : std::string(": deliveries start again"))
            << " (a running serve takes it up within a second)\n";
  auto notifier = alerts::notifier::create(cfg->alerts, "cli");
  if (notifier) {
    (*notifier)->send({pause ? "handler.paused" : "handler.resumed", name,
                       "handler " + name + (pause ? " paused by hand" : " resumed by hand"), {{"by", "cli"}}});
    (*notifier)->stop(std::chrono::seconds(5));
  }
  return exit_ok;
}

}  // namespace

void add_handlers_commands(CLI::App& app, context& ctx) {
  auto* handlers_cmd = app.add_subcommand("handlers", "the handlers' deliveries: status, retry the dead");
  handlers_cmd->require_subcommand(1);
  auto format = std::make_shared<std::string>("table");
  auto* status = handlers_cmd->add_subcommand("status", "per handler: pending, retrying, dead, done, oldest, last error");
  status->add_option("--format", *format, "table or json")->check(CLI::IsMember({"table", "json"}));
  status->callback([&ctx, format] { ctx.exit_code = cmd_handlers_status(ctx.config_path, *format); });
  auto name = std::make_shared<std::string>();
  auto* retry = handlers_cmd->add_subcommand("retry", "move a handler's dead deliveries back to pending");
  retry->add_option("--handler", *name, "the handler's name")->required();
  retry->callback([&ctx, name] { ctx.exit_code = cmd_handlers_retry(ctx.config_path, *name); });
  for (const bool pause : {true, false}) {
    auto target = std::make_shared<std::string>();
    auto* cmd = handlers_cmd->add_subcommand(pause ? "pause" : "resume",
                                             pause ? "pause a handler by hand: no deliveries (nor probes) until resumed"
                                                   : "resume a paused handler at once (by hand or by its breaker)");
    cmd->add_option("name", *target, "the handler's name")->required();
    cmd->callback([&ctx, target, pause] { ctx.exit_code = cmd_handlers_pause(ctx.config_path, *target, pause); });
  }
}

}  // namespace pipehook::cli
