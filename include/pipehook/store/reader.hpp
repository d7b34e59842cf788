#pragma once
// Read-only access to the event log for operators (CLI and admin API). Opens its own read-only
// connection: safe while the daemon writes (WAL readers never block the writer).

#include "pipehook/core/error.hpp"
#include "pipehook/event/event.hpp"
#include "pipehook/store/fields.hpp"
#include "pipehook/store/location.hpp"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace pipehook::store {

struct event_filter {
  std::string entity, action, entity_id, company_id, user_id, webhook_id, change_source;  // empty = any
  std::string q;                                       // a changed field's name contains this (case-insensitive)
  // Keys of the fields whose name in Pipedrive contains `q` (the readers fill it from the field cache).
  std::vector<std::string> q_keys;
  std::optional<std::int64_t> since_us, until_us;      // on occurred_at: since <= t < until
  std::optional<std::int64_t> before_id;               // paging (newest first): ids below this one
  std::optional<std::int64_t> after_id;                // paging (oldest first): ids above this one
  bool ascending = false;                              // order by id: oldest first
  int limit = 50;
};

struct quarantine_row {
  std::int64_t id = 0;
  std::int64_t received_at_us = 0;
  std::string reason, content_type, remote;
  std::string body;  // empty unless asked for
};

struct count_row {
  std::string entity, action;
  std::int64_t events = 0;
  std::int64_t duplicates = 0;  // deliveries beyond the first
};

struct event_stats {
  std::vector<count_row> by_entity_action;              // sorted by entity, action
  std::vector<std::pair<std::int64_t, std::int64_t>> per_hour;  // hour start (µs), events received
  std::int64_t events = 0, duplicates = 0, quarantined = 0;
};

// What the event log takes on disk, and how well its bodies compress.
struct storage_stats {
  std::int64_t events = 0;
  std::int64_t bytes_on_disk = 0;  // SQLite: the database file and its WAL; PostgreSQL: the database
  std::int64_t events_bytes = 0;   // PostgreSQL: the events table with its indexes and TOAST (SQLite: 0)
  std::int64_t plain_events = 0;   // rows stored before compression that the compactor has yet to compress
  // The newest `sampled` events' bodies: as received, and as stored.
  std::int64_t sampled = 0, sampled_raw_bytes = 0, sampled_stored_bytes = 0;

  // Bodies as stored / as received (sample); bytes on disk per event / the average body as
  // received. nullopt without events or a sample.
  std::optional<double> compression_ratio() const;
  std::optional<double> disk_per_raw_body() const;
};

// A row stored before compression (for store::compactor).
struct plain_body {
  std::int64_t id = 0;
  std::string event_key;
  std::string body;
};

class reader {
 public:
  // Opens the log read-only. Errors name where: missing file or database, not a pipehook event
  // log, newer schema.
  static outcome<std::unique_ptr<reader>> open(const location& where);
  virtual ~reader() = default;

  // Newest first (or oldest first with f.ascending). Bodies are left empty unless with_body.
  virtual outcome<std::vector<event::stored_event>> list(const event_filter& f, bool with_body) = 0;

  // One event with its body; errc::not_found when there is no such id.
  virtual outcome<event::stored_event> get(std::int64_t id) = 0;

  // Counts over received_at in [since, until): by entity and action, per hour, quarantined.
  virtual outcome<event_stats> stats(std::int64_t since_us, std::int64_t until_us) = 0;

  // Quarantined bodies, newest first, ids below before_id when given.
  virtual outcome<std::vector<quarantine_row>> quarantine(std::optional<std::int64_t> before_id, int limit) = 0;
  virtual outcome<quarantine_row> quarantined(std::int64_t id) = 0;

  // Events received before `before_us` that a purge would delete (deliveries still pending keep theirs).
  virtual outcome<std::int64_t> count_purgeable(std::int64_t before_us) = 0;

  // Bytes the database's pages hold (free pages not counted): what store.retention.max_bytes bounds.
  virtual outcome<std::int64_t> used_bytes() = 0;

  // Bytes on disk, bytes per event, and the compression of the newest `sample` bodies.
  virtual outcome<storage_stats> storage(int sample = 1000) = 0;

  // Up to `limit` rows stored before compression, newest first.
  virtual outcome<std::vector<plain_body>> plain_bodies(int limit) = 0;

  // Row counts, for check-config and status lines.
  virtual outcome<std::int64_t> count_events() = 0;
  // The cached field definitions of an object (store/fields.hpp); empty when none were fetched.
  virtual outcome<field_map> fields(const std::string& object) = 0;
  // Every object's cached fields (the objects without any left out).
  outcome<field_maps> all_fields();
  virtual outcome<std::int64_t> count_quarantined() = 0;
};

}  // namespace pipehook::store
