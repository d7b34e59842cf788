#include "pipehook/cli/daemon.hpp"

#include "pipehook/cli/logging.hpp"
#include "common.hpp"

#include "pipehook/alerts/notifier.hpp"
#include "pipehook/admin/api.hpp"
#include "pipehook/core/log_limiter.hpp"
#include "pipehook/core/metrics.hpp"
#include "pipehook/core/socket_activation.hpp"
#include "pipehook/core/spawn.hpp"
#include "pipehook/core/time.hpp"
#include "pipehook/dispatch/dispatcher.hpp"
#include "pipehook/store/reader.hpp"
#include "pipehook/store/retention.hpp"
#include "pipehook/store/compactor.hpp"
#include "pipehook/handlers/builtin.hpp"
#include "pipehook/http/server.hpp"
#include "pipehook/ingest/webhook.hpp"
#include "pipehook/pipedrive/backfill.hpp"
#include "pipehook/pipedrive/fields_service.hpp"
#include "pipehook/pipedrive/registrar_service.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include <boost/json/object.hpp>

#include <algorithm>
#include <map>
#include <pthread.h>
#include <mutex>
#include <thread>

namespace pipehook::cli {

namespace asio = boost::asio;

struct daemon::impl {
  config::config cfg;
  metrics stats;  // before everything that records into it
  std::unique_ptr<alerts::notifier> alerts;  // before everything that sends to it
  asio::io_context ioc;
  std::unique_ptr<dispatch::dispatcher> dispatch;  // built before the log: the log routes to it
  std::unique_ptr<store::event_log> log;
  store::replica_identity replica;
  std::unique_ptr<store::presence> presence;  // heartbeat and claim leases (PostgreSQL), after the log
  std::unique_ptr<ingest::webhook_endpoint> endpoint;
  std::unique_ptr<http::server> server;
  std::unique_ptr<pipedrive::registrar_service> registrar;  // when registrar.enabled
  asio::ip::tcp::endpoint bound;
  bool activated = false;  // the webhook socket came from systemd
  // The admin listener: its own io_context and thread, so operators' queries never hold up webhooks.
  asio::io_context admin_ioc;
  std::unique_ptr<admin::api> admin_api;
  std::unique_ptr<http::server> admin_server;
  asio::ip::tcp::endpoint admin_bound;
  std::thread admin_thread;
  std::unique_ptr<store::retention_runner> retention;  // when [store.retention] sets a limit
  std::unique_ptr<store::compactor> compactor;        // compresses bodies stored before compression
  std::unique_ptr<pipedrive::fields_service> fields;  // with a Pipedrive token and fields_refresh
  std::unique_ptr<pipedrive::backfill_service> backfill;  // the heartbeat always; runs with a token
  asio::signal_set signals{ioc};
  asio::steady_timer summary_timer{ioc};
  bool stopping = false;  // touched on the io_context only

  metrics::counts summarized;  // the outcome totals at the last summary (io_context only)
  log_limiter rejections{std::chrono::seconds(10)};  // rejected and quarantined requests: a line per kind per 10 s

  void on_response(const http::request_head& head, const http::response& res, std::chrono::microseconds elapsed) {
    // The route label is one of a fixed few: never a raw path (a scanner would blow up the series).
    const std::string_view route = head.path == cfg.server.path ? "webhook"
                                   : head.path == "/healthz"    ? "healthz"
                                   : head.path == "/readyz"     ? "readyz"
                                                                : "other";
    stats.request(route, res.status, res.outcome, elapsed);  // also what the summary and /stats report
    spdlog::debug("{} {} {} -> {} {} ({}) in {} us", head.remote, head.method, head.target, res.status, res.outcome,
                  res.note, elapsed.count());
    if (res.status >= 400 || res.status == 202) {
      // One line per kind per 10 s: an outage answers every request 503, and the summary counts them all.
      const auto admitted = rejections.admit(std::to_string(res.status) + " " + res.outcome);
      if (!admitted) return;
      spdlog::warn("{} {} {} from {}: {} {}: {}{}", res.status == 202 ? "quarantined" : "rejected", head.method,
                   head.target, head.remote, res.status, res.outcome, res.note,
                   *admitted ? " (and " + std::to_string(*admitted) + " more like it since the last such line)" : "");
    }
    else if (res.status == 0)
      spdlog::info("connection from {} ended: {}", head.remote, res.note);
  }

