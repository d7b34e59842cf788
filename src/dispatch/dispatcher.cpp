#include "pipehook/dispatch/dispatcher.hpp"

#include "pipehook/core/spawn.hpp"
#include "pipehook/core/task_group.hpp"
#include "pipehook/core/use_tuple.hpp"

#include "pipehook/core/time.hpp"
#include "pipehook/dispatch/handler.hpp"
#include "pipehook/dispatch/policy.hpp"
#include "pipehook/store/async.hpp"
#include "pipehook/store/handler_state.hpp"
#include "pipehook/store/presence.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include <deque>
#include <mutex>
#include <atomic>
#include <pthread.h>
#include <random>
#include <set>
#include <thread>

namespace pipehook::dispatch {

namespace asio = boost::asio;

namespace {

constexpr std::size_t error_limit = 500;                 // bytes of an error kept in the outbox
constexpr std::size_t max_queued = 2048;                 // rows handed over in memory, per handler

std::string bounded(std::string s) {
  if (s.size() > error_limit) s = s.substr(0, error_limit) + "...";
  return s;
}

}  // namespace

struct worker {
  config::handler_config cfg;             // name, type, match, ordered: fixed; the rest may be reloaded
  std::atomic<std::shared_ptr<handler>> h;  // swapped by reload(); the router reads it on the writer thread
  std::vector<std::shared_ptr<handler>> retired;  // replaced by reload(): deliveries in flight may still use them
  std::unique_ptr<asio::steady_timer> wake;
  std::set<std::int64_t> queued;      // in `queue`
  std::set<std::int64_t> in_flight;   // being delivered
  std::set<std::int64_t> committing;  // delivered, verdict not committed yet
  std::set<std::string> busy_keys;    // ordered: entities with a row in flight or committing
  std::deque<store::pending_delivery> queue;  // fetched, due, not started yet
  bool dirty = true;                  // something changed since the last look at the outbox
  bool lease_warned = false;          // the claims' expiry was logged
  // handler.rate: a token bucket across the concurrency (on the dispatcher's thread).
  double tokens = 0;
  std::chrono::steady_clock::time_point refilled{};
  bool bucket_started = false;
  // The circuit breaker (on the dispatcher's thread). `st` is shared through the meta table: a
  // newer state written by the CLI or another replica is adopted.
  store::handler_state st;
  std::uint32_t consecutive = 0;  // failed attempts in a row
  bool probing = false;           // paused: the one probe delivery is in flight
  std::int64_t last_dead_us = 0;  // the last dead letter, for the alert after a quiet period

  // Takes a token when one is there; else says when the next one will be (a delivery waits).
  std::optional<std::chrono::steady_clock::time_point> take_token(std::chrono::steady_clock::time_point now) {
    if (cfg.rate_per_s <= 0) return std::nullopt;
    const double burst = std::max<double>(1, cfg.rate_burst);
    if (!bucket_started) {
      tokens = burst;
      refilled = now;
      bucket_started = true;
    }
    tokens = std::min(burst, tokens + std::chrono::duration<double>(now - refilled).count() * cfg.rate_per_s);
    refilled = now;
    if (tokens >= 1) {
      tokens -= 1;
      return std::nullopt;
    }
    return now + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                     std::chrono::duration<double>((1 - tokens) / cfg.rate_per_s));
  }
};

struct dispatcher::impl {
  asio::io_context ioc{1};
  std::vector<std::unique_ptr<worker>> workers;
  store::event_log* log = nullptr;
  std::unique_ptr<store::outbox> outbox;
  const store::presence* presence = nullptr;  // the leases of this replica's claims (null: they never expire)
  std::thread thread;
  bool stopping = false;  // on ioc
  std::chrono::milliseconds poll_interval{1000};  // looks at the outbox at least this often (replays by the CLI)
  task_group tasks{ioc.get_executor(), "a dispatcher task"};  // the worker loops and the deliveries in flight
  std::mt19937_64 rng{std::random_device{}()};
  dispatcher::observer observe;
  dispatcher::look_observer observe_look;
  std::function<void(const std::string&)> observe_throttle;
  state_observer observe_state;
  std::function<void(alerts::notice)> alert;
  std::int64_t quiet_ms = 3'600'000;  // a dead letter after this long without one is an alert
  std::unique_ptr<store::meta_store> meta;  // the handlers' shared states
  std::string replica;                      // who writes them
  asio::steady_timer state_timer{ioc};
  // Field definitions by object, for when_changed by name: replaced whole, read by the router.
  std::atomic<std::shared_ptr<const field_definitions>> fields{std::make_shared<const field_definitions>()};
  std::mutex fields_mu;  // writers of `fields`

