#pragma once
// Prometheus metrics of the running daemon: counters and histograms recorded on the hot paths
// (lock-free where they are hot), gauges read at scrape time, rendered in the text exposition
// format 0.0.4 for GET /metrics on the admin listener.

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pipehook {

// A latency histogram with fixed buckets (seconds: 0.5 ms .. 10 s). Thread-safe, lock-free.
class histogram {
 public:
  static constexpr std::array<double, 14> bounds{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                 0.1,    0.25,  0.5,    1,     2.5,  5,     10};
  void observe(std::chrono::microseconds d);
  // Appends the _bucket/_sum/_count lines of `name` with extra `labels` ("" or `handler="x"`).
  void render(std::string& out, std::string_view name, std::string_view labels) const;

 private:
  std::array<std::atomic<std::uint64_t>, bounds.size() + 1> counts_{};  // the last: +Inf
  std::atomic<std::uint64_t> sum_us_{0};
};

// A value histogram (sizes: 1 .. 4096).
class size_histogram {
 public:
  static constexpr std::array<double, 9> bounds{1, 4, 16, 64, 128, 256, 512, 1024, 4096};
  void observe(std::uint64_t v);
  void render(std::string& out, std::string_view name) const;

 private:
  std::array<std::atomic<std::uint64_t>, bounds.size() + 1> counts_{};
  std::atomic<std::uint64_t> sum_{0};
};

class metrics {
 public:
  metrics();

  // Webhook listener: one answered (or abandoned: status 0) request.
  void request(std::string_view route, unsigned status, std::string_view outcome, std::chrono::microseconds elapsed);
  // Writer: one committed transaction of `records` items; `commit` is the COMMIT (fsync) time.
  void commit(std::size_t records, std::chrono::microseconds commit);
  // Dispatcher: one delivery attempt finished with `result` (done, retry, dead).
  void delivery(const std::string& handler, std::string_view result, std::chrono::microseconds elapsed);
  // One look of a handler's worker at the outbox: rows it claimed there, and how many of them had
  // been another replica's (whose lease ran out).
  void outbox_look(const std::string& handler, std::size_t claimed, std::size_t taken_over);
  // Dispatcher: a handler's next delivery waited for its rate (handler.rate).
  void rate_wait(const std::string& handler);
  // Dispatcher: a handler's breaker state now (paused by its breaker or by hand, or active).
  void handler_state(const std::string& handler, bool paused, bool by_hand);
  // Alerts: the notifier's counters, read at scrape time.
  struct alert_counts {
    std::uint64_t sent = 0, failed = 0, dropped = 0;
  };
  void set_alert_counts(std::function<alert_counts()> f);
  // Registrar: the outcome of the latest reconcile ("ok", "retrying", "failed").
  void registrar(std::string_view state);
  // Webhook listener: an idle connection closed at the connection cap to admit a new one.
  void closed_at_cap() { closed_at_cap_.fetch_add(1, std::memory_order_relaxed); }
  // A retention pass finished (whether or not it deleted anything).
  void retention_pass() { retention_passes_.fetch_add(1, std::memory_order_relaxed); }
  void wal_frames(std::uint64_t n) { wal_frames_.fetch_add(n, std::memory_order_relaxed); }

  // Scrape-time values, read from their owners when /metrics is asked for.
  struct gauges {
    std::size_t queue_depth = 0;
    std::size_t connections_busy = 0, connections_idle = 0;  // the webhook listener's
    std::int64_t log_bytes = -1;      // the event log's data size (-1: unknown, not shown)
    std::uint64_t log_budget_bytes = 0;  // store.retention.max_bytes (0: none, not shown)
    struct handler {
      std::string name;
      std::int64_t pending = 0, retrying = 0, dead = 0;
      std::vector<std::pair<std::string, std::int64_t>> claims;  // replica id -> rows it holds (PostgreSQL)
      double rate_per_s = 0;  // handler.rate (0: none)
    };
    std::vector<handler> handlers;
  };
  std::string render(const gauges& g) const;

  using counts = std::map<std::string, std::uint64_t, std::less<>>;
  // Requests by outcome since start (the per-minute log summary is the difference of two), and
  // those refused or quarantined (status >= 400 or 202) by outcome.
  counts outcomes() const;
  counts refused() const;

 private:
  mutable std::mutex mu_;  // guards the maps (low cardinality: routes x statuses, handlers)
  std::map<std::string, std::map<unsigned, std::uint64_t>, std::less<>> requests_;  // route -> status -> n
  counts outcomes_, refused_;
  std::map<std::pair<std::string, std::string>, std::uint64_t> deliveries_;
  std::map<std::string, histogram> delivery_latency_;
  struct look_counts {
    std::uint64_t looks = 0, claimed = 0, taken_over = 0;
  };
  std::map<std::string, look_counts> looks_;
  std::map<std::string, std::uint64_t> rate_waits_;
  struct breaker_state {
    bool paused = false, by_hand = false;
    std::uint64_t pauses = 0;
  };
  std::map<std::string, breaker_state> breakers_;
  std::function<alert_counts()> alert_counts_;
  std::string registrar_state_ = "disabled";
  std::int64_t registrar_changed_us_ = 0;
  histogram ingest_latency_;
  histogram commit_latency_;
  size_histogram batch_sizes_;
  std::int64_t started_us_;
  std::atomic<std::uint64_t> closed_at_cap_{0};
  std::atomic<std::uint64_t> retention_passes_{0};
  std::atomic<std::uint64_t> wal_frames_{0};
};

}  // namespace pipehook