  void log_summary(const char* period) {
    metrics::counts now = stats.outcomes();
    std::string line;
    for (const auto& [outcome, n] : now) {
      const auto before = summarized.find(outcome);
      const std::uint64_t delta = n - (before == summarized.end() ? 0 : before->second);
      if (delta) line += " " + outcome + "=" + std::to_string(delta);
    }
    summarized = std::move(now);
    if (line.empty()) return;  // idle periods are not logged
    spdlog::info("requests in the {}:{} (queue depth {})", period, line, log->queue_depth());
  }

  void wait_signal() {
    signals.async_wait([this](boost::system::error_code ec, int sig) {
      if (ec) return;
      if (sig == SIGHUP) {
        reload();
        wait_signal();
        return;
      }
      spdlog::info("received {}", sig == SIGINT ? "SIGINT" : "SIGTERM");
      begin_stop();
    });
  }

  // SIGHUP: reopen the log, and apply what can change without a restart (log, auth); say what
  // else changed in the file but waits for a restart.
  void reload() {
    auto fresh = config::load_config(cfg.source == "(defaults)" ? "" : cfg.source, config::process_env());
    if (!fresh) {
      spdlog::error("SIGHUP: the config could not be reloaded, the running one stays: {}", fresh.error().message);
      return;
    }
    std::vector<std::string> applied, refused;
    if (auto logged = setup_logging(fresh->log); logged) {
      cfg.log = fresh->log;
      applied.push_back("log (reopened)");
    } else {
      refused.push_back(logged.error().message);
    }
    for (const auto& w : fresh->warnings) spdlog::warn("SIGHUP: {}", w);
    if (auto ready = config::check_serve_ready(*fresh); ready) {
      endpoint->set_credentials(fresh->auth.enabled, fresh->auth.user, fresh->auth.password);
      cfg.auth = fresh->auth;
      applied.push_back("auth");
    } else {
      refused.push_back("auth: " + ready.error().message);
    }
    if (!(fresh->handlers == cfg.handlers)) {
      if (auto changed = dispatch->reload(fresh->handlers); changed) {
        cfg.handlers = fresh->handlers;
        std::string names;
        for (const auto& n : *changed) names += (names.empty() ? "" : ", ") + n;
        applied.push_back("handlers (" + names + ")");
      } else {
        refused.push_back("handlers: " + changed.error().message);
      }
    }
    // Everything else is only compared, value by value (secrets included): each section that
    // differs is named.
    std::vector<std::string> pending;
    auto differs = [&pending](const char* name, bool same) {
      if (!same) pending.push_back(name);
    };
    differs("server", fresh->server == cfg.server);
    differs("admin", fresh->admin == cfg.admin);
    differs("store", fresh->store == cfg.store);
    differs("pipedrive", fresh->pipedrive == cfg.pipedrive);
    differs("registrar", fresh->registrar == cfg.registrar);
    differs("backfill", fresh->backfill == cfg.backfill);
    differs("alerts", fresh->alerts == cfg.alerts);
    differs("handlers", fresh->handlers == cfg.handlers);
    auto join = [](const std::vector<std::string>& v) {
      std::string out;
      for (const auto& x : v) out += (out.empty() ? "" : ", ") + x;
      return out;
    };
    spdlog::info("SIGHUP: reloaded {}", applied.empty() ? "nothing" : join(applied));
    for (const auto& r : refused) spdlog::error("SIGHUP: not reloaded: {}", r);
    if (!pending.empty()) spdlog::warn("SIGHUP: changed but applied only by a restart: {}", join(pending));
  }

