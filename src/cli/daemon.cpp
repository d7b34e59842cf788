#include "pipehook/cli/daemon.hpp"

#include "pipehook/dispatch/dispatcher.hpp"
#include "pipehook/handlers/builtin.hpp"
#include "pipehook/http/server.hpp"
#include "pipehook/ingest/webhook.hpp"
#include "pipehook/pipedrive/registrar_service.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <map>
#include <mutex>
#include <thread>

namespace pipehook::cli {

namespace asio = boost::asio;

struct daemon::impl {
  config::config cfg;
  asio::io_context ioc;
  std::unique_ptr<dispatch::dispatcher> dispatch;  // built before the log: the log routes to it
  std::unique_ptr<store::event_log> log;
  std::unique_ptr<ingest::webhook_endpoint> endpoint;
  std::unique_ptr<http::server> server;
  std::unique_ptr<pipedrive::registrar_service> registrar;  // when registrar.enabled
  asio::ip::tcp::endpoint bound;
  asio::signal_set signals{ioc};
  asio::steady_timer summary_timer{ioc};
  bool stopping = false;  // touched on the io_context only

  std::mutex counts_mu;
  std::map<std::string, std::uint64_t> counts;  // outcome -> requests since the last summary

  void on_response(const http::request_head& head, const http::response& res, std::chrono::microseconds elapsed) {
    {
      std::lock_guard lk(counts_mu);
      ++counts[res.outcome];
    }
    spdlog::debug("{} {} {} -> {} {} ({}) in {} us", head.remote, head.method, head.target, res.status, res.outcome,
                  res.note, elapsed.count());
    if (res.status >= 400 || res.status == 202)
      spdlog::warn("{} {} {} from {}: {} {}: {}", res.status == 202 ? "quarantined" : "rejected", head.method,
                   head.target, head.remote, res.status, res.outcome, res.note);
    else if (res.status == 0)
      spdlog::info("connection from {} ended: {}", head.remote, res.note);
  }

  void log_summary(const char* period) {
    std::map<std::string, std::uint64_t> snapshot;
    {
      std::lock_guard lk(counts_mu);
      snapshot.swap(counts);
    }
    if (snapshot.empty()) return;  // idle periods are not logged
    std::string line;
    for (const auto& [outcome, n] : snapshot) line += " " + outcome + "=" + std::to_string(n);
    spdlog::info("requests in the {}:{} (queue depth {})", period, line, log->queue_depth());
  }

