#pragma once
// The event log: where every accepted webhook is committed before it is acknowledged.
// Writes go through one writer thread that commits queued records in batches (group commit).

#include "pipehook/core/error.hpp"
#include "pipehook/event/event.hpp"
#include "pipehook/store/outbox.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace pipehook::store {

// A body that passed auth and is valid JSON but is not a recognisable Pipedrive event.
struct quarantined {
  std::string reason;
  std::string content_type;
  std::string remote;  // the peer address, for forensics
  std::string body;
  std::int64_t received_at_us = 0;
};

enum class append_status { stored, duplicate, quarantined, probed, updated, purged, compacted };

// A body stored before compression, now compressed (store::compactor): replaces the row's plain
// text with `body` (a zstd frame needing dictionary `body_dict`), and its hex event_key with the
// key's 16 bytes when `key_binary`, unless the row was changed in between.
struct compacted_body {
  std::int64_t id = 0;
  std::string key;       // the key as stored: 16 bytes, or the text it already was
  bool key_binary = false;
  std::string body;
  std::int64_t body_dict = 0;
};

struct appended {
  append_status status = append_status::stored;
  std::int64_t id = 0;  // events.id (stored, duplicate), quarantine.id, or rows deleted (purged)
};

using append_result = outcome<appended>;
using append_callback = std::function<void(append_result)>;

class event_log {
 public:
  virtual ~event_log() = default;

  // Queues a record. `done` runs exactly once: on the writer thread after the transaction holding
  // the record committed or failed, or at once on the caller's thread with errc::queue_full /
  // errc::store_closed. Success means the record is durable (as durable as store.durability says).
  virtual void append(event::event ev, append_callback done) = 0;
  virtual void append(quarantined q, append_callback done) = 0;

  // A write through the same queue and transaction path: succeeds when the log is writable. With
  // `room` > 0 it also writes that many bytes (a row it keeps and replaces), so that it fails where
  // an event of that size failed for want of space.
  virtual void probe(std::size_t room, append_callback done) = 0;

  // Applies the dispatcher's verdicts on deliveries in the next commit batch (no fsync of their
  // own). Not bounded by the queue capacity: the dispatcher bounds them by its concurrency.
  virtual void update_deliveries(std::vector<delivery_update> updates, append_callback done) = 0;

  // Stores an event re-parsed from quarantined row `quarantine_id` and deletes that row, in one
  // transaction (an event already in the log counts as a duplicate; the row goes all the same).
  virtual void append_reparsed(std::int64_t quarantine_id, event::event ev, append_callback done) = 0;

  // Retention: one small batch (store::detail::purge_batch) in the next commit; `id` of the
  // result is the number of rows deleted. Not bounded by the queue capacity.
  virtual void purge(std::int64_t before_us, int limit, append_callback done) = 0;

  // Compaction: rewrites rows stored before compression (see compacted_body) in the next commit;
  // `id` of the result is the number of rows rewritten: 0 when the writer defers it (SQLite, while
  // its WAL is past sqlite_options::wal_limit_pages). Not bounded by the queue capacity.
  virtual void compact(std::vector<compacted_body> rows, append_callback done) = 0;

  // Stops taking records, commits everything already queued, and joins the writer. Idempotent.
  virtual void close() = 0;

  virtual std::size_t queue_depth() const = 0;
};

// What every backend's writer takes.
struct writer_options {
  std::uint32_t queue_capacity = 4096;
  std::uint32_t batch_max = 512;
  router route;                        // handlers' outbox rows for each new event (none when empty)
  // After a commit that queued or updated deliveries (writer thread): the new events' deliveries.
  std::function<void(std::vector<fresh_deliveries>&&)> on_deliveries;
  // After each commit (writer thread): the records in the transaction and how long COMMIT took.
  std::function<void(std::size_t records, std::chrono::microseconds commit)> on_commit;
  // After each commit (writer thread, SQLite): the pages it appended to the WAL (frames).
  std::function<void(std::uint64_t frames)> on_wal_frames;
};

struct sqlite_options : writer_options {
  std::string path;
  bool synchronous_full = true;        // PRAGMA synchronous=FULL (else NORMAL)
  std::int64_t busy_timeout_ms = 2000;
  std::int64_t max_page_count = 0;     // >0 caps the database size (tests use it to simulate a full disk)
  // The WAL's bound (16384 pages: 64 MB). Beyond it the checkpointer thread's passes run back to
  // back and the writer, between batches, copies what they leave, so that the next commit starts
  // the WAL over; and compaction waits.
  std::uint64_t wal_limit_pages = 16384;
};

struct postgres_options : writer_options {
  std::string url;       // a libpq connection URI
  std::string password;  // overrides the URI's when set
  std::int64_t connect_timeout_ms = 5'000;
  std::int64_t lock_timeout_ms = 2'000;  // store.busy_timeout: a lock held elsewhere fails the batch (store_busy)
  // The replica whose claims this writer's new delivery rows start as, and whose verdicts it
  // writes ("": this_replica().id); the lease those claims start with.
  std::string replica_id;
  std::int64_t lease_ms = 30'000;
};

// Connects, creates or upgrades the schema (refusing a newer one), then starts the writer. Later
// connection losses fail the batch in progress and reconnect with backoff.
outcome<std::unique_ptr<event_log>> open_postgres_event_log(const postgres_options& options);

// Opens (creating it and its directory if needed) and migrates the database, then starts the writer.
outcome<std::unique_ptr<event_log>> open_sqlite_event_log(const sqlite_options& options);

}  // namespace pipehook::store
