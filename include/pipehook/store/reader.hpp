#pragma once
// Read-only access to the event log for operators (CLI now, admin API later). Opens its own
// read-only connection: safe while the daemon writes (WAL readers never block the writer).

#include "pipehook/core/error.hpp"
#include "pipehook/event/event.hpp"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace pipehook::store {

struct event_filter {
  std::string entity, action, entity_id, company_id;  // empty = any
  std::optional<std::int64_t> since_us, until_us;      // on occurred_at: since <= t < until
  std::optional<std::int64_t> before_id;               // paging: ids below this one
  int limit = 50;
};

class reader {
 public:
  // Opens `path` read-only. Errors name the path: missing file, not a pipehook database, newer schema.
  static outcome<std::unique_ptr<reader>> open(const std::string& path);
  virtual ~reader() = default;

  // Newest first. Bodies are left empty unless with_body.
  virtual outcome<std::vector<event::stored_event>> list(const event_filter& f, bool with_body) = 0;

  // One event with its body; errc::not_found when there is no such id.
  virtual outcome<event::stored_event> get(std::int64_t id) = 0;

  // Row counts, for check-config and status lines.
  virtual outcome<std::int64_t> count_events() = 0;
  virtual outcome<std::int64_t> count_quarantined() = 0;
};

}  // namespace pipehook::store
