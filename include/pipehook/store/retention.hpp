#pragma once
// Deleting old rows from the event log: outside the daemon (`pipehook events purge`), and the
// daemon's own retention through its writer (event_log::purge). Both use the same batch.

#include "pipehook/core/error.hpp"
#include "pipehook/store/event_log.hpp"
#include "pipehook/store/location.hpp"

#include <boost/asio/any_io_executor.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace pipehook::store {

// Deletes events received before `before_us` whose deliveries are all settled, their deliveries,
// and quarantined rows received before it, in transactions of at most `batch` rows each (a
// running daemon's writer waits at most one batch), then returns the freed pages to the file
// system. Returns the rows deleted.
outcome<std::int64_t> purge_before(const location& where, std::int64_t before_us, int batch = 500);

struct retention_policy {
  std::int64_t max_age_ms = 0;    // 0: no age limit
  std::uint64_t max_bytes = 0;    // 0: no size limit
  std::int64_t interval_ms = 60'000;
  std::function<void()> on_pass;  // after each pass this process ran (metrics)
};

// The daemon's retention: every interval, on one replica at a time (store::leadership), one pass of batches (at most 500 rows each, each its own
// short transaction in the writer's next group commit, ingest interleaved) until nothing older
// than max_age is left and the data fits max_bytes. Events with pending deliveries stay.
class retention_runner {
 public:
  // Opens its own read connection to the log (for the size measurements).
  static outcome<std::unique_ptr<retention_runner>> create(boost::asio::any_io_executor ex, event_log& log,
                                                           const location& where, retention_policy policy);
  ~retention_runner();
  void start();  // the first pass now, then every interval
  void stop();   // any thread: no further batch is started; the loop ends
  struct impl;

 private:
  explicit retention_runner(std::shared_ptr<impl> p);
  std::shared_ptr<impl> p_;
};

}  // namespace pipehook::store
