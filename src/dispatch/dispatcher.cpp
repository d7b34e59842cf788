#include "pipehook/dispatch/dispatcher.hpp"

#include "pipehook/core/time.hpp"
#include "pipehook/dispatch/handler.hpp"
#include "pipehook/dispatch/policy.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include <mutex>
#include <random>
#include <set>
#include <thread>

namespace pipehook::dispatch {

namespace asio = boost::asio;
using tuple_awaitable_t = asio::as_tuple_t<asio::use_awaitable_t<>>;
constexpr tuple_awaitable_t use_tuple{};

namespace {

constexpr auto poll_interval = std::chrono::seconds(1);  // also catches replays made by the CLI
constexpr std::size_t error_limit = 500;                 // bytes of an error kept in the outbox

std::string bounded(std::string s) {
  if (s.size() > error_limit) s = s.substr(0, error_limit) + "...";
  return s;
}

}  // namespace

struct worker {
  config::handler_config cfg;
  std::unique_ptr<handler> h;
  std::unique_ptr<asio::steady_timer> wake;
  std::set<std::int64_t> in_flight;   // being delivered
  std::set<std::int64_t> committing;  // delivered, verdict not committed yet
  std::set<std::string> busy_keys;    // ordered: entities with a row in flight or committing
  bool dirty = true;                  // something changed since the last look at the outbox
  bool loop_done = false;
  handler_stats stats;
};

struct dispatcher::impl {
  asio::io_context ioc{1};
  std::vector<std::unique_ptr<worker>> workers;
  store::event_log* log = nullptr;
  std::unique_ptr<store::outbox> outbox;
  std::thread thread;
  bool stopping = false;  // on ioc
  asio::steady_timer drain_timer{ioc};
  std::mt19937_64 rng{std::random_device{}()};
  mutable std::mutex stats_mu;

