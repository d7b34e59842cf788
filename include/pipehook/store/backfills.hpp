#pragma once
// Backfill bookkeeping in the event log's database: the runs (each window, its objects, where it
// stands, what it read, stored and cost), the daemon's heartbeat (when it last was known to be
// receiving, for downtime gaps), and the two questions a backfill asks of the log: "does it
// already know this record's latest change?" and "when did this webhook last deliver?".
// One connection of its own per backfill_store; both backends.

#include "pipehook/core/error.hpp"
#include "pipehook/store/location.hpp"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace pipehook::store {

struct backfill_run {
  std::int64_t id = 0;
  std::string reason;  // "downtime", "webhook", "manual"
  std::string detail;  // for people: why this window
  std::int64_t since_us = 0;
  std::int64_t until_us = 0;
  std::vector<std::string> objects;  // recents item names: deal, person, ...
  bool dry_run = false;
  // queued -> running -> done | capped (backfill.max_calls reached) | failed; interrupted (a
  // stop in the middle) and running (a process that died) are resumed from their position.
  std::string state = "queued";
  std::size_t object_index = 0;  // the position: objects[object_index], from page offset next_start
  std::int64_t next_start = 0;
  std::int64_t records_read = 0;   // records the API listed inside the window
  std::int64_t events_stored = 0;  // new events (dry run: that would be stored)
  std::int64_t already_known = 0;  // the log already had that change (a webhook, or an earlier backfill)
  std::int64_t skipped = 0;        // listed but not usable (no update time, outside the window)
  std::int64_t api_calls = 0;
  std::int64_t token_cost = 0;     // Pipedrive's tokens (x-token-cost of each call)
  std::int64_t created_at_us = 0;
  std::int64_t started_at_us = 0;   // 0: not yet
  std::int64_t finished_at_us = 0;  // 0: not yet
  std::int64_t updated_at_us = 0;
  std::string replica;  // the process that runs (or ran) it
  std::string error;

  bool finished() const { return state == "done" || state == "capped" || state == "failed"; }
};

class backfill_store {
 public:
  static outcome<std::unique_ptr<backfill_store>> open(const location& where);
  virtual ~backfill_store() = default;

  // Inserts `run` (created_at/updated_at set when 0); sets run.id.
  virtual outcome<void> create(backfill_run& run) = 0;
  // Writes the run's state, position and counters.
  virtual outcome<void> save(const backfill_run& run) = 0;
  virtual outcome<std::optional<backfill_run>> get(std::int64_t id) = 0;
  // Newest first; before_id > 0 pages.
  virtual outcome<std::vector<backfill_run>> list(int limit, std::int64_t before_id = 0) = 0;
  // Runs to carry on with: queued, running (its process died) and interrupted, oldest first; dry
  // runs are never resumed.
  virtual outcome<std::vector<backfill_run>> unfinished() = 0;

  // The latest occurred_at of an event about entity/entity_id in the log; nullopt: none.
  virtual outcome<std::optional<std::int64_t>> latest_occurred(const std::string& entity, const std::string& entity_id) = 0;
  // When the log last received an event from webhook `webhook_id`; nullopt: never.
  virtual outcome<std::optional<std::int64_t>> last_received_from(const std::string& webhook_id) = 0;

  // The heartbeat: the latest time a pipehook serve was known to be running on this log (the
  // largest ever written; replicas share it). nullopt: never written (a new log).
  virtual outcome<std::optional<std::int64_t>> heartbeat() = 0;
  virtual outcome<void> beat(std::int64_t at_us) = 0;
};

// "deal,person" <-> {"deal", "person"}
std::string join_objects(const std::vector<std::string>& objects);
std::vector<std::string> split_objects(const std::string& text);

}  // namespace pipehook::store