  // Verdicts go to the writer in batches: one item in its queue at a time, holding all that
  // finished meanwhile (it commits with the next ingest batch, no fsync of its own).
  struct finished {
    worker* w;
    std::int64_t id;
    std::string key;
  };
  std::vector<store::delivery_update> unsent;
  std::vector<finished> unsent_rows;
  bool flushing = false;

  void flush() {
    if (flushing || unsent.empty()) return;
    flushing = true;
    auto rows = std::make_shared<std::vector<finished>>(std::move(unsent_rows));
    unsent_rows.clear();
    std::vector<store::delivery_update> batch;
    batch.swap(unsent);
    // The operation keeps run() from returning while a batch of verdicts is being committed: at
    // shutdown the verdicts still unsent are flushed after it, instead of being dropped (which
    // would deliver those events again after a restart).
    store::async_update_deliveries(*log, std::move(batch), asio::bind_executor(ioc, verdicts_committed{this, rows}));
  }

  // On the dispatcher's thread once a batch of verdicts committed (or failed: the rows are then
  // delivered again after a restart, at-least-once).
  struct verdicts_committed {
    impl* self;
    std::shared_ptr<std::vector<finished>> rows;
    void operator()(store::append_result) const {
      self->flushing = false;
      for (const auto& f : *rows) {
        f.w->committing.erase(f.id);
        if (!f.key.empty()) f.w->busy_keys.erase(f.key);
        // Ordered: the entity's next row is due now, and only the outbox knows it.
        if (f.w->cfg.ordered) f.w->dirty = true;
        f.w->wake->cancel();
      }
      self->flush();
    }
  };

  void wake_all() {
    for (auto& w : workers) {
      w->dirty = true;
      w->wake->cancel();
    }
  }
};

