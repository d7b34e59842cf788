#pragma once
// Deleting old rows from the event log outside the daemon (`pipehook events purge`). The daemon's
// own retention goes through its writer (event_log::purge); both use the same batch.

#include "pipehook/core/error.hpp"

#include <cstdint>
#include <string>

namespace pipehook::store {

// Deletes events received before `before_us` whose deliveries are all settled, their deliveries,
// and quarantined rows received before it, in transactions of at most `batch` rows each (a
// running daemon's writer waits at most one batch), then returns the freed pages to the file
// system. Returns the rows deleted.
outcome<std::int64_t> purge_before(const std::string& path, std::int64_t before_us, int batch = 500);

}  // namespace pipehook::store