  void begin_stop() {  // on the io_context
    if (stopping) return;
    stopping = true;
    spdlog::info("shutting down: no new connections; finishing requests in flight");
    endpoint->set_draining();
    server->stop();
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
  asio::awaitable<http::response> operator()(const http::request_head&, std::string) const { return respond(ep->health()); }
  static asio::awaitable<http::response> respond(http::response r) { co_return r; }
};
struct ready_handle {
  ingest::webhook_endpoint* ep;
  asio::awaitable<http::response> operator()(const http::request_head&, std::string) const { return ep->ready(); }
};

}  // namespace

daemon::daemon(std::unique_ptr<impl> p) : impl_(std::move(p)) {}
daemon::~daemon() {
  if (!impl_) return;
  if (impl_->dispatch) {
    impl_->dispatch->stop(std::chrono::milliseconds(0));
    impl_->dispatch->join();
  }
  if (impl_->log) impl_->log->close();
}

outcome<std::unique_ptr<daemon>> daemon::create(const config::config& c) {
  if (auto ready = config::check_serve_ready(c); !ready) return ready.error();
  auto p = std::make_unique<impl>();
  p->cfg = c;

  handlers::register_builtin();
  auto built = dispatch::dispatcher::create(c.handlers);
  if (!built) return built.error();
  p->dispatch = std::move(*built);

  store::sqlite_options store_opts;
  store_opts.path = c.store.path;
  store_opts.synchronous_full = c.store.sync == config::durability::full;
  store_opts.queue_capacity = c.store.queue_capacity;
  store_opts.batch_max = c.store.batch_max;
  store_opts.busy_timeout_ms = c.store.busy_timeout_ms;
  store_opts.route = p->dispatch->router();
  store_opts.on_deliveries = [d = p->dispatch.get()](std::vector<store::fresh_deliveries>&& fresh) {
    d->notify(std::move(fresh));
  };
  auto log = store::open_sqlite_event_log(store_opts);
  if (!log) return log.error();
  p->log = std::move(*log);
  if (auto started = p->dispatch->start(*p->log, c.store.path); !started) return started.error();

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
  auto trusted = ranges(c.server.trusted_proxies, "server.trusted_proxies");
  if (!trusted) return trusted.error();
  p->endpoint = std::make_unique<ingest::webhook_endpoint>(ingest_opts, *p->log);

  http::server_options http_opts;
  http_opts.host = c.server.host;
  http_opts.port = c.server.port;
  http_opts.max_body_bytes = c.server.max_body_bytes;
  http_opts.max_connections = c.server.max_connections;
  http_opts.read_timeout = std::chrono::milliseconds(c.server.read_timeout_ms);
  http_opts.idle_timeout = std::chrono::milliseconds(c.server.idle_timeout_ms);
  http_opts.shutdown_timeout = std::chrono::milliseconds(c.server.shutdown_timeout_ms);
  http_opts.trusted_proxies = std::move(*trusted);
  impl* raw = p.get();
  http_opts.on_response = [raw](const http::request_head& h, const http::response& r, std::chrono::microseconds e) {
    raw->on_response(h, r, e);
  };
  std::vector<http::route> routes;
  routes.push_back({"POST", c.server.path, ingest_check{raw->endpoint.get()}, ingest_handle{raw->endpoint.get()}});
  for (const char* m : {"GET", "HEAD"}) {
    routes.push_back({m, "/healthz", {}, health_handle{raw->endpoint.get()}});
    routes.push_back({m, "/readyz", {}, ready_handle{raw->endpoint.get()}});
  }
  p->server = std::make_unique<http::server>(p->ioc, http_opts, std::move(routes));
  if (c.registrar.enabled) {
    auto reg = pipedrive::registrar_service::create(p->ioc.get_executor(), c);
    if (!reg) return reg.error();
    p->registrar = std::move(*reg);
  }
  auto bound = p->server->listen();
  if (!bound) return bound.error();
  p->bound = *bound;
  return std::unique_ptr<daemon>(new daemon(std::move(p)));
}

asio::ip::tcp::endpoint daemon::endpoint() const { return impl_->bound; }

void daemon::run(bool handle_signals) {
  impl* self = impl_.get();
  self->server->start();
  if (handle_signals) {
    self->signals.add(SIGINT);
    self->signals.add(SIGTERM);
    self->signals.async_wait([self](boost::system::error_code ec, int sig) {
      if (ec) return;
      spdlog::info("received {}", sig == SIGINT ? "SIGINT" : "SIGTERM");
      self->begin_stop();
    });
  }
  asio::co_spawn(self->ioc, summary_loop(self), asio::detached);
  const auto& c = self->cfg;
  // Listening first, then registering: Pipedrive's first deliveries find the server up.
  if (self->registrar) self->registrar->start();
  spdlog::info("pipehook {} listening on {}:{} (webhooks at POST {}, auth {}), event log {} (durability {})",
               PIPEHOOK_VERSION, self->bound.address().to_string(), self->bound.port(), c.server.path,
               c.auth.enabled ? "Basic" : "DISABLED", c.store.path,
               c.store.sync == config::durability::full ? "full" : "normal");
  for (const auto& h : c.handlers)
    spdlog::info("handler {} ({}): concurrency {}{}", h.name, h.type, h.concurrency, h.ordered ? ", per-entity order" : "");

  std::vector<std::thread> extra;
  for (unsigned i = 1; i < c.server.threads; ++i) extra.emplace_back([self] { self->ioc.run(); });
  self->ioc.run();
  for (auto& t : extra) t.join();

  self->dispatch->join();  // its last verdicts are queued in the log
  self->log->close();      // commits whatever is still queued
  self->log_summary("final period");
  spdlog::info("stopped");
}

void daemon::stop() {
  impl* self = impl_.get();
  asio::post(self->ioc, [self] { self->begin_stop(); });
}

void setup_logging(const std::string& level) {
  auto logger = std::make_shared<spdlog::logger>("pipehook", std::make_shared<spdlog::sinks::stderr_sink_mt>());
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %^%l%$ %v");
  logger->set_level(spdlog::level::from_str(level));
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(std::move(logger));
}

}  // namespace pipehook::cli