namespace {

// A change of a handler's state made here: written for the other processes (a failure to write
// is logged; the state holds here regardless), shown in /metrics.
void publish_state(dispatcher::impl* self, worker* w) {
  w->st.changed_at_us = std::max(now_us(), w->st.changed_at_us + 1);
  w->st.by = self->replica;
  if (self->meta)
    if (auto r = store::save_handler_state(*self->meta, w->cfg.name, w->st); !r)
      spdlog::warn("handler {}: could not record its state ({}) in the event log: {}", w->cfg.name, w->st.state_text(),
                   r.error().message);
  if (self->observe_state) self->observe_state(w->cfg.name, w->st);
}

void pause(dispatcher::impl* self, worker* w, const std::string& error, std::int64_t pause_ms) {
  const bool was_paused = w->st.paused;
  const std::int64_t now = now_us();
  if (!was_paused) w->st.since_us = now;
  w->st.paused = true;
  w->st.manual = false;
  w->st.pause_ms = pause_ms;
  w->st.next_probe_us = now + pause_ms * 1000;
  w->st.failures = w->consecutive;
  w->st.reason = error;
  publish_state(self, w);
  if (was_paused) {
    spdlog::warn("handler {}: the probe delivery failed ({}); paused for {} s more", w->cfg.name, error, pause_ms / 1000.0);
    return;
  }
  if (self->alert)
    self->alert({"handler.paused", w->cfg.name,
                 "handler " + w->cfg.name + " paused after " + std::to_string(w->consecutive) +
                     " failed attempts in a row; one delivery probes in " + fmt::format("{:g}", pause_ms / 1000.0) + " s",
                 {{"last_error", error}, {"failures", std::to_string(w->consecutive)}, {"next_probe_at", format_rfc3339_us(w->st.next_probe_us)}}});
}

void resume(dispatcher::impl* self, worker* w, const std::string& why) {
  const std::int64_t paused_since = w->st.since_us;
  w->st = store::handler_state{.since_us = now_us(), .reason = why, .changed_at_us = w->st.changed_at_us, .by = {}};
  w->consecutive = 0;
  publish_state(self, w);
  if (self->alert)
    self->alert({"handler.resumed", w->cfg.name, "handler " + w->cfg.name + " resumed: " + why,
                 {{"paused_since", format_rfc3339_us(paused_since)}}});
  w->wake->cancel();
}

// After each attempt: the breaker counts failures in a row and pauses at pause_after; a paused
// handler's probe resumes it or doubles the pause. A paused-by-hand handler is left alone.
void on_attempt(dispatcher::impl* self, worker* w, bool ok, const std::string& error, bool probe) {
  if (probe) w->probing = false;
  if (ok) {
    w->consecutive = 0;
    if (w->st.paused && !w->st.manual) resume(self, w, probe ? "the probe delivery succeeded" : "a delivery succeeded");
    return;
  }
  ++w->consecutive;
  if (w->st.paused) {
    if (probe && !w->st.manual) pause(self, w, error, std::min(w->cfg.pause_max_ms, 2 * std::max<std::int64_t>(w->st.pause_ms, 1)));
    return;
  }
  if (w->cfg.pause_after > 0 && w->consecutive >= w->cfg.pause_after) pause(self, w, error, w->cfg.pause_for_ms);
}

// Adopts the states other processes wrote after this one's (`handlers pause|resume`, replicas).
void adopt_states(dispatcher::impl* self) {
  if (!self->meta) return;
  auto states = store::load_handler_states(*self->meta);
  if (!states) {
    spdlog::warn("dispatcher: cannot read the handlers' states: {}", states.error().message);
    return;
  }
  for (auto& w : self->workers) {
    auto it = states->find(w->cfg.name);
    if (it == states->end() || it->second.changed_at_us <= w->st.changed_at_us) continue;
    const bool was_paused = w->st.paused;
    w->st = it->second;
    if (was_paused && !w->st.paused) {
      w->consecutive = 0;
      spdlog::warn("handler {}: resumed by {}", w->cfg.name, w->st.by);
    } else if (!was_paused && w->st.paused) {
      spdlog::warn("handler {}: {} by {}{}", w->cfg.name, w->st.manual ? "paused by hand" : "paused", w->st.by,
                   w->st.reason.empty() ? "" : ": " + w->st.reason);
    }
    if (self->observe_state) self->observe_state(w->cfg.name, w->st);
    w->wake->cancel();
  }
}

asio::awaitable<void> state_loop(dispatcher::impl* self) {
  while (!self->stopping) {
    self->state_timer.expires_after(self->poll_interval);
    auto op = self->state_timer.async_wait(use_tuple);
    co_await std::move(op);
    if (self->stopping) break;
    adopt_states(self);
  }
}

asio::awaitable<void> deliver_one(dispatcher::impl* self, worker* w, store::pending_delivery row, bool probe) {
  const auto started = std::chrono::steady_clock::now();
  const std::shared_ptr<handler> h = w->h.load();  // kept alive for this delivery even if reloaded meanwhile
  // A handler that throws has failed this attempt: the row gets its verdict (a retry) like any
  // failure, instead of staying in flight until a restart.
  delivery_result r = delivery_result::retry("");
  try {
    if (!row.unreadable.empty()) {
      r = delivery_result::permanent(row.unreadable);  // no retry reads it better
    } else {
      auto op = h->deliver(*row.ev);
      r = co_await std::move(op);
    }
  } catch (const std::exception& e) {
    r = delivery_result::retry(std::string("the handler failed: ") + e.what());
  }
  const auto took = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - started);
  store::delivery_update u;
  u.id = row.id;
  u.attempts = row.attempts + 1;
  const std::int64_t now = now_us();
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
      spdlog::error("handler {}: event {} ({} {} {}) is dead after {} attempt(s): {}", w->cfg.name, row.ev->id,
                    row.ev->ev.entity, row.ev->ev.action, row.ev->ev.entity_id, u.attempts, u.last_error);
      if (self->alert && (w->last_dead_us == 0 || now - w->last_dead_us >= self->quiet_ms * 1000))
        self->alert({"handler.dead_letter", w->cfg.name,
                     "handler " + w->cfg.name + ": event " + std::to_string(row.ev->id) + " is dead after " +
                         std::to_string(u.attempts) + " attempt(s)",
                     {{"event_id", std::to_string(row.ev->id)},
                      {"event_key", row.ev->ev.event_key},
                      {"entity", row.ev->ev.entity},
                      {"action", row.ev->ev.action},
                      {"entity_id", row.ev->ev.entity_id},
                      {"last_error", u.last_error}}});
      w->last_dead_us = now;
    } else {
      u.state = store::delivery_state::pending;
      u.due_at_us = next.due_at_us;
      spdlog::warn("handler {}: event {} attempt {} failed ({}); next attempt in {} ms", w->cfg.name, row.ev->id,
                   u.attempts, u.last_error, (next.due_at_us - now) / 1000);
    }
  }
  if (self->observe)
    self->observe(w->cfg.name, u.state == store::delivery_state::done ? "done"
                               : u.state == store::delivery_state::dead ? "dead"
                                                                         : "retry",
                  took);
  on_attempt(self, w, r.v == verdict::done, u.last_error, probe);
  w->in_flight.erase(row.id);
  w->committing.insert(row.id);
  // The verdict commits with the writer's next batch; until then the row stays out of reach.
  self->unsent.push_back(std::move(u));
  self->unsent_rows.push_back({w, row.id, row.order_key});
  self->flush();
  w->wake->cancel();  // room for the next delivery
}

