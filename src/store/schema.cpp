// Schema and its versioned migrations, plus the SQLite helpers shared by writer and reader.
#include "sqlite.hpp"

#include <array>

namespace pipehook::store::detail {

outcome<statement> statement::prepare(sqlite3* db, std::string_view sql) {
  statement st;
  const int rc = sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT, &st.s_, nullptr);
  if (rc != SQLITE_OK) return sqlite_failure(db, rc, "prepare");
  return st;
}

void statement::bind_text_or_null(int i, std::string_view v) const {
  if (v.empty()) sqlite3_bind_null(s_, i);
  else bind_text(i, v);
}

void statement::bind_text(int i, std::string_view v) const {
  sqlite3_bind_text64(s_, i, v.data(), v.size(), SQLITE_STATIC, SQLITE_UTF8);
}

std::string statement::column_text(int i) const {
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s_, i));
  return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(s_, i))) : std::string();
}

failure sqlite_failure(sqlite3* db, int rc, std::string_view what) {
  errc code = errc::store_io;
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED: code = errc::store_busy; break;
    case SQLITE_FULL: code = errc::store_full; break;
    default: break;
  }
  std::string msg(what);
  msg += ": ";
  msg += db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  return make_failure(code, std::move(msg));
}

outcome<db_handle> open_connection(const std::string& path, int flags, std::int64_t busy_timeout_ms) {
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &raw, flags | SQLITE_OPEN_NOMUTEX, nullptr);
  db_handle db(raw);
  if (rc != SQLITE_OK) return sqlite_failure(raw, rc, "open " + path);
  sqlite3_extended_result_codes(db.db, 1);
  sqlite3_busy_timeout(db.db, static_cast<int>(busy_timeout_ms));
  return db;
}

outcome<void> exec(sqlite3* db, std::string_view sql) {
  const std::string text(sql);
  const int rc = sqlite3_exec(db, text.c_str(), nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return sqlite_failure(db, rc, text.substr(0, 40));
  return {};
}

namespace {

// Migration N takes the database from user_version N-1 to N. Append, never edit.
constexpr std::array<std::string_view, schema_version> migrations = {
    R"sql(
CREATE TABLE events (
  id               INTEGER PRIMARY KEY,
  event_key        TEXT    NOT NULL UNIQUE,
  version          INTEGER NOT NULL,
  entity           TEXT    NOT NULL,
  action           TEXT    NOT NULL,
  source_action    TEXT    NOT NULL,
  entity_id        TEXT,
  company_id       TEXT,
  user_id          TEXT,
  webhook_id       TEXT,
  event_id         TEXT,
  correlation_id   TEXT,
  change_source    TEXT,
  type             TEXT,
  host             TEXT,
  merged_to_id     TEXT,
  merged_from_id   TEXT,
  occurred_at      INTEGER NOT NULL,   -- microseconds since the epoch, UTC
  received_at      INTEGER NOT NULL,
  attempt          INTEGER NOT NULL,
  is_bulk          INTEGER NOT NULL,
  deliveries       INTEGER NOT NULL DEFAULT 1,
  last_attempt     INTEGER NOT NULL,
  last_received_at INTEGER NOT NULL,
  body             TEXT    NOT NULL    -- the payload exactly as received
);
CREATE INDEX events_entity_idx   ON events(entity, entity_id, id);
CREATE INDEX events_action_idx   ON events(action, id);
CREATE INDEX events_company_idx  ON events(company_id, id);
CREATE INDEX events_occurred_idx ON events(occurred_at);
CREATE INDEX events_received_idx ON events(received_at);

CREATE TABLE quarantine (
  id           INTEGER PRIMARY KEY,
  received_at  INTEGER NOT NULL,
  reason       TEXT    NOT NULL,
  content_type TEXT,
  remote       TEXT,
  body         TEXT    NOT NULL
);
CREATE INDEX quarantine_received_idx ON quarantine(received_at);

CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;
)sql",
};

}  // namespace

outcome<void> migrate(sqlite3* db) {
  auto version_stmt = statement::prepare(db, "PRAGMA user_version");
  if (!version_stmt) return version_stmt.error();
  if (version_stmt->step() != SQLITE_ROW) return sqlite_failure(db, sqlite3_errcode(db), "read schema version");
  const int current = static_cast<int>(version_stmt->column_int(0));
  version_stmt->reset();
  if (current > schema_version)
    return make_failure(errc::store_io, "the database schema version " + std::to_string(current) +
                                            " is newer than this pipehook supports (" + std::to_string(schema_version) +
                                            "): upgrade pipehook");
  for (int v = current; v < schema_version; ++v) {
    if (auto r = exec(db, "BEGIN IMMEDIATE"); !r) return r;
    auto r = exec(db, migrations[static_cast<std::size_t>(v)]);
    if (r) r = exec(db, "PRAGMA user_version = " + std::to_string(v + 1));
    if (r) r = exec(db, "COMMIT");
    if (!r) {
      (void)exec(db, "ROLLBACK");
      failure f = r.error();
      f.message = "schema migration to version " + std::to_string(v + 1) + " failed: " + f.message;
      return f;
    }
  }
  return {};
}

}  // namespace pipehook::store::detail
