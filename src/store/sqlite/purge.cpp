// Retention on SQLite: one small batch in the caller's transaction, and `events purge`.
#include "pipehook/store/retention.hpp"

#include "sqlite.hpp"

#include <vector>

namespace pipehook::store::detail {

outcome<std::int64_t> purge_batch(sqlite3* db, std::int64_t before_us, int limit) {
  // Oldest first by received_at (its index); an event with a pending delivery is kept until that
  // delivery is settled, so a handler never loses an event it has not had.
  auto pick = statement::prepare(db,
                                 "SELECT id FROM events e WHERE e.received_at < ?1 AND NOT EXISTS "
                                 "(SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND d.state = 'pending') "
                                 "ORDER BY e.received_at LIMIT ?2");
  if (!pick) return pick.error();
  pick->bind_int(1, before_us);
  pick->bind_int(2, limit);
  std::vector<std::int64_t> ids;
  int rc;
  while ((rc = pick->step()) == SQLITE_ROW) ids.push_back(pick->column_int(0));
  if (rc != SQLITE_DONE) return sqlite_failure(db, rc, "retention: pick events");

  auto del_deliveries = statement::prepare(db, "DELETE FROM deliveries WHERE event_id = ?1");
  auto del_event = statement::prepare(db, "DELETE FROM events WHERE id = ?1");
  if (!del_deliveries) return del_deliveries.error();
  if (!del_event) return del_event.error();
  for (std::int64_t id : ids) {
    for (const statement* st : {&*del_deliveries, &*del_event}) {
      st->bind_int(1, id);
      rc = st->step();
      st->reset();
      if (rc != SQLITE_DONE) return sqlite_failure(db, rc, "retention: delete event");
    }
  }
  auto del_quarantine = statement::prepare(
      db, "DELETE FROM quarantine WHERE id IN (SELECT id FROM quarantine WHERE received_at < ?1 ORDER BY received_at LIMIT ?2)");
  if (!del_quarantine) return del_quarantine.error();
  del_quarantine->bind_int(1, before_us);
  del_quarantine->bind_int(2, limit);
  if (rc = del_quarantine->step(); rc != SQLITE_DONE) return sqlite_failure(db, rc, "retention: delete quarantined");
  const std::int64_t deleted = static_cast<std::int64_t>(ids.size()) + sqlite3_changes64(db);
  // Freed pages go back to the file system (the file shrinks at the next checkpoint).
  if (deleted > 0)
    if (auto r = exec(db, "PRAGMA incremental_vacuum"); !r) return r.error();
  return deleted;
}

}  // namespace pipehook::store::detail

namespace pipehook::store {

outcome<std::int64_t> purge_before_sqlite(const std::string& path, std::int64_t before_us, int batch) {
  auto db = detail::open_existing(path, SQLITE_OPEN_READWRITE, detail::schema_version);
  if (!db) return db.error();
  std::int64_t total = 0;
  for (;;) {
    if (auto r = detail::exec(db->db, "BEGIN IMMEDIATE"); !r) return r.error();
    auto n = detail::purge_batch(db->db, before_us, batch);
    if (n) {
      if (auto r = detail::exec(db->db, "COMMIT"); !r) n = r.error();
    }
    if (!n) {
      (void)detail::exec(db->db, "ROLLBACK");
      return n.error();
    }
    total += *n;
    if (*n == 0) break;
  }
  return total;
}

}  // namespace pipehook::store
