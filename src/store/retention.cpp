// Retention: small delete batches that never hold the write lock for long.
#include "pipehook/store/retention.hpp"

#include "pipehook/core/spawn.hpp"
#include "pipehook/core/time.hpp"
#include "pipehook/core/use_tuple.hpp"
#include "pipehook/store/async.hpp"
#include "pipehook/store/leadership.hpp"
#include "pipehook/store/reader.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <climits>

#include <vector>

namespace pipehook::store {

namespace asio = boost::asio;

struct retention_runner::impl {
  asio::strand<asio::any_io_executor> strand;
  asio::steady_timer timer;
  event_log& log;
  std::unique_ptr<reader> rd;
  std::unique_ptr<leadership> leader;  // replicas on one PostgreSQL log: one of them deletes
  retention_policy policy;
  std::atomic<bool> stopping{false};

  impl(asio::any_io_executor ex, event_log& l, std::unique_ptr<reader> r, std::unique_ptr<leadership> lead, retention_policy p)
      : strand(asio::make_strand(ex)), timer(strand), log(l), rd(std::move(r)), leader(std::move(lead)), policy(p) {}
};

namespace {

constexpr int retention_batch = 500;

// One batch through the writer; the rows it deleted, or nullopt (logged) when it failed.
asio::awaitable<std::optional<std::int64_t>> purge_batch_via_writer(retention_runner::impl* self, std::int64_t before_us, int limit) {
  auto op = async_purge(self->log, before_us, limit, asio::use_awaitable);
  append_result r = co_await std::move(op);
  if (!r) {
    spdlog::error("retention: {}", r.error().message);
    co_return std::nullopt;
  }
  co_return r->id;
}

// One pass: age first, then size.
asio::awaitable<std::int64_t> retention_pass(retention_runner::impl* self) {
  const retention_policy& c = self->policy;
  std::int64_t total = 0;
  if (c.max_age_ms > 0) {
    for (;;) {
      auto op = purge_batch_via_writer(self, now_us() - c.max_age_ms * 1000, retention_batch);
      const auto n = co_await std::move(op);
      if (!n) co_return total;
      total += *n;
      if (*n == 0 || self->stopping) break;
    }
  }
  if (c.max_bytes > 0) {
    double per_row = 0;  // the average row's bytes, measured once per pass (a count(*) reads the table)
    for (;;) {
      auto used = self->rd->used_bytes();
      if (!used) {
        spdlog::error("retention: {}", used.error().message);
        co_return total;
      }
      if (static_cast<std::uint64_t>(*used) <= c.max_bytes || self->stopping) break;
      // As many of the oldest rows as the excess holds at the average row size (not a whole batch:
      // a small budget would lose most of what it keeps), at least one, at most a batch.
      if (per_row == 0) {
        auto count = self->rd->count_events();
        per_row = static_cast<double>(*used) / static_cast<double>(count && *count > 0 ? *count : 1);
      }
      const auto excess = static_cast<double>(static_cast<std::uint64_t>(*used) - c.max_bytes);
      const int limit = static_cast<int>(std::clamp(excess / per_row + 1.0, 1.0, static_cast<double>(retention_batch)));
      auto op = purge_batch_via_writer(self, INT64_MAX, limit);
      const auto n = co_await std::move(op);
      if (!n) co_return total;
      total += *n;
      if (*n == 0) {
        spdlog::warn("retention: the event log holds {} bytes, over store.retention.max_bytes = {}, but what is left "
                     "has deliveries still pending", *used, c.max_bytes);
        break;
      }
    }
  }
  co_return total;
}

asio::awaitable<void> retention_loop(std::shared_ptr<retention_runner::impl> self) {
  while (!self->stopping) {
    std::int64_t deleted = 0;
    if (self->leader->check()) {
      auto pass = retention_pass(self.get());
      deleted = co_await std::move(pass);
      if (self->policy.on_pass) self->policy.on_pass();
    }
    if (deleted > 0) spdlog::info("retention: deleted {} old rows", deleted);
    if (self->stopping) break;
    self->timer.expires_after(std::chrono::milliseconds(self->policy.interval_ms));
    auto wait = self->timer.async_wait(use_tuple);
    co_await std::move(wait);
  }
}

}  // namespace

outcome<std::unique_ptr<retention_runner>> retention_runner::create(asio::any_io_executor ex, event_log& log,
                                                                    const location& where, retention_policy policy) {
  auto rd = reader::open(where.for_purpose("retention"));
  if (!rd) return rd.error();
  return std::unique_ptr<retention_runner>(
      new retention_runner(std::make_shared<impl>(ex, log, std::move(*rd), leadership::open(where, "retention"), policy)));
}

retention_runner::retention_runner(std::shared_ptr<impl> p) : p_(std::move(p)) {}
retention_runner::~retention_runner() = default;

void retention_runner::start() { asio::co_spawn(p_->strand, retention_loop(p_), log_exception{"the retention loop"}); }

void retention_runner::stop() {
  p_->stopping = true;
  asio::post(p_->strand, [p = p_] { p->timer.cancel(); });
}

}  // namespace pipehook::store
