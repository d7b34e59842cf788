#include "pipehook/pipedrive/backfill.hpp"

#include "pipehook/core/codec.hpp"
#include "pipehook/core/spawn.hpp"
#include "pipehook/core/time.hpp"
#include "pipehook/core/use_tuple.hpp"
#include "pipehook/pipedrive/vocabulary.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <ctime>
#include <memory>
#include <pthread.h>
#include <thread>

namespace pipehook::pipedrive {

namespace asio = boost::asio;

namespace {

constexpr std::int64_t second_us = 1'000'000;

std::int64_t floor_second(std::int64_t us) { return us - ((us % second_us) + second_us) % second_us; }

std::string describe_window(std::int64_t since_us, std::int64_t until_us) {
  return format_rfc3339_us(since_us) + " .. " + format_rfc3339_us(until_us);
}

}  // namespace

std::string recents_timestamp(std::int64_t us) {
  const std::time_t t = static_cast<std::time_t>(floor_second(us) / second_us);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

std::optional<event::event> recovered_event(const recent_record& r, std::int64_t since_us, const backfill_account& account,
                                            std::int64_t received_at_us) {
  const auto updated = parse_iso8601_us(r.update_time);
  if (!updated) return std::nullopt;
  event::event ev;
  ev.version = 1;
  ev.entity = r.item;
  ev.entity_id = r.id;
  const auto added = parse_iso8601_us(r.add_time);
  ev.action = added && *added >= floor_second(since_us) ? "create" : "change";
  ev.source_action = event::backfill_source;
  ev.change_source = event::backfill_source;
  ev.company_id = account.company_id;
  ev.host = account.host;
  ev.occurred_at_us = *updated;
  ev.received_at_us = received_at_us;
  ev.attempt = 1;
  ev.body = r.data;
  const std::string canonical = std::string("backfill\n") + r.item + "\n" + r.id + "\n" + std::to_string(*updated);
  ev.event_key = to_hex(sha256(canonical).data(), 16);
  return ev;
}

std::vector<std::string> default_backfill_objects(const config::config& c) {
  if (!c.backfill.objects.empty()) return c.backfill.objects;
  std::vector<std::string> out;
  auto add = [&](std::string_view o) {
    if (std::find(out.begin(), out.end(), o) == out.end()) out.emplace_back(o);
  };
  for (const auto& w : c.registrar.webhooks) {
    if (w.event_action == "delete") continue;  // deletions are not recoverable
    if (w.event_object == "*") {
      for (auto o : recoverable_objects()) add(o);
    } else if (recoverable_object(w.event_object)) {
      add(w.event_object);
    }
  }
  if (out.empty() && c.registrar.webhooks.empty())
    for (auto o : recoverable_objects()) add(o);
  return out;
}

namespace {

// The events of one page through the writer together (one group commit), waiting for all.
struct page_commit {
  asio::steady_timer done;
  std::size_t pending = 0;
  std::vector<store::append_result> results;
  explicit page_commit(asio::any_io_executor ex) : done(ex) {}
};

asio::awaitable<std::vector<store::append_result>> append_all(store::event_log& log, std::vector<event::event> events) {
  auto ex = co_await asio::this_coro::executor;
  auto state = std::make_shared<page_commit>(ex);
  state->results.resize(events.size(), make_failure(errc::store_io, "not written"));
  state->pending = events.size();
  state->done.expires_at(std::chrono::steady_clock::time_point::max());
  for (std::size_t i = 0; i < events.size(); ++i)
    log.append(std::move(events[i]), [state, i, ex](store::append_result r) {
      asio::post(ex, [state, i, r = std::move(r)]() mutable {
        state->results[i] = std::move(r);
        if (--state->pending == 0) state->done.cancel();
      });
    });
  while (state->pending > 0) {
    auto w = state->done.async_wait(use_tuple);
    co_await std::move(w);
  }
  co_return std::move(state->results);
}

// A write that may work a moment later (the writer's queue full under a burst, a lock).
bool store_transient(const failure& f) {
  return f.code == errc::queue_full || f.code == errc::store_busy;
}

}  // namespace

asio::awaitable<void> run_backfill(backfill_context ctx, store::backfill_run& run) {
  auto save = [&] {
    if (auto s = ctx.book->save(run); !s) spdlog::warn("backfill #{}: cannot save its progress: {}", run.id, s.error().message);
    if (ctx.progress) ctx.progress(run);
  };
  auto stopped = [&] { return ctx.stopping && ctx.stopping->load(); };
  auto finish = [&](std::string state, std::string error) {
    run.state = std::move(state);
    run.error = std::move(error);
    if (run.finished()) run.finished_at_us = now_us();
    save();
  };
  // A failed call: worth resuming later (rate limits beyond retry_max, Pipedrive unreachable, a
  // stop), or not (a refused token, an answer that is not what the spec says).
  auto api_failed = [&](const api_error& e) {
    if (e.kind == api_errc::cancelled || stopped()) return finish("interrupted", "stopped: " + e.message);
    if (e.transient()) return finish("interrupted", e.message + " (resumed at the next start, or with --resume)");
    finish("failed", e.message);
  };

  run.state = "running";
  run.replica = ctx.replica;
  run.error.clear();
  if (run.started_at_us == 0) run.started_at_us = now_us();
  save();
  spdlog::info("backfill #{} ({}): {} for {}{}{}", run.id, run.reason, describe_window(run.since_us, run.until_us),
               store::join_objects(run.objects), run.dry_run ? " (dry run)" : "",
               run.next_start || run.object_index ? " (resumed)" : "");

  const std::uint64_t requests_before = ctx.api->stats().requests;
  const std::int64_t calls_before = run.api_calls;
  auto count_calls = [&] { run.api_calls = calls_before + static_cast<std::int64_t>(ctx.api->stats().requests - requests_before); };

  // The account: the company id and host the recovered events carry.
  backfill_account account;
  {
    auto op = ctx.api->whoami();
    auto me = co_await std::move(op);
    count_calls();
    if (!me) {
      api_failed(me.error());
      co_return;
    }
    run.token_cost += whoami_token_cost;
    if (me->company_id != 0) account.company_id = std::to_string(me->company_id);
    // As meta.host would say it; event::record_url links only a well-formed *.pipedrive.com host.
    if (!me->company_domain.empty()) account.host = me->company_domain + ".pipedrive.com";
  }

  const std::string since_text = recents_timestamp(run.since_us);
  const std::int64_t window_start = floor_second(run.since_us);
  while (run.object_index < run.objects.size()) {
    if (stopped()) co_return finish("interrupted", "stopped");
    if (run.api_calls - calls_before >= static_cast<std::int64_t>(ctx.max_calls))  // per go: a resume gets as many again
      co_return finish("capped", "backfill.max_calls (" + std::to_string(ctx.max_calls) + ") reached at " +
                                     run.objects[run.object_index] + " offset " + std::to_string(run.next_start) +
                                     ": run it again with --resume " + std::to_string(run.id) + " to go on");
    const std::string object = run.objects[run.object_index];
    auto op = ctx.api->recents(since_text, object, run.next_start, static_cast<int>(ctx.page_size));
    auto page = co_await std::move(op);
    count_calls();
    if (!page) {
      api_failed(page.error());
      co_return;
    }
    run.token_cost += recents_token_cost;

    std::vector<event::event> fresh;
    const std::int64_t received = now_us();
    for (const auto& rec : page->records) {
      auto ev = rec.item == object ? recovered_event(rec, run.since_us, account, received) : std::nullopt;
      if (!ev || ev->occurred_at_us < window_start || ev->occurred_at_us > run.until_us) {
        ++run.skipped;
        continue;
      }
      ++run.records_read;
      auto known = ctx.book->latest_occurred(ev->entity, ev->entity_id);
      if (!known) co_return finish("interrupted", "the event log: " + known.error().message);
      if (*known && **known >= ev->occurred_at_us - second_us) {
        ++run.already_known;
        continue;
      }
      // Two listings of one record in a page (it changed while being read): the later one.
      auto same = std::find_if(fresh.begin(), fresh.end(),
                               [&](const event::event& e) { return e.entity == ev->entity && e.entity_id == ev->entity_id; });
      if (same != fresh.end()) {
        ++run.already_known;
        if (same->occurred_at_us < ev->occurred_at_us) *same = std::move(*ev);
        continue;
      }
      fresh.push_back(std::move(*ev));
    }
    if (run.dry_run) {
      run.events_stored += static_cast<std::int64_t>(fresh.size());
    } else if (!fresh.empty()) {
      // Committed before the position moves past this page: a crash re-reads it, and finds them known.
      for (unsigned attempt = 1;; ++attempt) {
        auto ap = append_all(*ctx.log, fresh);
        auto results = co_await std::move(ap);
        std::vector<event::event> again;
        std::optional<failure> fatal;
        for (std::size_t i = 0; i < results.size(); ++i) {
          if (results[i]) {
            if (results[i]->status == store::append_status::stored) ++run.events_stored;
            else ++run.already_known;
          } else if (store_transient(results[i].error())) {
            again.push_back(std::move(fresh[i]));
          } else {
            fatal = results[i].error();
          }
        }
        if (fatal) co_return finish("interrupted", "the event log: " + fatal->message);
        if (again.empty()) break;
        if (attempt >= 50 || stopped()) co_return finish("interrupted", "the event log stayed busy; resumed later");
        fresh = std::move(again);
        asio::steady_timer t(co_await asio::this_coro::executor);
        t.expires_after(std::chrono::milliseconds(std::min<unsigned>(2'000, 100 * attempt)));
        auto w = t.async_wait(use_tuple);
        co_await std::move(w);
      }
    }
    if (page->more) {
      run.next_start = page->next_start;
    } else {
      ++run.object_index;
      run.next_start = 0;
    }
    save();
  }
  finish("done", "");
  spdlog::info("backfill #{}: done: {} record(s) read, {} event(s) {}, {} already in the log, {} API call(s) ({} tokens)", run.id,
               run.records_read, run.events_stored, run.dry_run ? "would be stored" : "stored", run.already_known, run.api_calls,
               run.token_cost);
}

// ------------------------------------------------------------------------------------------------
// The service

struct backfill_service::impl {
  asio::io_context ioc{1};
  config::config cfg;
  store::location where;
  store::event_log* log = nullptr;
  std::string replica;
  std::unique_ptr<store::leadership> leader;
  std::unique_ptr<client> api;                // null without a token
  std::unique_ptr<store::backfill_store> book;  // the runner's own connection (on ioc)
  asio::steady_timer wake{ioc};
  std::atomic<bool> stopping{false};
  std::thread thread;
  std::optional<std::int64_t> last_heartbeat;  // read at start(), before the first beat
};

namespace {

using impl = backfill_service::impl;

bool detecting(const impl* self) { return self->cfg.backfill.enabled && self->api; }

// The downtime gap: from the last heartbeat to now, when longer than min_gap.
void queue_downtime(impl* self, std::int64_t now) {
  if (!self->last_heartbeat) return;  // a new log: nothing was missed
  const std::int64_t gap_us = now - *self->last_heartbeat;
  if (gap_us < self->cfg.backfill.min_gap_ms * 1000) return;
  store::backfill_run run;
  run.reason = "downtime";
  run.until_us = now;
  run.since_us = std::max(*self->last_heartbeat, now - self->cfg.backfill.max_window_ms * 1000);
  run.objects = default_backfill_objects(self->cfg);
  run.detail = "pipehook was not receiving from " + format_rfc3339_us(*self->last_heartbeat) + " to " + format_rfc3339_us(now) +
               " (" + std::to_string(gap_us / 1'000'000) + " s)";
  if (run.since_us > *self->last_heartbeat) run.detail += "; backfill.max_window limits the window";
  if (run.objects.empty()) return;
  if (auto r = self->book->create(run); !r) spdlog::error("backfill: cannot record the downtime gap: {}", r.error().message);
  else spdlog::warn("backfill: {}: run #{} queued", run.detail, run.id);
}

// A webhook that was not delivering: since its last delivery in the log (else since the
// registrar last saw it healthy), for its objects that /recents lists.
void queue_webhook_gap(impl* self, const webhook_gap& gap) {
  const std::int64_t now = now_us();
  auto last = self->book->last_received_from(std::to_string(gap.webhook_id));
  if (!last) {
    spdlog::error("backfill: cannot read webhook #{}'s last delivery: {}", gap.webhook_id, last.error().message);
    return;
  }
  const std::int64_t oldest = now - self->cfg.backfill.max_window_ms * 1000;
  std::int64_t since = last->value_or(gap.seen_ok_us);
  std::string from = *last ? "its last delivery at " + format_rfc3339_us(since)
                     : since ? "when the registrar last saw it in place, " + format_rfc3339_us(since)
                             : "backfill.max_window ago (no delivery from it in the log)";
  since = std::max(since, oldest);
  store::backfill_run run;
  run.reason = "webhook";
  run.since_us = since;
  run.until_us = now;
  const auto& configured = self->cfg.backfill.objects;  // when set, it narrows what is recovered
  for (auto o : recoverable_objects())
    if ((gap.event_object == "*" || gap.event_object == o) &&
        (configured.empty() || std::find(configured.begin(), configured.end(), o) != configured.end()))
      run.objects.emplace_back(o);
  run.detail = "webhook #" + std::to_string(gap.webhook_id) + " (" + gap.event_object + ") " + gap.why + "; from " + from;
  if (run.objects.empty()) {
    spdlog::warn("backfill: {}: /recents lists none of its objects, so nothing can be recovered", run.detail);
    return;
  }
  if (auto r = self->book->create(run); !r) {
    spdlog::error("backfill: cannot record the gap of webhook #{}: {}", gap.webhook_id, r.error().message);
    return;
  }
  spdlog::warn("backfill: {}: run #{} queued", run.detail, run.id);
  self->wake.cancel();
}

asio::awaitable<void> sleep_for(impl* self, std::chrono::milliseconds d) {
  self->wake.expires_after(d);
  auto w = self->wake.async_wait(use_tuple);
  co_await std::move(w);
}

// Beats, and (when allowed) runs what is queued, oldest first.
asio::awaitable<void> service_loop(impl* self) {
  const auto beat_every = std::chrono::milliseconds(self->cfg.backfill.heartbeat_ms);
  auto next_beat = std::chrono::steady_clock::now();
  while (!self->stopping) {
    if (std::chrono::steady_clock::now() >= next_beat) {
      if (auto b = self->book->beat(now_us()); !b) spdlog::warn("backfill: cannot write the heartbeat: {}", b.error().message);
      next_beat = std::chrono::steady_clock::now() + beat_every;
    }
    if (self->api && (!self->leader || self->leader->check())) {
      auto queued = self->book->unfinished();
      if (!queued) spdlog::warn("backfill: cannot read the queued runs: {}", queued.error().message);
      // A run `pipehook backfill` started stays the command's (it resumes it with --resume).
      else if (auto it = std::find_if(queued->begin(), queued->end(),
                                      [](const store::backfill_run& r) { return r.replica.rfind(cli_replica_prefix, 0) != 0; });
               it != queued->end()) {
        store::backfill_run run = *it;
        backfill_context ctx;
        ctx.api = self->api.get();
        ctx.book = self->book.get();
        ctx.log = self->log;
        ctx.max_calls = self->cfg.backfill.max_calls;
        ctx.page_size = self->cfg.backfill.page_size;
        ctx.replica = self->replica;
        ctx.stopping = &self->stopping;
        // Beats go on during a long run.
        ctx.progress = [self, &next_beat, beat_every](const store::backfill_run&) {
          if (std::chrono::steady_clock::now() < next_beat) return;
          (void)self->book->beat(now_us());
          next_beat = std::chrono::steady_clock::now() + beat_every;
        };
        auto op = run_backfill(std::move(ctx), run);
        co_await std::move(op);
        if (run.state == "interrupted" && !self->stopping) {
          // Pipedrive or the log is not available now: try again later, not in a tight loop.
          auto w = sleep_for(self, std::chrono::milliseconds(std::max<std::int64_t>(self->cfg.pipedrive.retry_max_ms, 1'000)));
          co_await std::move(w);
        }
        continue;
      }
    }
    auto w = sleep_for(self, std::chrono::duration_cast<std::chrono::milliseconds>(next_beat - std::chrono::steady_clock::now()));
    co_await std::move(w);
  }
}

}  // namespace

backfill_service::backfill_service(std::shared_ptr<impl> p) : p_(std::move(p)) {}
backfill_service::~backfill_service() { stop(); }

outcome<std::unique_ptr<backfill_service>> backfill_service::create(const config::config& c, const store::location& where,
                                                                    store::event_log& log, std::string replica,
                                                                    std::unique_ptr<store::leadership> leader) {
  auto p = std::make_shared<impl>();
  p->cfg = c;
  p->where = where;
  p->log = &log;
  p->replica = std::move(replica);
  p->leader = std::move(leader);
  if (config::check_pipedrive_ready(c)) {
    auto api = client::create(p->ioc.get_executor(), c.pipedrive);
    if (!api) return api.error();
    p->api = std::move(*api);
  } else if (c.backfill.enabled) {
    spdlog::warn("backfill.enabled, but no Pipedrive token is set (pipedrive.api_token or PIPEDRIVE_API_TOKEN): gaps are "
                 "neither detected nor recovered");
  }
  auto book = store::backfill_store::open(where);
  if (!book) return book.error();
  p->book = std::move(*book);
  return std::unique_ptr<backfill_service>(new backfill_service(std::move(p)));
}

void backfill_service::start() {
  impl* self = p_.get();
  auto hb = self->book->heartbeat();
  if (!hb) spdlog::warn("backfill: cannot read the heartbeat: {}", hb.error().message);
  else self->last_heartbeat = *hb;
  if (detecting(self)) queue_downtime(self, now_us());
  asio::co_spawn(self->ioc, service_loop(self), log_exception{"the backfill runner"});
  self->thread = std::thread([self] {
    pthread_setname_np(pthread_self(), "ph-backfill");
    self->ioc.run();
  });
}

void backfill_service::stop() {
  if (!p_ || !p_->thread.joinable()) return;
  p_->stopping = true;
  asio::post(p_->ioc, [p = p_.get()] {
    p->wake.cancel();
    if (p->api) p->api->cancel();
  });
  p_->thread.join();
  // The last beat: the next start measures the downtime from here.
  if (auto b = p_->book->beat(now_us()); !b) spdlog::warn("backfill: cannot write the last heartbeat: {}", b.error().message);
}

bool backfill_service::can_run() const { return p_->api != nullptr; }

outcome<store::backfill_run> backfill_service::request(store::backfill_run run) {
  if (!p_->api) return make_failure(errc::invalid_argument, "backfill needs a Pipedrive token (pipedrive.api_token or PIPEDRIVE_API_TOKEN)");
  auto book = store::backfill_store::open(p_->where);
  if (!book) return book.error();
  run.state = "queued";
  if (auto r = (*book)->create(run); !r) return r.error();
  asio::post(p_->ioc, [p = p_.get()] { p->wake.cancel(); });
  return run;
}

void backfill_service::on_webhook_gap(const webhook_gap& gap) {
  if (!detecting(p_.get())) return;
  asio::post(p_->ioc, [p = p_.get(), gap] { queue_webhook_gap(p, gap); });
}

}  // namespace pipehook::pipedrive
