#include "pipehook/core/metrics.hpp"

#include "pipehook/core/time.hpp"

#include <cstdio>

namespace pipehook {
namespace {

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

void header(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

// A label value with \ " and newlines escaped, as the text format asks.
std::string label(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

template <class Counts, class Bounds>
void render_buckets(std::string& out, std::string_view name, std::string_view labels, const Counts& counts,
                    const Bounds& bounds, double sum) {
  std::uint64_t cumulative = 0;
  const std::string sep = labels.empty() ? "" : std::string(labels) + ",";
  for (std::size_t i = 0; i <= bounds.size(); ++i) {
    cumulative += counts[i].load(std::memory_order_relaxed);
    out += std::string(name) + "_bucket{" + sep + "le=\"" + (i < bounds.size() ? number(bounds[i]) : "+Inf") + "\"} " +
           std::to_string(cumulative) + "\n";
  }
  const std::string braces = labels.empty() ? "" : "{" + std::string(labels) + "}";
  out += std::string(name) + "_sum" + braces + " " + number(sum) + "\n";
  out += std::string(name) + "_count" + braces + " " + std::to_string(cumulative) + "\n";
}

}  // namespace

void histogram::observe(std::chrono::microseconds d) {
  const double s = static_cast<double>(d.count()) / 1e6;
  std::size_t i = 0;
  while (i < bounds.size() && s > bounds[i]) ++i;
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_us_.fetch_add(static_cast<std::uint64_t>(std::max<std::int64_t>(0, d.count())), std::memory_order_relaxed);
}

void histogram::render(std::string& out, std::string_view name, std::string_view labels) const {
  render_buckets(out, name, labels, counts_, bounds, static_cast<double>(sum_us_.load()) / 1e6);
}

void size_histogram::observe(std::uint64_t v) {
  std::size_t i = 0;
  while (i < bounds.size() && static_cast<double>(v) > bounds[i]) ++i;
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

void size_histogram::render(std::string& out, std::string_view name) const {
  render_buckets(out, name, "", counts_, bounds, static_cast<double>(sum_.load()));
}

metrics::metrics() : started_us_(now_us()) {}

namespace {

// ++counts[key] without building a string when the key is there already (every request).
template <class Map>
auto& slot(Map& m, std::string_view key) {
  auto it = m.find(key);
  if (it == m.end()) it = m.emplace(std::string(key), typename Map::mapped_type{}).first;
  return it->second;
}

}  // namespace

void metrics::request(std::string_view route, unsigned status, std::string_view outcome, std::chrono::microseconds elapsed) {
  if (route == "webhook" && status != 0) ingest_latency_.observe(elapsed);
  std::lock_guard lk(mu_);
  ++slot(requests_, route)[status];
  ++slot(outcomes_, outcome);
  if (status >= 400 || status == 202) ++slot(refused_, outcome);
}

metrics::counts metrics::outcomes() const {
  std::lock_guard lk(mu_);
  return outcomes_;
}

metrics::counts metrics::refused() const {
  std::lock_guard lk(mu_);
  return refused_;
}

void metrics::commit(std::size_t records, std::chrono::microseconds commit) {
  batch_sizes_.observe(records);
  commit_latency_.observe(commit);
}

void metrics::delivery(const std::string& handler, std::string_view result, std::chrono::microseconds elapsed) {
  std::lock_guard lk(mu_);
  ++deliveries_[{handler, std::string(result)}];
  delivery_latency_[handler].observe(elapsed);
}

void metrics::rate_wait(const std::string& handler) {
  std::lock_guard lk(mu_);
  ++rate_waits_[handler];
}

void metrics::handler_state(const std::string& handler, bool paused, bool by_hand) {
  std::lock_guard lk(mu_);
  auto& b = breakers_[handler];
  if (paused && !b.paused) ++b.pauses;
  b.paused = paused;
  b.by_hand = by_hand;
}

void metrics::set_alert_counts(std::function<alert_counts()> f) {
  std::lock_guard lk(mu_);
  alert_counts_ = std::move(f);
}

void metrics::outbox_look(const std::string& handler, std::size_t claimed, std::size_t taken_over) {
  std::lock_guard lk(mu_);
  auto& l = looks_[handler];
  ++l.looks;
  l.claimed += claimed;
  l.taken_over += taken_over;
}

void metrics::registrar(std::string_view state) {
  std::lock_guard lk(mu_);
  if (registrar_state_ == state) return;
  registrar_state_ = std::string(state);
  registrar_changed_us_ = now_us();
}

std::string metrics::render(const gauges& g) const {
  std::string out;
  out.reserve(8192);
  header(out, "pipehook_build_info", "gauge", "The running pipehook's version (value 1).");
  out += "pipehook_build_info{version=\"" PIPEHOOK_VERSION "\"} 1\n";
  header(out, "pipehook_start_time_seconds", "gauge", "When this process started, seconds since the epoch.");
  out += "pipehook_start_time_seconds " + number(static_cast<double>(started_us_) / 1e6) + "\n";

  std::lock_guard lk(mu_);
  header(out, "pipehook_http_requests_total", "counter",
         "Requests on the webhook listener by route and status (status 0: the client went away before an answer).");
  for (const auto& [route, by_status] : requests_)
    for (const auto& [status, n] : by_status)
      out += "pipehook_http_requests_total{route=\"" + label(route) + "\",status=\"" + std::to_string(status) + "\"} " +
             std::to_string(n) + "\n";
  header(out, "pipehook_webhook_outcomes_total", "counter",
         "Webhook listener requests by outcome (stored, duplicate, quarantined, unauthorized, ...).");
  for (const auto& [outcome, n] : outcomes_)
    out += "pipehook_webhook_outcomes_total{outcome=\"" + label(outcome) + "\"} " + std::to_string(n) + "\n";
  const auto outcome = [&](const char* name) {
    auto it = outcomes_.find(name);
    return it == outcomes_.end() ? std::uint64_t{0} : it->second;
  };
  header(out, "pipehook_duplicates_total", "counter", "Deliveries of events already in the log (Pipedrive's retries).");
  out += "pipehook_duplicates_total " + std::to_string(outcome("duplicate")) + "\n";
  header(out, "pipehook_quarantined_total", "counter", "Bodies that were JSON but not a Pipedrive event.");
  out += "pipehook_quarantined_total " + std::to_string(outcome("quarantined")) + "\n";
  header(out, "pipehook_ingest_duration_seconds", "histogram",
         "Webhook requests from the first byte to the answer written (the commit included).");
  ingest_latency_.render(out, "pipehook_ingest_duration_seconds", "");
  header(out, "pipehook_commit_batch_records", "histogram", "Records per event-log transaction (group commit).");
  batch_sizes_.render(out, "pipehook_commit_batch_records");
  header(out, "pipehook_commit_duration_seconds", "histogram", "Time of each COMMIT (the fsync) of the event log.");
  commit_latency_.render(out, "pipehook_commit_duration_seconds", "");
  header(out, "pipehook_http_connections", "gauge",
         "Open connections to the webhook listener: busy with a request, or idle (waiting for one).");
  out += "pipehook_http_connections{state=\"busy\"} " + std::to_string(g.connections_busy) + "\n";
  out += "pipehook_http_connections{state=\"idle\"} " + std::to_string(g.connections_idle) + "\n";
  header(out, "pipehook_http_connections_closed_at_cap_total", "counter",
         "Idle connections the webhook listener closed at max_connections to admit a new one.");
  out += "pipehook_http_connections_closed_at_cap_total " + std::to_string(closed_at_cap_.load()) + "\n";
  header(out, "pipehook_event_log_wal_frames_total", "counter",
         "Pages the SQLite writer appended to its write-ahead log (each a page_size write, copied again by checkpoints).");
  out += "pipehook_event_log_wal_frames_total " + std::to_string(wal_frames_.load()) + "\n";
  header(out, "pipehook_retention_passes_total", "counter",
         "Retention passes this process finished (on PostgreSQL, only the replica holding the role runs them).");
  out += "pipehook_retention_passes_total " + std::to_string(retention_passes_.load()) + "\n";
  header(out, "pipehook_write_queue_depth", "gauge", "Records waiting for the event log's writer.");
  out += "pipehook_write_queue_depth " + std::to_string(g.queue_depth) + "\n";

  if (g.log_bytes >= 0) {
    header(out, "pipehook_event_log_bytes", "gauge", "The event log's data size (what store.retention.max_bytes counts).");
    out += "pipehook_event_log_bytes " + std::to_string(g.log_bytes) + "\n";
  }
  if (g.log_budget_bytes > 0) {
    header(out, "pipehook_event_log_budget_bytes", "gauge", "store.retention.max_bytes: retention keeps the log below this.");
    out += "pipehook_event_log_budget_bytes " + std::to_string(g.log_budget_bytes) + "\n";
  }
  header(out, "pipehook_handler_deliveries", "gauge", "Outbox rows per handler and state (pending, retrying, dead).");
  for (const auto& h : g.handlers) {
    const std::string name = label(h.name);
    out += "pipehook_handler_deliveries{handler=\"" + name + "\",state=\"pending\"} " + std::to_string(h.pending) + "\n";
    out += "pipehook_handler_deliveries{handler=\"" + name + "\",state=\"retrying\"} " + std::to_string(h.retrying) + "\n";
    out += "pipehook_handler_deliveries{handler=\"" + name + "\",state=\"dead\"} " + std::to_string(h.dead) + "\n";
  }
  header(out, "pipehook_handler_claims", "gauge",
         "Pending outbox rows each replica holds under a live lease, per handler (replicas on PostgreSQL).");
  for (const auto& h : g.handlers)
    for (const auto& [replica, n] : h.claims)
      out += "pipehook_handler_claims{handler=\"" + label(h.name) + "\",replica=\"" + label(replica) + "\"} " + std::to_string(n) + "\n";
  header(out, "pipehook_handler_rate_per_second", "gauge", "A handler's configured rate (handler.rate): deliveries started per second at most.");
  for (const auto& h : g.handlers)
    if (h.rate_per_s > 0) out += "pipehook_handler_rate_per_second{handler=\"" + label(h.name) + "\"} " + number(h.rate_per_s) + "\n";
  header(out, "pipehook_handler_rate_waits_total", "counter", "Times a handler's next delivery waited for a token of its rate.");
  for (const auto& [name, n] : rate_waits_) out += "pipehook_handler_rate_waits_total{handler=\"" + label(name) + "\"} " + std::to_string(n) + "\n";
  header(out, "pipehook_handler_paused", "gauge",
         "1 while a handler is paused (by=\"breaker\": by its circuit breaker, \"hand\": by handlers pause), else 0.");
  for (const auto& [name, b] : breakers_)
    out += "pipehook_handler_paused{handler=\"" + label(name) + "\",by=\"" + (b.by_hand ? "hand" : "breaker") + "\"} " +
           (b.paused ? "1" : "0") + "\n";
  header(out, "pipehook_handler_pauses_total", "counter", "Times a handler went from active to paused (breaker or by hand).");
  for (const auto& [name, b] : breakers_)
    out += "pipehook_handler_pauses_total{handler=\"" + label(name) + "\"} " + std::to_string(b.pauses) + "\n";
  if (alert_counts_) {
    const alert_counts a = alert_counts_();
    header(out, "pipehook_alerts_total", "counter", "Alert notices by result: sent (2xx), failed (gave up), dropped (max_per_hour, the stop).");
    out += "pipehook_alerts_total{result=\"sent\"} " + std::to_string(a.sent) + "\n";
    out += "pipehook_alerts_total{result=\"failed\"} " + std::to_string(a.failed) + "\n";
    out += "pipehook_alerts_total{result=\"dropped\"} " + std::to_string(a.dropped) + "\n";
  }
  header(out, "pipehook_handler_outbox_looks_total", "counter",
         "Looks of this replica at a handler's outbox rows (after its own commits, and on the jittered poll).");
  for (const auto& [name, l] : looks_) out += "pipehook_handler_outbox_looks_total{handler=\"" + label(name) + "\"} " + std::to_string(l.looks) + "\n";
  header(out, "pipehook_handler_claimed_total", "counter",
         "Rows this replica claimed from the outbox (besides those it stored and delivers from memory).");
  for (const auto& [name, l] : looks_) out += "pipehook_handler_claimed_total{handler=\"" + label(name) + "\"} " + std::to_string(l.claimed) + "\n";
  header(out, "pipehook_handler_taken_over_total", "counter",
         "Rows this replica claimed after another replica's claim on them expired (that replica died or stalled).");
  for (const auto& [name, l] : looks_)
    out += "pipehook_handler_taken_over_total{handler=\"" + label(name) + "\"} " + std::to_string(l.taken_over) + "\n";
  header(out, "pipehook_handler_attempts_total", "counter", "Delivery attempts per handler and result (done, retry, dead).");
  for (const auto& [key, n] : deliveries_)
    out += "pipehook_handler_attempts_total{handler=\"" + label(key.first) + "\",result=\"" + label(key.second) + "\"} " +
           std::to_string(n) + "\n";
  header(out, "pipehook_handler_delivery_duration_seconds", "histogram", "Time of each delivery attempt, per handler.");
  for (const auto& [name, h] : delivery_latency_) h.render(out, "pipehook_handler_delivery_duration_seconds", "handler=\"" + label(name) + "\"");

  header(out, "pipehook_registrar_state", "gauge",
         "The registrar's latest reconcile: 1 for the current state (disabled, starting, ok, retrying, failed; "
         "standby: another replica registers).");
  for (const char* s : {"disabled", "starting", "ok", "retrying", "failed", "standby"})
    out += std::string("pipehook_registrar_state{state=\"") + s + "\"} " + (registrar_state_ == s ? "1" : "0") + "\n";
  header(out, "pipehook_registrar_state_since_seconds", "gauge", "When the registrar's state last changed (epoch seconds).");
  out += "pipehook_registrar_state_since_seconds " + number(static_cast<double>(registrar_changed_us_) / 1e6) + "\n";
  return out;
}

}  // namespace pipehook