// Rows fetched per look at the outbox, beyond those in flight: enough to keep every slot busy
// between looks, few enough to keep memory flat (bodies come along).
std::size_t fetch_size(const config::handler_config& c) { return std::max<std::size_t>(64, 4 * c.concurrency); }

asio::awaitable<void> worker_loop(dispatcher::impl* self, worker* w) {
  const auto& cfg = w->cfg;
  std::chrono::steady_clock::time_point next_look{};
  while (!self->stopping) {
    const auto now_tp = std::chrono::steady_clock::now();
    // Look at the outbox when the local queue ran dry and something changed, or on the poll.
    if (w->queue.size() < fetch_size(cfg) / 2 && (w->dirty || now_tp >= next_look)) {
      w->dirty = false;
      // Jittered, so that replicas polling one database spread their looks instead of colliding.
      std::uniform_real_distribution<double> jitter(0.8, 1.2);
      next_look = now_tp + std::chrono::duration_cast<std::chrono::steady_clock::duration>(self->poll_interval * jitter(self->rng));
      const std::int64_t now = now_us();
      const int limit =
          static_cast<int>(fetch_size(cfg) + w->queued.size() + w->in_flight.size() + w->committing.size());
      std::vector<std::int64_t> held;  // not to be claimed again
      held.reserve(w->queued.size() + w->in_flight.size() + w->committing.size());
      for (const auto* ids : {&w->queued, &w->in_flight, &w->committing}) held.insert(held.end(), ids->begin(), ids->end());
      auto rows = self->outbox->due(cfg.name, now, limit, cfg.ordered, held);
      if (!rows) {
        spdlog::error("handler {}: cannot read the outbox: {}", cfg.name, rows.error().message);
      } else {
        std::size_t claimed = 0, taken_over = 0;
        for (auto& row : *rows) {
          if (w->queued.count(row.id) || w->in_flight.count(row.id) || w->committing.count(row.id)) continue;
          if (!row.already_mine) ++claimed;
          if (!row.taken_from.empty()) {
            ++taken_over;
            spdlog::warn("handler {}: took over delivery {} (event {}) from replica {}, whose claim expired", cfg.name, row.id,
                         row.ev->id, row.taken_from);
          }
          if (cfg.ordered && w->busy_keys.count(row.order_key)) continue;
          w->queued.insert(row.id);
          w->queue.push_back(std::move(row));
        }
        if (self->observe_look) self->observe_look(cfg.name, claimed, taken_over);
        // A full page: more is waiting (a backlog after a restart or a replay); look again soon.
        if (rows->size() == static_cast<std::size_t>(limit)) w->dirty = true;
        // Sleep at most until the next retry falls due.
        auto next = self->outbox->next_due(cfg.name, now_us());
        if (next && *next) {
          const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(**next - now_us());
          next_look = std::min(next_look, until);
        }
      }
    }
    // Claims whose lease may have run out (the heartbeat has not gone through for most of a lease)
    // may be another replica's by now: none is started; they are claimed again when due.
    if (!w->queue.empty() && self->presence && std::chrono::steady_clock::now() >= self->presence->claims_hold_until()) {
      if (!w->lease_warned)
        spdlog::warn("handler {}: this replica's claims may have expired (no heartbeat for most of a lease): {} queued "
                     "deliveries are left to whichever replica claims them next",
                     cfg.name, w->queue.size());
      w->lease_warned = true;
      w->queue.clear();
      w->queued.clear();
    } else if (!w->queue.empty()) {
      w->lease_warned = false;
    }
    std::optional<std::chrono::steady_clock::time_point> token_due;  // rate: the next delivery waits until then
    // Paused: nothing starts but, once the pause is over and nothing is in flight, one probe.
    std::optional<std::chrono::steady_clock::time_point> probe_due;
    bool probe = false;
    if (w->st.paused) {
      const std::int64_t wait_us = w->st.next_probe_us - now_us();
      if (!w->st.manual && wait_us > 0) probe_due = std::chrono::steady_clock::now() + std::chrono::microseconds(wait_us);
      probe = !w->st.manual && wait_us <= 0 && !w->probing && w->in_flight.empty();
    }
    while (!w->queue.empty() && w->in_flight.size() < cfg.concurrency && (!w->st.paused || probe)) {
      if ((token_due = w->take_token(std::chrono::steady_clock::now()))) {
        if (self->observe_throttle) self->observe_throttle(cfg.name);
        break;
      }
      store::pending_delivery row = std::move(w->queue.front());
      w->queue.pop_front();
      w->queued.erase(row.id);
      if (cfg.ordered && !w->busy_keys.insert(row.order_key).second) continue;  // looked at again later
      w->in_flight.insert(row.id);
      if (probe) {
        w->probing = true;
        spdlog::info("handler {}: paused since {}; probing with event {}", cfg.name, format_rfc3339_us(w->st.since_us), row.ev->id);
      }
      self->tasks.spawn(self->ioc.get_executor(),
                        [&](const task_group::task_ptr&) { return deliver_one(self, w, std::move(row), probe); });
      if (probe) break;  // one at a time
    }
    if (w->queue.empty() && w->dirty) continue;
    const auto soon = std::chrono::steady_clock::now() + self->poll_interval;
    w->wake->expires_at(w->queue.empty() ? next_look
                        : probe_due       ? std::min(*probe_due, soon)
                        : token_due       ? std::min(*token_due, soon)
                                          : soon);
    auto op = w->wake->async_wait(use_tuple);
    co_await std::move(op);
  }
  w->queue.clear();
  w->queued.clear();
}

