#pragma once
// Reading events from PostgreSQL results, and the list filters as SQL ($N parameters), shared by
// the postgres reader and outbox. The `q` filter (a changed field's name) is not SQL: callers
// apply event::changes_match to the bodies they read.

#include "../columns.hpp"
#include "pg.hpp"
#include "pipehook/event/event.hpp"
#include "pipehook/store/reader.hpp"

#include <string>
#include <string_view>

namespace pipehook::store::pg {

// A result row as columns.hpp's readers want it.
struct pg_row {
  const PGresult* r;
  int row;
  std::string text(int i) const { return pg::text(r, row, i); }
  std::string key(int i) const { return pg::text(r, row, i); }
  std::string uuid(int i) const { return pg::text(r, row, i); }
  std::int64_t integer(int i) const { return pg::integer(r, row, i); }
};

// The stored body (plain text from before compression, or a zstd frame and its dictionary), after
// the event columns where a body is read, with "alias." before each when given.
std::string body_columns(std::string_view alias = {});
// The body as received from the body_columns at `first`; errors name the event.
outcome<std::string> read_body(const PGresult* r, int row, int first, std::int64_t event_id);

using detail::event_column_count;
using detail::event_columns;
// Reads the event columns (columns.hpp) of `row` starting at `first`.
event::stored_event read_event(const PGresult* r, int row, int first);

// Appends " AND <column> <op> $N" for each filter field present but `q`, adding its value to `p`.
void append_filter(std::string& sql, const event_filter& f, params& p, std::string_view alias = {});

// Retention, one small batch: the oldest events received before $1 whose deliveries are all
// settled, with those deliveries, and the oldest quarantined rows before it. Returns the rows deleted.
inline constexpr std::string_view purge_sql = R"sql(
WITH victims AS (
  SELECT e.id FROM events e
  WHERE e.received_at < $1
    AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND d.state = 'pending')
  ORDER BY e.received_at LIMIT $2),
gone_deliveries AS (DELETE FROM deliveries WHERE event_id IN (SELECT id FROM victims)),
gone_events AS (DELETE FROM events WHERE id IN (SELECT id FROM victims) RETURNING 1),
gone_quarantine AS (
  DELETE FROM quarantine WHERE id IN (SELECT id FROM quarantine WHERE received_at < $1 ORDER BY received_at LIMIT $2)
  RETURNING 1)
SELECT (SELECT count(*) FROM gone_events) + (SELECT count(*) FROM gone_quarantine))sql";

// `q` by name: the keys of the cached fields whose names contain $1 (case-insensitive).
inline constexpr std::string_view keys_named_sql = "SELECT DISTINCT key FROM fields WHERE strpos(lower(name), lower($1)) > 0";

}  // namespace pipehook::store::pg
