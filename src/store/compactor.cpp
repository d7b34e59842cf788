#include "pipehook/store/compactor.hpp"

#include "body.hpp"
#include "pipehook/core/backoff.hpp"
#include "pipehook/store/leadership.hpp"
#include "pipehook/store/reader.hpp"

#include <spdlog/spdlog.h>

#include <future>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace pipehook::store {


outcome<std::unique_ptr<compactor>> compactor::start(event_log& log, const location& where, int batch) {
  auto rd = reader::open(where.for_purpose("compaction"));
  if (!rd) return rd.error();
  return std::unique_ptr<compactor>(new compactor(log, where, std::move(*rd), batch));
}

compactor::compactor(event_log& log, const location& where, std::unique_ptr<reader> rd, int batch)
    : log_(log), where_(where), batch_(batch), rd_(std::move(rd)) {
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "ph-compact");
    setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), 10);  // below ingest (Linux: per thread)
    run();
  });
}

compactor::~compactor() {
  stop();
  if (thread_.joinable()) thread_.join();
}

void compactor::stop() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
}

bool compactor::sleep(std::chrono::milliseconds d) {
  std::unique_lock lk(mu_);
  return !cv_.wait_for(lk, d, [this] { return stopping_; });
}

void compactor::run() {
  auto& rd = rd_;
  auto leader = leadership::open(where_, "compaction");
  std::int64_t raw_total = 0, stored_total = 0;
  unsigned failures = 0;
  auto last_report = std::chrono::steady_clock::now();
  bool announced = false;
  while (sleep(std::chrono::milliseconds(0))) {
    if (!leader->check()) {
      if (!sleep(std::chrono::seconds(5))) return;
      continue;
    }
    auto rows = rd->plain_bodies(batch_);
    if (!rows) {
      spdlog::warn("compaction: {}", rows.error().message);
      if (!sleep(backoff_delay(++failures, std::chrono::seconds(1), std::chrono::seconds(30)))) return;
      continue;
    }
    if (rows->empty()) break;
    if (!announced) {
      auto st = rd->storage(0);
      spdlog::info("compaction: compressing the bodies of {} event(s) stored before compression, newest first",
                   st ? std::to_string(st->plain_events) : "the");
      announced = true;
    }
    std::vector<compacted_body> out;
    out.reserve(rows->size());
    std::int64_t raw = 0, stored = 0;
    for (auto& r : *rows) {
      compacted_body c;
      c.id = r.id;
      if (auto blob = detail::key_blob(r.event_key)) {
        c.key = std::move(*blob);
        c.key_binary = true;
      } else {
        c.key = r.event_key;
      }
      detail::packed_body p = detail::pack_body(r.body);
      c.body = std::move(p.bytes);
      c.body_dict = p.dict;
      raw += static_cast<std::int64_t>(r.body.size());
      stored += static_cast<std::int64_t>(c.body.size());
      out.push_back(std::move(c));
    }
    std::promise<append_result> done;
    auto result = done.get_future();
    log_.compact(std::move(out), [&done](append_result r) { done.set_value(std::move(r)); });
    const append_result r = result.get();
    if (!r) {
      spdlog::warn("compaction: {}", r.error().message);
      if (r.error().code == make_error_code(errc::store_closed)) return;
      if (!sleep(backoff_delay(++failures, std::chrono::seconds(1), std::chrono::seconds(30)))) return;
      continue;
    }
    failures = 0;
    if (r->id == 0) {  // none rewritten: the writer defers compaction while its WAL is long (or they were purged)
      if (!sleep(std::chrono::milliseconds(200))) return;
      continue;
    }
    compacted_ += r->id;
    raw_total += raw;
    stored_total += stored;
    if (std::chrono::steady_clock::now() - last_report > std::chrono::seconds(10)) {
      last_report = std::chrono::steady_clock::now();
      spdlog::info("compaction: {} event(s) so far ({} -> {} bytes)", compacted_.load(), raw_total, stored_total);
    }
    // A short breath between batches: ingest's batches come first at the writer.
    if (!sleep(std::chrono::milliseconds(2))) return;
  }
  if (announced)
    spdlog::info("compaction: done: {} event(s) compressed, {} -> {} bytes of bodies ({:.2f}x)", compacted_.load(), raw_total,
                 stored_total, raw_total ? static_cast<double>(stored_total) / static_cast<double>(raw_total) : 0.0);
}

}  // namespace pipehook::store