// The stop: the worker loops end, deliveries in flight get `drain` to finish, and then their
// handlers are cancelled (the rows are retried after a restart). run() returns once all ended.
asio::awaitable<void> drain_and_stop(dispatcher::impl* p, std::chrono::milliseconds drain) {
  p->stopping = true;
  p->state_timer.cancel();
  p->wake_all();
  auto drained = p->tasks.wait_empty(std::chrono::steady_clock::now() + drain);
  if (co_await std::move(drained)) co_return;
  for (auto& w : p->workers) {
    if (w->in_flight.empty()) continue;
    w->h.load()->cancel();
    for (auto& old : w->retired) old->cancel();
  }
}

}  // namespace

dispatcher::dispatcher(std::unique_ptr<impl> p) : p_(std::move(p)) {}

dispatcher::~dispatcher() {
  if (p_->thread.joinable()) {
    stop(std::chrono::milliseconds(0));
    join();
  }
}

outcome<std::unique_ptr<dispatcher>> dispatcher::create(const std::vector<config::handler_config>& handlers,
                                                        std::chrono::milliseconds poll_interval) {
  auto p = std::make_unique<impl>();
  p->poll_interval = poll_interval;
  for (const auto& hc : handlers) {
    auto h = make_handler(hc, p->ioc.get_executor());
    if (!h) return h.error();
    auto w = std::make_unique<worker>();
    w->cfg = hc;
    w->h.store(std::shared_ptr<handler>(std::move(*h)));
    w->wake = std::make_unique<asio::steady_timer>(p->ioc);
    p->workers.push_back(std::move(w));
  }
  return std::unique_ptr<dispatcher>(new dispatcher(std::move(p)));
}

