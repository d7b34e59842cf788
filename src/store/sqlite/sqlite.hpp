#pragma once
// Small RAII helpers over the SQLite C API, internal to the store module.

#include "pipehook/core/error.hpp"
#include "pipehook/event/event.hpp"
#include "pipehook/store/reader.hpp"
#include "../columns.hpp"

#include <sqlite3.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace pipehook::store::detail {

struct db_handle {
  sqlite3* db = nullptr;
  db_handle() = default;
  explicit db_handle(sqlite3* d) : db(d) {}
  db_handle(db_handle&& o) noexcept : db(o.db) { o.db = nullptr; }
  db_handle& operator=(db_handle&& o) noexcept {
    std::swap(db, o.db);
    return *this;
  }
  ~db_handle() { sqlite3_close_v2(db); }
};

class statement {
 public:
  statement() = default;
  statement(statement&& o) noexcept : s_(o.s_) { o.s_ = nullptr; }
  statement& operator=(statement&& o) noexcept {
    std::swap(s_, o.s_);
    return *this;
  }
  ~statement() { sqlite3_finalize(s_); }

  static outcome<statement> prepare(sqlite3* db, std::string_view sql);

  sqlite3_stmt* get() const { return s_; }
  // Binds text; an empty string binds NULL (absent optional fields).
  void bind_text_or_null(int i, std::string_view v) const;
  void bind_text(int i, std::string_view v) const;
  void bind_blob(int i, std::string_view v) const { sqlite3_bind_blob64(s_, i, v.data(), v.size(), SQLITE_STATIC); }
  void bind_int(int i, std::int64_t v) const { sqlite3_bind_int64(s_, i, v); }
  void bind_null(int i) const { sqlite3_bind_null(s_, i); }
  int step() const { return sqlite3_step(s_); }
  void reset() const {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  std::int64_t column_int(int i) const { return sqlite3_column_int64(s_, i); }
  std::string column_text(int i) const;

 private:
  sqlite3_stmt* s_ = nullptr;
};

// A statement's current row as columns.hpp's readers want it.
struct sqlite_row {
  const statement& st;
  std::string text(int i) const { return st.column_text(i); }
  std::string key(int i) const;   // event_key: 16 bytes (BLOB) as hex, or text as it is
  std::string uuid(int i) const;  // event_id, correlation_id: 16 bytes (BLOB) as a UUID, or text as it is
  std::int64_t integer(int i) const { return st.column_int(i); }
};

// Maps a SQLite result code to a project error: BUSY/LOCKED -> store_busy, FULL -> store_full.
failure sqlite_failure(sqlite3* db, int rc, std::string_view what);

// Opens a connection (flags as for sqlite3_open_v2, plus NOMUTEX: each connection is used by one
// thread at a time) with extended result codes and a busy timeout. Errors name the path.
outcome<db_handle> open_connection(const std::string& path, int flags, std::int64_t busy_timeout_ms);

// Opens an existing event log for the CLI and the dispatcher: errors name the path (missing, not
// a pipehook database, a schema newer than this build, or older than `min_version`).
outcome<db_handle> open_existing(const std::string& path, int flags, int min_version);
// `f` with q_keys filled: the keys of the cached fields whose names contain `q` (case-insensitive).
outcome<event_filter> with_q_keys(sqlite3* db, const event_filter& f);

// Runs SQL with no results (pragmas, DDL, BEGIN/COMMIT).
outcome<void> exec(sqlite3* db, std::string_view sql);

// Applies the schema migrations up to the current version (PRAGMA user_version).
outcome<void> migrate(sqlite3* db);

// The schema version this build writes and reads.
inline constexpr int schema_version = 6;

// Reads the event columns (columns.hpp) starting at `first` (the body is not among them).
event::stored_event read_event(const statement& st, int first);
// The body as received from the columns `body, body_dict` at `first` (body_columns); errors name the event.
outcome<std::string> read_body(const statement& st, int first, std::int64_t event_id);
// Binds an event key as events.event_key stores it (body.hpp: key_blob).
void bind_key(const statement& st, int i, const std::string& key);
// Binds a UUID as 16 bytes (body.hpp: uuid_blob), other text as it is, "" as NULL.
void bind_uuid_or_null(const statement& st, int i, const std::string& text);

// The list filters as SQL: appends " AND <column> <op> ?N" for each field present (N counting on
// from `n`), and binds the values in the same order (from `i`).
void append_filter(std::string& sql, const event_filter& f, int& n, std::string_view alias = {});
void bind_filter(const statement& st, const event_filter& f, int& i);

// Retention, one small batch in the caller's transaction: deletes up to `limit` of the oldest
// events received before `before_us` whose deliveries are all settled (done or dead), with those
// deliveries, and up to `limit` quarantined rows received before it. Returns the rows deleted.
outcome<std::int64_t> purge_batch(sqlite3* db, std::int64_t before_us, int limit);

// What purge_batch would take in all (its batches added up), for --dry-run.
inline constexpr std::string_view purgeable_sql =
    "SELECT (SELECT count(*) FROM events e WHERE e.received_at < ?1 AND NOT EXISTS "
    "(SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND d.state = 'pending')) + "
    "(SELECT count(*) FROM quarantine WHERE received_at < ?1)";

}  // namespace pipehook::store::detail
