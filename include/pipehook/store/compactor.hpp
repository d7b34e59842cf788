#pragma once
// Compressing the bodies of rows stored before compression (schema 6 on SQLite, 5 on
// PostgreSQL): in the background, newest first (so that Pipedrive's retries of recent events meet
// binary keys soon), in small batches through the writer (each one short transaction in its next
// group commit, ingest interleaved), until none is left. On PostgreSQL one replica at a time
// (store::leadership, role "compaction").

#include "pipehook/core/error.hpp"
#include "pipehook/store/event_log.hpp"
#include "pipehook/store/location.hpp"
#include "pipehook/store/reader.hpp"

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>

namespace pipehook::store {

class compactor {
 public:
  // Opens its own read connection; the thread starts at once and ends when nothing is left.
  static outcome<std::unique_ptr<compactor>> start(event_log& log, const location& where, int batch = 256);
  ~compactor();  // stop(), then joins
  void stop();   // any thread: no further batch is started
  std::int64_t rows_compacted() const { return compacted_.load(); }

 private:
  compactor(event_log& log, const location& where, std::unique_ptr<reader> rd, int batch);
  void run();
  bool sleep(std::chrono::milliseconds d);  // false once stopped

  event_log& log_;
  const location where_;
  const int batch_;
  std::unique_ptr<reader> rd_;  // the compactor thread's
  std::atomic<std::int64_t> compacted_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace pipehook::store