void dispatcher::set_observer(observer o) { p_->observe = std::move(o); }
void dispatcher::set_throttle_observer(std::function<void(const std::string&)> o) { p_->observe_throttle = std::move(o); }

void dispatcher::set_look_observer(look_observer o) { p_->observe_look = std::move(o); }
void dispatcher::set_state_observer(state_observer o) { p_->observe_state = std::move(o); }
void dispatcher::set_alert_sink(std::function<void(alerts::notice)> send, std::chrono::milliseconds quiet) {
  p_->alert = std::move(send);
  p_->quiet_ms = quiet.count();
}

outcome<std::vector<std::string>> dispatcher::reload(const std::vector<config::handler_config>& fresh) {
  if (fresh.size() != p_->workers.size())
    return make_failure(errc::invalid_config, "handlers were added or removed: that needs a restart");
  std::vector<std::pair<worker*, config::handler_config>> changes;
  std::vector<std::shared_ptr<handler>> built;
  for (std::size_t i = 0; i < fresh.size(); ++i) {
    worker* w = p_->workers[i].get();
    const auto& n = fresh[i];
    if (n.name != w->cfg.name || n.type != w->cfg.type || !(n.match == w->cfg.match) || n.ordered != w->cfg.ordered)
      return make_failure(errc::invalid_config, "handler " + n.name +
                                                    ": its name, type, order, match or ordered changed: that needs a restart");
    if (n == w->cfg) continue;
    auto h = make_handler(n, p_->ioc.get_executor());  // validates the new settings; no I/O yet
    if (!h) return h.error();
    built.push_back(std::shared_ptr<handler>(std::move(*h)));
    changes.emplace_back(w, n);
  }
  std::vector<std::string> names;
  for (const auto& [w, n] : changes) names.push_back(n.name);
  if (changes.empty()) return names;
  // Swapped on the dispatcher's thread: new deliveries use the new settings; those in flight
  // finish with the old handler, kept (and cancelled at shutdown) in `retired`.
  asio::post(p_->ioc, [p = p_.get(), changes = std::move(changes), built = std::move(built)]() mutable {
    for (std::size_t i = 0; i < changes.size(); ++i) {
      worker* w = changes[i].first;
      w->retired.push_back(w->h.exchange(built[i]));
      w->cfg.retry = changes[i].second.retry;
      w->cfg.concurrency = changes[i].second.concurrency;
      w->cfg.rate_per_s = changes[i].second.rate_per_s;
      w->cfg.rate_text = changes[i].second.rate_text;
      w->cfg.rate_burst = changes[i].second.rate_burst;
      w->cfg.pause_after = changes[i].second.pause_after;
      w->cfg.pause_for_ms = changes[i].second.pause_for_ms;
      w->cfg.pause_max_ms = changes[i].second.pause_max_ms;
      w->cfg.settings = changes[i].second.settings;
      w->wake->cancel();
    }
  });
  return names;
}

