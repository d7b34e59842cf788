#pragma once
// Moving a log to PostgreSQL (`pipehook events copy`): events with their ids, duplicate counts and
// bodies, quarantined bodies, and deliveries still pending, in batches (one transaction each).
// Idempotent by event_key and resumable: a second run continues after what the first copied.

#include "pipehook/core/error.hpp"
#include "pipehook/store/location.hpp"

#include <cstdint>
#include <functional>

namespace pipehook::store {

struct copy_progress {
  std::int64_t total = 0;        // events in the source
  std::int64_t seen = 0;         // source events looked at (copied, or already there)
  std::int64_t copied = 0;       // events inserted by this run
  std::int64_t quarantined = 0;  // quarantined rows inserted by this run
  std::int64_t deliveries = 0;   // pending deliveries inserted by this run
};

// Copies `from` (SQLite or PostgreSQL) into the PostgreSQL log `to` (created or migrated as
// needed). An id in the target held by a different event is an error: copy into an empty log, or
// one an earlier copy of the same source began. `progress` is called after every batch.
outcome<copy_progress> copy_log(const location& from, const location& to, int batch,
                                const std::function<void(const copy_progress&)>& progress);

}  // namespace pipehook::store