  void begin_stop() {  // on the io_context
    if (stopping) return;
    stopping = true;
    spdlog::info("shutting down: no new connections; finishing requests in flight");
    endpoint->set_draining();
    server->stop();
    if (admin_server) admin_server->stop();
    if (retention) retention->stop();
    if (compactor) compactor->stop();
    if (dispatch) dispatch->stop(std::chrono::milliseconds(cfg.server.shutdown_timeout_ms));
    if (registrar) registrar->stop(std::chrono::milliseconds(std::max<std::int64_t>(cfg.server.shutdown_timeout_ms, 5'000)));
    boost::system::error_code ec;
    signals.cancel(ec);
    summary_timer.cancel();
  }
};

namespace {

asio::awaitable<void> summary_loop(daemon::impl* self) {
  for (;;) {
    if (self->stopping) co_return;  // a stop that came before this loop first ran cancelled no wait
    self->summary_timer.expires_after(std::chrono::minutes(1));
    auto [ec] = co_await self->summary_timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec || self->stopping) co_return;
    self->log_summary("last minute");
  }
}

// Named function objects, not capturing lambdas, for the route handlers that return coroutines.
struct ingest_check {
  ingest::webhook_endpoint* ep;
  std::optional<http::response> operator()(const http::request_head& h) const { return ep->check(h); }
};
struct ingest_handle {
  ingest::webhook_endpoint* ep;
  asio::awaitable<http::response> operator()(const http::request_head& h, std::string body) const {
    return ep->handle(h, std::move(body));
  }
};
struct health_handle {
  ingest::webhook_endpoint* ep;
  asio::awaitable<http::response> operator()(const http::request_head&, std::string) const { return http::ready(ep->health()); }
};
struct ready_handle {
  ingest::webhook_endpoint* ep;
  asio::awaitable<http::response> operator()(const http::request_head&, std::string) const { return ep->ready(); }
};

}  // namespace

daemon::daemon(std::unique_ptr<impl> p) : impl_(std::move(p)) {}
daemon::~daemon() {
  if (!impl_) return;
  if (impl_->admin_thread.joinable()) {
    impl_->admin_server->stop();
    impl_->admin_thread.join();
  }
  if (impl_->backfill) impl_->backfill->stop();  // before the log it writes through
  if (impl_->dispatch) {
    impl_->dispatch->stop(std::chrono::milliseconds(0));
    impl_->dispatch->join();
  }
  impl_->compactor.reset();
  if (impl_->log) impl_->log->close();
}

outcome<std::unique_ptr<daemon>> daemon::create(const config::config& c, tuning t) {
  if (auto ready = config::check_serve_ready(c); !ready) return ready.error();
  auto sockets = take_activated_sockets();  // systemd socket activation, when it started us
  if (!sockets) return sockets.error();
  auto p = std::make_unique<impl>();
  p->cfg = c;

  handlers::register_builtin();
  auto built = dispatch::dispatcher::create(c.handlers, t.dispatch_poll);
  if (!built) return built.error();
  p->dispatch = std::move(*built);
  {
    auto notifier = alerts::notifier::create(c.alerts, store::this_replica(c.server.replica_id).id);
    if (!notifier) return notifier.error();
    p->alerts = std::move(*notifier);
    if (!c.alerts.url.empty())
      p->stats.set_alert_counts([a = p->alerts.get()] {
        const auto s = a->stats();
        return metrics::alert_counts{s.sent, s.failed, s.dropped};
      });
  }

  const store::location where = store_location(c);
  p->replica = store::this_replica(c.server.replica_id);
  // Field definitions for names in the diffs and when_changed: only with a token (else keys only).
  if (c.pipedrive.fields_refresh_ms > 0 && config::check_pipedrive_ready(c)) {
    auto fields = pipedrive::fields_service::create(c, where);
    if (!fields) return fields.error();
    p->fields = std::move(*fields);
    // when_changed by name: the router sees each fetch (and, below, what was cached before it).
    p->fields->set_observer([d = p->dispatch.get()](const std::string& object, const store::field_map& f) { d->set_fields(object, f); });
  }
  store::writer_options writer;
  writer.queue_capacity = c.store.queue_capacity;
  writer.batch_max = c.store.batch_max;
  writer.route = p->dispatch->router();
  if (p->fields) {
    // A webhook about an object's field definitions ("dealField", ...): fetch that object's fields.
    writer.route = [route = std::move(writer.route), fs = p->fields.get()](const event::event& ev, std::vector<store::route>& out) {
      if (const std::string object = store::fields_object_of_definition(ev.entity); !object.empty()) fs->stale(object);
      if (route) route(ev, out);
    };
  }
  writer.on_deliveries = [d = p->dispatch.get()](std::vector<store::fresh_deliveries>&& fresh) {
    d->notify(std::move(fresh));
  };
  metrics* m = &p->stats;
  writer.on_commit = [m](std::size_t records, std::chrono::microseconds t) { m->commit(records, t); };
  writer.on_wal_frames = [m](std::uint64_t frames) { m->wal_frames(frames); };
  p->dispatch->set_observer([m](const std::string& h, std::string_view result, std::chrono::microseconds t) {
    m->delivery(h, result, t);
  });
  p->dispatch->set_throttle_observer([m](const std::string& h) { m->rate_wait(h); });
  p->dispatch->set_state_observer([m](const std::string& h, const store::handler_state& st) {
    m->handler_state(h, st.paused, st.manual);
  });
  p->dispatch->set_alert_sink([a = p->alerts.get()](alerts::notice n) { a->send(std::move(n)); },
                              std::chrono::milliseconds(c.alerts.quiet_ms));
  p->dispatch->set_look_observer([m](const std::string& h, std::size_t claimed, std::size_t taken_over) {
    m->outbox_look(h, claimed, taken_over);
  });
  auto log = open_event_log(c, writer);
  if (!log) return log.error();
  p->log = std::move(*log);
  if (p->fields)  // the names cached before: routing by name works before the first fetch
    if (auto rd = store::reader::open(where); rd)
      if (auto all = (*rd)->all_fields(); all)
        for (auto& [object, f] : *all) p->dispatch->set_fields(object, std::move(f));
  {
    // Backfill runs: on a shared PostgreSQL log one replica at a time (an advisory lock decides).
    auto leader = c.store.backend == config::store_backend::postgres ? store::leadership::open(where, "backfill") : nullptr;
    auto bf = pipedrive::backfill_service::create(c, where, *p->log, p->replica.id, std::move(leader));
    if (!bf) return bf.error();
    p->backfill = std::move(*bf);
  }
  auto presence = store::presence::open(where, p->replica, std::chrono::milliseconds(c.store.claim_lease_ms));
  if (!presence) return presence.error();
  p->presence = std::move(*presence);
  if (auto started = p->dispatch->start(*p->log, where, {p->replica.id, std::chrono::milliseconds(c.store.claim_lease_ms)},
                                        p->presence.get());
      !started)
    return started.error();

  ingest::options ingest_opts;
  ingest_opts.auth_enabled = c.auth.enabled;
  ingest_opts.user = c.auth.user;
  ingest_opts.password = c.auth.password;
  ingest_opts.retry_after_s = c.store.retry_after_s;
  auto ranges = [](const std::vector<std::string>& texts, const char* key) -> outcome<std::vector<cidr>> {
    std::vector<cidr> out;
    for (const auto& t : texts) {
      auto r = parse_cidr(t, key);
      if (!r) return r.error();
      out.push_back(*r);
    }
    return out;
  };
  auto allow = ranges(c.server.allow_from, "server.allow_from");
  if (!allow) return allow.error();
  ingest_opts.allow_from = std::move(*allow);
  std::vector<std::string> trusted_ranges;
  bool trust_unix = false;
  for (const auto& t : c.server.trusted_proxies) {
    if (t == "unix") trust_unix = true;
    else trusted_ranges.push_back(t);
  }
  auto trusted = ranges(trusted_ranges, "server.trusted_proxies");
  if (!trusted) return trusted.error();
  p->endpoint = std::make_unique<ingest::webhook_endpoint>(ingest_opts, *p->log);

  http::server_options http_opts;
  http_opts.host = c.server.host;
  http_opts.port = c.server.port;
  http_opts.unix_path = c.server.unix_path;
  http_opts.unix_mode = c.server.socket_mode;
  http_opts.trust_unix_peers = trust_unix;
  http_opts.max_body_bytes = c.server.max_body_bytes;
  http_opts.max_connections = c.server.max_connections;
  http_opts.read_timeout = std::chrono::milliseconds(c.server.read_timeout_ms);
  http_opts.idle_timeout = std::chrono::milliseconds(c.server.idle_timeout_ms);
  http_opts.shutdown_timeout = std::chrono::milliseconds(c.server.shutdown_timeout_ms);
  http_opts.trusted_proxies = std::move(*trusted);
  impl* raw = p.get();
  http_opts.on_closed_at_cap = [m] { m->closed_at_cap(); };
  http_opts.on_response = [raw](const http::request_head& h, const http::response& r, std::chrono::microseconds e) {
    raw->on_response(h, r, e);
  };
  std::vector<http::route> routes;
  routes.push_back({"POST", c.server.path, ingest_check{raw->endpoint.get()}, ingest_handle{raw->endpoint.get()}});
  if (c.admin.enabled) {
    admin::api_options admin_opts;
    admin_opts.store = where;
    admin_opts.pool_size = c.store.pool_size;
    admin_opts.token = c.admin.token;
    admin_opts.allowed_hosts = c.admin.allowed_hosts;
    if (p->fields) admin_opts.fields_stale = [fs = p->fields.get()](const std::string& object) { fs->stale(object); };
    admin_opts.self = p->replica;
    if (p->backfill->can_run())
      admin_opts.backfill_request = [bf = p->backfill.get()](store::backfill_run r) { return bf->request(std::move(r)); };
    admin_opts.started_at_us = now_us();
    for (const auto& h : c.handlers) admin_opts.handler_names.push_back(h.name);
    admin_opts.paused_by_hand = [a = p->alerts.get()](const std::string& h, bool paused) {
      a->send({paused ? "handler.paused" : "handler.resumed", h, "handler " + h + (paused ? " paused by hand" : " resumed by hand"),
               {{"by", "admin api"}}});
    };
    admin_opts.metrics = [raw](const std::vector<store::handler_counts>& counts, std::int64_t log_bytes) {
      metrics::gauges g;
      g.queue_depth = raw->log->queue_depth();
      g.log_bytes = log_bytes;
      g.log_budget_bytes = raw->cfg.store.retention_max_bytes;
      const auto conns = raw->server->connections();
      g.connections_busy = conns.busy;
      g.connections_idle = conns.open - conns.busy;
      for (const auto& h : raw->cfg.handlers) {
        metrics::gauges::handler row{h.name, 0, 0, 0, {}, h.rate_per_s};
        for (const auto& c : counts)
          if (c.handler == h.name) row = {h.name, c.pending, c.retrying, c.dead, c.claims, h.rate_per_s};
        g.handlers.push_back(row);
      }
      return raw->stats.render(g);
    };
    admin_opts.runtime_stats = [raw] {
      boost::json::object rejected;
      for (const auto& [outcome, n] : raw->stats.refused()) rejected[outcome] = n;
      return boost::json::object{{"rejected_since_start", std::move(rejected)}};
    };
    auto api = admin::api::create(std::move(admin_opts), *p->log);
    if (!api) return api.error();
    p->admin_api = std::move(*api);
    http::server_options admin_http;
    admin_http.host = c.admin.host;
    admin_http.port = c.admin.port;
    admin_http.max_body_bytes = 64 * 1024;
    admin_http.max_connections = 64;
    admin_http.read_timeout = http_opts.read_timeout;
    admin_http.idle_timeout = http_opts.idle_timeout;
    admin_http.shutdown_timeout = http_opts.shutdown_timeout;
    admin_http.listen_key = "admin.listen";
    admin_http.admit = [api = p->admin_api.get()](const http::request_head& h) { return api->admit(h); };
    admin_http.on_response = [](const http::request_head& h, const http::response& r, std::chrono::microseconds e) {
      spdlog::debug("admin: {} {} {} -> {} {} in {} us", h.remote, h.method, h.target, r.status, r.note, e.count());
    };
    p->admin_server = std::make_unique<http::server>(p->admin_ioc, admin_http, p->admin_api->routes());
    auto admin_bound = sockets->admin >= 0 ? p->admin_server->adopt(sockets->admin) : p->admin_server->listen();
    if (!admin_bound) {
      failure f = admin_bound.error();
      f.message = "admin listener: " + f.message + " (set admin.listen, or admin.enabled = false)";
      return f;
    }
    p->admin_bound = *admin_bound;
    p->admin_api->set_listen_address(p->admin_bound.address().to_string());
  }
  if (c.store.retention_max_age_ms > 0 || c.store.retention_max_bytes > 0) {
    store::retention_policy policy{c.store.retention_max_age_ms, c.store.retention_max_bytes, c.store.retention_interval_ms,
                                   [m = &p->stats] { m->retention_pass(); }};
    auto runner = store::retention_runner::create(p->ioc.get_executor(), *p->log, where, policy);
    if (!runner) return runner.error();
    p->retention = std::move(*runner);
  }
  for (const char* m : {"GET", "HEAD"}) {
    routes.push_back({m, "/healthz", {}, health_handle{raw->endpoint.get()}});
    routes.push_back({m, "/readyz", {}, ready_handle{raw->endpoint.get()}});
  }
  p->server = std::make_unique<http::server>(p->ioc, http_opts, std::move(routes));
  if (c.registrar.enabled) {
    // On a shared PostgreSQL log only one replica registers (an advisory lock decides).
    auto leader = c.store.backend == config::store_backend::postgres ? store::leadership::open(where, "registrar", std::chrono::milliseconds(c.registrar.takeover_check_ms))
                                                                             : nullptr;
    auto reg = pipedrive::registrar_service::create(p->ioc.get_executor(), c, t.registrar_retry_floor, std::move(leader));
    if (!reg) return reg.error();
    // delete_on_shutdown: only the last replica to stop deletes (a rolling restart keeps them).
    (*reg)->set_last_replica_check([pr = p->presence.get()] {
      auto others = pr->others_live();
      if (!others) {
        spdlog::warn("registrar: cannot tell whether other replicas run ({}): the webhooks stay", others.error().message);
        return false;
      }
      if (*others > 0) spdlog::info("registrar: {} other replica(s) still run: the webhooks stay (delete_on_shutdown)", *others);
      return *others == 0;
    });
    if (t.registrar_resync.count() > 0) (*reg)->set_resync_interval(t.registrar_resync);
    // A managed webhook gone or failing at Pipedrive: what it did not deliver is backfilled.
    (*reg)->set_gap_observer([bf = p->backfill.get()](const pipedrive::webhook_gap& g) { bf->on_webhook_gap(g); });
    p->registrar = std::move(*reg);
    // A reconcile that fails after one that did not is an alert (the next failures are the same news).
    p->registrar->set_observer([m, a = p->alerts.get(), failing = false](std::string_view state, std::string_view why) mutable {
      m->registrar(state);
      const bool fails = state == "retrying" || state == "failed";
      if (fails && !failing)
        a->send({"registrar.failed", "registrar", "the registrar could not reconcile Pipedrive's webhooks: " + std::string(why),
                 {{"state", std::string(state)}}});
      if (state == "ok" && failing) spdlog::warn("registrar: reconciled again");
      if (state == "ok" || fails) failing = fails;
    });
  }
  p->activated = sockets->webhook >= 0;
  auto bound = p->activated ? p->server->adopt(sockets->webhook) : p->server->listen();
  if (!bound) return bound.error();
  p->bound = *bound;
  return std::unique_ptr<daemon>(new daemon(std::move(p)));
}

asio::ip::tcp::endpoint daemon::endpoint() const { return impl_->bound; }
http::connection_counts daemon::webhook_connections() const { return impl_->server->connections(); }
asio::ip::tcp::endpoint daemon::admin_endpoint() const { return impl_->admin_bound; }

void daemon::run(bool handle_signals) {
  impl* self = impl_.get();
  self->server->start();
  if (handle_signals) {
    self->signals.add(SIGINT);
    self->signals.add(SIGTERM);
    self->signals.add(SIGHUP);
    self->wait_signal();
  }
  asio::co_spawn(self->ioc, summary_loop(self), log_exception{"the summary loop"});
  if (self->retention) self->retention->start();
  if (auto c = store::compactor::start(*self->log, store_location(self->cfg))) self->compactor = std::move(*c);
  else spdlog::error("compaction: {}", c.error().message);
  if (self->fields) self->fields->start();
  self->backfill->start();  // reads the last heartbeat (downtime) before it writes its own
  if (self->admin_server) {
    self->admin_server->start();
    self->admin_thread = std::thread([self] {
      pthread_setname_np(pthread_self(), "ph-admin");
      self->admin_ioc.run();
    });
  }
  const auto& c = self->cfg;
  // Listening first, then registering: Pipedrive's first deliveries find the server up.
  if (self->registrar) self->registrar->start();
  if (self->admin_server)
    spdlog::info("admin API and web page on http://{}:{}/ ({})", self->admin_bound.address().to_string(),
                 self->admin_bound.port(), c.admin.token.empty() ? "no token: loopback only" : "bearer token required");
  spdlog::info("pipehook {} (replica {}) listening on {} (webhooks at POST {}, auth {}), event log {} (durability {})",
               PIPEHOOK_VERSION, self->replica.id,
               self->bound.port() != 0  ? self->bound.address().to_string() + ":" + std::to_string(self->bound.port()) +
                                              (self->activated ? " (socket-activated)" : "")
               : self->activated        ? std::string("a Unix socket passed by systemd")
                                        : "unix:" + c.server.unix_path,
               c.server.path,
               c.auth.enabled ? "Basic" : "DISABLED", store_location(c).describe(),
               c.store.backend == config::store_backend::postgres ? "PostgreSQL commit"
               : c.store.sync == config::durability::full         ? "full"
                                                                  : "normal");
  if (self->retention)
    spdlog::info("retention: max_age {}, max_bytes {}, checked every {} ms",
                 c.store.retention_max_age_ms ? std::to_string(c.store.retention_max_age_ms / 1000) + " s" : "none",
                 c.store.retention_max_bytes ? std::to_string(c.store.retention_max_bytes) : "none",
                 c.store.retention_interval_ms);
  for (const auto& h : c.handlers)
    spdlog::info("handler {} ({}): concurrency {}{}", h.name, h.type, h.concurrency, h.ordered ? ", per-entity order" : "");

  std::vector<std::thread> extra;
  for (unsigned i = 1; i < c.server.threads; ++i) extra.emplace_back([self] { self->ioc.run(); });
  self->ioc.run();
  for (auto& t : extra) t.join();
  if (self->admin_thread.joinable()) self->admin_thread.join();  // before the log closes: reparse writes through it
  if (self->fields) self->fields->stop();
  self->backfill->stop();  // a run in progress is left "interrupted"; the last heartbeat

  self->dispatch->join();  // its last verdicts are queued in the log
  self->compactor.reset(); // its batch in progress commits or fails first
  self->log->close();      // commits whatever is still queued
  self->presence->leave(); // then the claims left go back to the other replicas
  self->log_summary("final period");
  self->alerts->stop(std::chrono::seconds(2));  // what is being sent gets a moment
  spdlog::info("stopped");
}

void daemon::stop() {
  impl* self = impl_.get();
  asio::post(self->ioc, [self] { self->begin_stop(); });
}

}  // namespace pipehook::cli
