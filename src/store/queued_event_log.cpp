#include "queued_event_log.hpp"

#include <pthread.h>

namespace pipehook::store::detail {

queued_event_log::queued_event_log(const writer_options& o) : opts_(o) {}

void queued_event_log::start(const char* thread_name) {
  writer_ = std::thread([this, thread_name] {
    pthread_setname_np(pthread_self(), thread_name);  // visible in top -H, perf, gdb
    run();
  });
}

void queued_event_log::close() {
  {
    std::lock_guard lk(mu_);
    if (closing_) return;
    closing_ = true;
  }
  cv_.notify_all();
  if (writer_.joinable()) writer_.join();
  after_close();
}

std::size_t queued_event_log::queue_depth() const {
  std::lock_guard lk(mu_);
  return queue_.size();
}

void queued_event_log::enqueue(write_item it, bool bounded) {
  std::unique_lock lk(mu_);
  if (closing_) {
    lk.unlock();
    it.done(make_failure(errc::store_closed, "the event log is shutting down"));
    return;
  }
  if (bounded && queue_.size() >= opts_.queue_capacity) {
    lk.unlock();
    it.done(make_failure(errc::queue_full, "the event log's write queue is full (" + std::to_string(opts_.queue_capacity) + ")"));
    return;
  }
  queue_.push_back(std::move(it));
  lk.unlock();
  cv_.notify_one();
}

void queued_event_log::run() {
  std::vector<write_item> batch;
  batch.reserve(opts_.batch_max);
  for (;;) {
    {
      std::unique_lock lk(mu_);
      cv_.wait(lk, [this] { return !queue_.empty() || closing_; });
      if (queue_.empty()) return;  // closing, and everything queued has been written
      while (!queue_.empty() && batch.size() < opts_.batch_max) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    commit_batch(batch);
    batch.clear();
  }
}

}  // namespace pipehook::store::detail