store::router dispatcher::router() {
  if (p_->workers.empty()) return {};
  std::vector<std::pair<const worker*, store::route>> table;
  for (const auto& w : p_->workers) table.push_back({w.get(), {w->cfg.name, w->cfg.ordered}});
  return [table, p = p_.get()](const event::event& ev, std::vector<store::route>& out) {
    const std::shared_ptr<const field_definitions> defs = p->fields.load();
    for (const auto& [w, route] : table)
      if (matches(w->cfg.match, ev, defs.get()) && w->h.load()->accepts(ev)) out.push_back(route);
  };
}

void dispatcher::set_fields(const std::string& object, store::field_map fields) {
  std::lock_guard lk(p_->fields_mu);
  auto next = std::make_shared<field_definitions>(*p_->fields.load());
  (*next)[object] = std::move(fields);
  p_->fields.store(std::move(next));
}

outcome<void> dispatcher::start(store::event_log& log, const store::location& where, const store::claim_options& claims,
                                const store::presence* presence) {
  if (p_->workers.empty()) return {};
  p_->presence = presence;
  auto ob = store::outbox::open(where.for_purpose("delivery"), claims);
  if (!ob) return ob.error();
  p_->outbox = std::move(*ob);
  p_->log = &log;
  p_->replica = claims.replica_id.empty() ? store::this_replica("").id : claims.replica_id;
  // The handlers' states as the last process left them: a handler paused by hand stays paused.
  auto meta = store::meta_store::open(where);
  if (!meta) return meta.error();
  p_->meta = std::move(*meta);
  adopt_states(p_.get());
  for (auto& w : p_->workers)
    if (p_->observe_state) p_->observe_state(w->cfg.name, w->st);
  p_->tasks.spawn(p_->ioc.get_executor(), [&](const task_group::task_ptr&) { return state_loop(p_.get()); });
  for (auto& w : p_->workers)
    p_->tasks.spawn(p_->ioc.get_executor(), [&](const task_group::task_ptr&) { return worker_loop(p_.get(), w.get()); });
  p_->thread = std::thread([p = p_.get()] {
    pthread_setname_np(pthread_self(), "ph-dispatch");
    p->ioc.run();
  });
  return {};
}

void dispatcher::notify(std::vector<store::fresh_deliveries> fresh) {
  if (p_->workers.empty()) return;
  asio::post(p_->ioc, [p = p_.get(), fresh = std::move(fresh)] {
    for (auto& w : p->workers)
      if (w->cfg.ordered) w->dirty = true;  // ordered handlers read their rows in order from the outbox
    std::vector<std::int64_t> overflow;  // claimed by this replica's writer, no room here
    for (const auto& f : fresh)
      for (const auto& [name, id] : f.rows)
        for (auto& w : p->workers) {
          if (w->cfg.name != name) continue;
          // Already taken by a look at the outbox (the writer's rows start as this replica's claims,
          // so a look can come first), perhaps delivered with its verdict still committing: not twice.
          if (w->queued.count(id) || w->in_flight.count(id) || w->committing.count(id)) break;
          // Bounded: beyond it the rows wait in the outbox, for this replica's next look or another's.
          if (p->stopping || w->queue.size() >= max_queued) {
            w->dirty = true;
            overflow.push_back(id);
            break;
          }
          store::pending_delivery row;
          row.id = id;
          row.created_at_us = f.created_at_us;
          row.ev = f.ev;
          w->queued.insert(id);
          w->queue.push_back(std::move(row));
        }
    // Their claims go back, so that a replica with room takes them now rather than after the lease.
    if (!overflow.empty())
      if (auto r = p->outbox->release(overflow); !r)
        spdlog::warn("dispatcher: could not hand {} queued deliveries to other replicas ({}); they wait for this one",
                     overflow.size(), r.error().message);
    for (auto& w : p->workers) w->wake->cancel();
  });
}

void dispatcher::stop(std::chrono::milliseconds drain) {
  asio::post(p_->ioc, [p = p_.get(), drain] {
    if (p->stopping) return;
    asio::co_spawn(p->ioc, drain_and_stop(p, drain), log_exception{"the dispatcher's stop"});
  });
}

void dispatcher::join() {
  if (p_->thread.joinable()) p_->thread.join();
}

}  // namespace pipehook::dispatch
