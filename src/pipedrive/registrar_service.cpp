#include "pipehook/pipedrive/registrar_service.hpp"

#include "pipehook/core/backoff.hpp"
#include "pipehook/core/spawn.hpp"
#include "pipehook/core/task_group.hpp"
#include "pipehook/core/time.hpp"
#include "pipehook/core/use_tuple.hpp"

#include "pipehook/pipedrive/registrar.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include <map>
#include <set>


namespace pipehook::pipedrive {

namespace asio = boost::asio;

struct registrar_service::impl {
  asio::strand<asio::any_io_executor> strand;
  desired_state desired;
  std::chrono::milliseconds resync;
  std::chrono::milliseconds retry_floor{2'000};  // the first wait after a transient failure
  bool delete_on_shutdown = false;
  std::unique_ptr<client> api;
  asio::steady_timer wait_timer;
  task_group loop;        // the registrar's loop, a group of one: stop waits for it with a deadline
  bool stopping = false;  // on the strand
  std::vector<std::int64_t> managed;  // the desired webhooks now in Pipedrive (on the strand)
  std::unique_ptr<store::leadership> leader;  // null: the only replica
  std::chrono::milliseconds takeover_check{60'000};
  bool leading = false;  // on the strand: this replica has the role (with replicas)
  std::function<bool()> last_replica;  // delete_on_shutdown asks it (null: always the last)
  std::function<void(std::string_view, std::string_view)> observe;
  std::function<void(const webhook_gap&)> on_gap;
  struct seen_hook {
    webhook w;
    std::int64_t ok_us = 0;  // last seen healthy
  };
  std::map<std::int64_t, seen_hook> seen;  // the managed webhooks at the last reconcile
  std::set<std::int64_t> reported;          // failing ones already reported

  explicit impl(asio::any_io_executor ex) : strand(asio::make_strand(ex)), wait_timer(strand), loop(strand, "the registrar") {}
};

namespace {

bool failing(const webhook& w) {
  return !w.is_active || (w.last_http_status != 0 && (w.last_http_status < 200 || w.last_http_status >= 300));
}

// After a reconcile: the managed webhooks that vanished since the last one, or that are not
// delivering, go to the gap observer.
void find_gaps(registrar_service::impl* self, const sync_result& r) {
  const std::int64_t now = now_us();
  std::map<std::int64_t, registrar_service::impl::seen_hook> next;
  for (const auto* list : {&r.planned.keep, &r.created})
    for (const auto& w : *list) {
      const auto prev = self->seen.find(w.id);
      const std::int64_t ok = failing(w) ? (prev == self->seen.end() ? 0 : prev->second.ok_us) : now;
      next[w.id] = {w, ok};
    }
  for (const auto& [id, prev] : self->seen)
    if (!next.count(id) && self->on_gap)
      self->on_gap({id, prev.w.event_object, "is gone from Pipedrive (deleted after failing deliveries, or by someone)", prev.ok_us});
  for (const auto& [id, h] : next) {
    if (!failing(h.w)) {
      self->reported.erase(id);
      continue;
    }
    if (!self->reported.insert(id).second || !self->on_gap) continue;
    self->on_gap({id, h.w.event_object,
                  !h.w.is_active ? "is inactive at Pipedrive"
                                 : "last failed with HTTP " + std::to_string(h.w.last_http_status) + " (at " +
                                       (h.w.last_delivery_time.empty() ? "?" : h.w.last_delivery_time) + ")",
                  h.ok_us});
  }
  self->seen = std::move(next);
}

void log_report(const std::string& line) {
  if (line.rfind("plan: warning:", 0) == 0) spdlog::warn("registrar: {}", line);
  else spdlog::info("registrar: {}", line);
}

asio::awaitable<void> delete_managed(std::shared_ptr<registrar_service::impl> self) {
  const std::vector<std::int64_t> ids = self->managed;
  for (std::int64_t id : ids) {
    auto op = self->api->delete_webhook(id);
    auto r = co_await std::move(op);
    if (r || r.error().kind == api_errc::not_found) {
      spdlog::info("registrar: deleted webhook #{} (delete_on_shutdown)", id);
      continue;
    }
    spdlog::error("registrar: could not delete webhook #{} on shutdown: {}", id, r.error().message);
    if (r.error().kind == api_errc::cancelled) break;
  }
}

// The stop: the loop's reconcile (or wait) ends now; deleting the managed webhooks, if asked, gets
// until the deadline, when the calls in progress are cancelled.
asio::awaitable<void> stop_loop(std::shared_ptr<registrar_service::impl> self, std::chrono::milliseconds deadline) {
  self->stopping = true;
  self->wait_timer.cancel();
  self->api->cancel();
  auto ended = self->loop.wait_empty(std::chrono::steady_clock::now() + deadline);
  if (!co_await std::move(ended)) self->api->cancel();
}

// Waits on the strand until `until` (or a stop).
asio::awaitable<void> sleep_until(registrar_service::impl* self, std::chrono::steady_clock::time_point until) {
  self->wait_timer.expires_at(until);
  auto w = self->wait_timer.async_wait(use_tuple);
  co_await std::move(w);
}

asio::awaitable<void> run_loop(std::shared_ptr<registrar_service::impl> self) {
  unsigned failures = 0;
  if (self->observe) self->observe("starting", "");
  auto next_reconcile = std::chrono::steady_clock::now();
  while (!self->stopping) {
    // Several replicas: only the one with the role talks to Pipedrive. Every takeover_check a
    // replica in standby looks whether the leader is gone, and the leader whether it still leads.
    if (self->leader) {
      if (!self->leader->check()) {
        self->leading = false;
        if (self->observe) self->observe("standby", "");
        next_reconcile = std::chrono::steady_clock::now();  // reconcile at once on taking over
        auto op = sleep_until(self.get(), std::chrono::steady_clock::now() + self->takeover_check);
        co_await std::move(op);
        continue;
      }
      self->leading = true;
      if (std::chrono::steady_clock::now() < next_reconcile) {
        auto op = sleep_until(self.get(), std::min(next_reconcile, std::chrono::steady_clock::now() + self->takeover_check));
        co_await std::move(op);
        continue;
      }
    }
    auto op = reconcile(*self->api, self->desired, false, log_report);
    auto r = co_await std::move(op);
    if (self->stopping) break;
    std::chrono::milliseconds wait = self->resync;
    if (r) {
      failures = 0;
      self->managed = r->managed;
      find_gaps(self.get(), *r);
      if (self->observe) self->observe("ok", "");
      spdlog::info("registrar: {} webhook(s) in place at {} ({} created, {} deleted, {} kept) for user {} of {}",
                   r->managed.size(), self->desired.subscription_url, r->created.size(), r->deleted.size(),
                   r->planned.keep.size(), r->me.id, r->me.company_domain.empty() ? "?" : r->me.company_domain);
    } else if (r.error().transient()) {
      wait = backoff_delay(++failures, self->retry_floor, std::chrono::minutes(5));
      if (self->observe) self->observe("retrying", r.error().message);
      spdlog::warn("registrar: {}; trying again in {:.1f} s", r.error().message, wait.count() / 1000.0);
    } else {
      if (self->observe) self->observe("failed", r.error().message);
      spdlog::error("registrar: {}; webhooks are not registered{}", r.error().message,
                    self->resync.count() ? "; trying again at the next resync" : "; fix it and restart");
    }
    if (wait.count() == 0) wait = std::chrono::hours(24 * 365);  // no resync: sleep until stop
    next_reconcile = std::chrono::steady_clock::now() + wait;
    if (self->leader) continue;  // the top of the loop sleeps, checking the role on the way
    auto w = sleep_until(self.get(), next_reconcile);
    co_await std::move(w);
  }
  if (self->delete_on_shutdown && (!self->leader || self->leading) && (!self->last_replica || self->last_replica())) {
    auto op = delete_managed(self);
    co_await std::move(op);
  }
}

}  // namespace

registrar_service::registrar_service(std::shared_ptr<impl> p) : p_(std::move(p)) {}
registrar_service::~registrar_service() = default;

outcome<std::unique_ptr<registrar_service>> registrar_service::create(asio::any_io_executor ex, const config::config& c,
                                                                      std::chrono::milliseconds retry_floor,
                                                                      std::unique_ptr<store::leadership> leader) {
  if (auto ready = config::check_registrar_ready(c); !ready) return ready.error();
  auto p = std::make_shared<impl>(ex);
  auto api = client::create(p->strand, c.pipedrive);
  if (!api) return api.error();
  p->api = std::move(*api);
  p->desired = desired_from(c);
  p->resync = std::chrono::milliseconds(c.registrar.resync_interval_ms);
  p->delete_on_shutdown = c.registrar.delete_on_shutdown;
  p->retry_floor = retry_floor;
  p->leader = std::move(leader);
  p->takeover_check = std::chrono::milliseconds(c.registrar.takeover_check_ms);
  return std::unique_ptr<registrar_service>(new registrar_service(std::move(p)));
}

void registrar_service::set_last_replica_check(std::function<bool()> f) { p_->last_replica = std::move(f); }

void registrar_service::set_resync_interval(std::chrono::milliseconds every) { p_->resync = every; }

void registrar_service::set_gap_observer(std::function<void(const webhook_gap&)> f) { p_->on_gap = std::move(f); }

void registrar_service::set_observer(std::function<void(std::string_view, std::string_view)> o) { p_->observe = std::move(o); }

void registrar_service::start() {
  p_->loop.spawn(p_->strand, [&](const task_group::task_ptr&) { return run_loop(p_); });
}

void registrar_service::stop(std::chrono::milliseconds deadline) {
  asio::post(p_->strand, [self = p_, deadline] {
    if (self->stopping) return;
    self->stopping = true;
    asio::co_spawn(self->strand, stop_loop(self, deadline), log_exception{"the registrar's stop"});
  });
}

}  // namespace pipehook::pipedrive