  void wake_all() {
    for (auto& w : workers) {
      w->dirty = true;
      w->wake->cancel();
    }
  }
};

namespace {

asio::awaitable<void> deliver_one(dispatcher::impl* self, worker* w, store::pending_delivery row) {
  auto op = w->h->deliver(row.ev);
  delivery_result r = co_await std::move(op);
  store::delivery_update u;
  u.id = row.id;
  u.attempts = row.attempts + 1;
  const std::int64_t now = now_us();
  {
    std::lock_guard lk(self->stats_mu);
    if (r.v == verdict::done) {
      ++w->stats.delivered;
    } else {
      ++w->stats.failed;
      w->stats.last_error = r.error;
    }
  }
  if (r.v == verdict::done) {
    u.state = store::delivery_state::done;
    u.due_at_us = now;
  } else {
    std::uniform_real_distribution<double> uni(0.0, 1.0);
    const auto next = r.v == verdict::permanent
                          ? after_failure{true, 0}
                          : decide_after_failure(w->cfg.retry, u.attempts, row.created_at_us, now, r.retry_after,
                                                 uni(self->rng));
    u.last_error = bounded(r.error);
    if (next.dead) {
      u.state = store::delivery_state::dead;
      u.due_at_us = now;
      {
        std::lock_guard lk(self->stats_mu);
        ++w->stats.dead;
      }
      spdlog::error("handler {}: event {} ({} {} {}) is dead after {} attempt(s): {}", w->cfg.name, row.ev.id,
                    row.ev.ev.entity, row.ev.ev.action, row.ev.ev.entity_id, u.attempts, u.last_error);
    } else {
      u.state = store::delivery_state::pending;
      u.due_at_us = next.due_at_us;
      spdlog::warn("handler {}: event {} attempt {} failed ({}); next attempt in {} ms", w->cfg.name, row.ev.id,
                   u.attempts, u.last_error, (next.due_at_us - now) / 1000);
    }
  }
  w->in_flight.erase(row.id);
  w->committing.insert(row.id);
  const std::string key = row.order_key;
  // The verdict commits with the writer's next batch; until then the row stays out of reach.
  self->log->update_deliveries({u}, [self, w, id = row.id, key](store::append_result) {
    asio::post(self->ioc, [self, w, id, key] {
      w->committing.erase(id);
      if (!key.empty()) w->busy_keys.erase(key);
      w->dirty = true;
      w->wake->cancel();
    });
  });
}

asio::awaitable<void> worker_loop(dispatcher::impl* self, worker* w) {
  const auto& cfg = w->cfg;
  while (!self->stopping) {
    std::chrono::steady_clock::duration wait = poll_interval;
    const std::size_t room = cfg.concurrency > w->in_flight.size() ? cfg.concurrency - w->in_flight.size() : 0;
    if (room > 0) {
      w->dirty = false;
      const std::int64_t now = now_us();
      const int limit = static_cast<int>(cfg.concurrency + w->in_flight.size() + w->committing.size());
      auto rows = self->outbox->due(cfg.name, now, limit, cfg.ordered);
      if (!rows) {
        spdlog::error("handler {}: cannot read the outbox: {}", cfg.name, rows.error().message);
      } else {
        std::size_t started = 0;
        for (auto& row : *rows) {
          if (started == room) break;
          if (w->in_flight.count(row.id) || w->committing.count(row.id)) continue;
          if (cfg.ordered && !w->busy_keys.insert(row.order_key).second) continue;
          w->in_flight.insert(row.id);
          ++started;
          asio::co_spawn(self->ioc, deliver_one(self, w, std::move(row)), asio::detached);
        }
        // Sleep until the next retry falls due (or a commit or a finished delivery wakes us).
        auto next = self->outbox->next_due(cfg.name, now_us());
        if (next && *next) {
          const auto until = std::chrono::microseconds(**next - now_us());
          if (until < poll_interval) wait = std::max<std::chrono::steady_clock::duration>(until, std::chrono::milliseconds(1));
        }
      }
    }
    if (w->dirty && room > 0) continue;
    w->wake->expires_after(wait);
    auto op = w->wake->async_wait(use_tuple);
    co_await std::move(op);
  }
  w->loop_done = true;
}

}  // namespace

dispatcher::dispatcher(std::unique_ptr<impl> p) : p_(std::move(p)) {}

dispatcher::~dispatcher() {
  if (p_->thread.joinable()) {
    stop(std::chrono::milliseconds(0));
    join();
  }
}

outcome<std::unique_ptr<dispatcher>> dispatcher::create(const std::vector<config::handler_config>& handlers) {
  auto p = std::make_unique<impl>();
  for (const auto& hc : handlers) {
    auto h = make_handler(hc, p->ioc.get_executor());
    if (!h) return h.error();
    auto w = std::make_unique<worker>();
    w->cfg = hc;
    w->h = std::move(*h);
    w->wake = std::make_unique<asio::steady_timer>(p->ioc);
    w->stats.name = hc.name;
    p->workers.push_back(std::move(w));
  }
  return std::unique_ptr<dispatcher>(new dispatcher(std::move(p)));
}

store::router dispatcher::router() {
  if (p_->workers.empty()) return {};
  std::vector<std::pair<const worker*, store::route>> table;
  for (const auto& w : p_->workers) table.push_back({w.get(), {w->cfg.name, w->cfg.ordered}});
  return [table](const event::event& ev, std::vector<store::route>& out) {
    for (const auto& [w, route] : table)
      if (matches(w->cfg.match, ev) && w->h->accepts(ev)) out.push_back(route);
  };
}

outcome<void> dispatcher::start(store::event_log& log, const std::string& db_path) {
  if (p_->workers.empty()) return {};
  auto ob = store::outbox::open(db_path);
  if (!ob) return ob.error();
  p_->outbox = std::move(*ob);
  p_->log = &log;
  for (auto& w : p_->workers) asio::co_spawn(p_->ioc, worker_loop(p_.get(), w.get()), asio::detached);
  p_->thread = std::thread([p = p_.get()] { p->ioc.run(); });
  return {};
}

void dispatcher::notify() {
  if (p_->workers.empty()) return;
  asio::post(p_->ioc, [p = p_.get()] { p->wake_all(); });
}

void dispatcher::stop(std::chrono::milliseconds drain) {
  asio::post(p_->ioc, [p = p_.get(), drain] {
    if (p->stopping) return;
    p->stopping = true;
    p->wake_all();
    // In-flight deliveries may finish within `drain`; then they are cancelled (and retried later).
    p->drain_timer.expires_after(drain);
    p->drain_timer.async_wait([p](boost::system::error_code ec) {
      if (ec) return;
      for (auto& w : p->workers)
        if (!w->in_flight.empty()) w->h->cancel();
    });
    // Cancel the drain timer once nothing is in flight, so run() can return early.
    struct poller {
      impl* p;
      std::shared_ptr<asio::steady_timer> t;
      void operator()(boost::system::error_code) const {
        bool busy = false;
        for (auto& w : p->workers) busy = busy || !w->in_flight.empty() || !w->loop_done;
        if (!busy) {
          p->drain_timer.cancel();
          return;
        }
        t->expires_after(std::chrono::milliseconds(10));
        t->async_wait(*this);
      }
    };
    auto t = std::make_shared<asio::steady_timer>(p->ioc);
    poller{p, t}(boost::system::error_code{});
  });
}

void dispatcher::join() {
  if (p_->thread.joinable()) p_->thread.join();
}

std::vector<handler_stats> dispatcher::stats() const {
  std::lock_guard lk(p_->stats_mu);
  std::vector<handler_stats> out;
  for (const auto& w : p_->workers) out.push_back(w->stats);
  return out;
}

}  // namespace pipehook::dispatch
