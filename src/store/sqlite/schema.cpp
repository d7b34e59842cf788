// Schema and its versioned migrations, plus the SQLite helpers shared by writer and reader.
#include "sqlite.hpp"

#include "pipehook/event/diff.hpp"
#include "../body.hpp"

#include <array>
#include <filesystem>
#include <iterator>

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

namespace {

// ph_changes_match(id, body, body_dict, version, needle, keys): the `q` filter, with the same diff
// as the timeline; `keys`: the comma-separated keys of fields whose names contain the needle. A
// body that cannot be unpacked fails the query with the error naming its event.
void changes_match_fn(sqlite3_context* ctx, int, sqlite3_value** argv) {
  const auto* needle = reinterpret_cast<const char*>(sqlite3_value_text(argv[4]));
  const auto* stored = static_cast<const char*>(sqlite3_value_blob(argv[1]));
  if (!stored || !needle) {
    sqlite3_result_int(ctx, 0);
    return;
  }
  std::optional<std::int64_t> dict;
  if (sqlite3_value_type(argv[2]) != SQLITE_NULL) dict = sqlite3_value_int64(argv[2]);
  auto body = unpack_body(std::string_view(stored, static_cast<std::size_t>(sqlite3_value_bytes(argv[1]))), dict,
                          sqlite3_value_int64(argv[0]));
  if (!body) {
    sqlite3_result_error(ctx, body.error().message.c_str(), -1);
    return;
  }
  std::vector<std::string> keys;
  if (const auto* k = reinterpret_cast<const char*>(sqlite3_value_text(argv[5])))
    for (std::string_view rest = k; !rest.empty();) {
      const auto comma = rest.find(',');
      if (comma != 0) keys.emplace_back(rest.substr(0, comma));
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
  sqlite3_result_int(ctx, event::changes_match(*body, sqlite3_value_int(argv[3]), needle, keys) ? 1 : 0);
}

void register_functions(sqlite3* db) {
  sqlite3_create_function_v2(db, "ph_changes_match", 6, SQLITE_UTF8 | SQLITE_DETERMINISTIC, nullptr, changes_match_fn,
                             nullptr, nullptr, nullptr);
}

}  // namespace

outcome<db_handle> open_connection(const std::string& path, int flags, std::int64_t busy_timeout_ms) {
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &raw, flags | SQLITE_OPEN_NOMUTEX, nullptr);
  db_handle db(raw);
  if (rc != SQLITE_OK) return sqlite_failure(raw, rc, "open " + path);
  sqlite3_extended_result_codes(db.db, 1);
  register_functions(db.db);
  sqlite3_busy_timeout(db.db, static_cast<int>(busy_timeout_ms));
  return db;
}

outcome<void> exec(sqlite3* db, std::string_view sql) {
  const std::string text(sql);
  const int rc = sqlite3_exec(db, text.c_str(), nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return sqlite_failure(db, rc, text.substr(0, 40));
  return {};
}

event::stored_event read_event(const statement& st, int f) { return read_event_columns(sqlite_row{st}, f); }

std::string sqlite_row::key(int i) const {
  const auto* p = static_cast<const char*>(sqlite3_column_blob(st.get(), i));
  const std::string_view v(p ? p : "", static_cast<std::size_t>(sqlite3_column_bytes(st.get(), i)));
  return key_text(v, sqlite3_column_type(st.get(), i) == SQLITE_BLOB);
}

void bind_key(const statement& st, int i, const std::string& key) {
  if (auto blob = key_blob(key)) sqlite3_bind_blob64(st.get(), i, blob->data(), blob->size(), SQLITE_TRANSIENT);
  else st.bind_text(i, key);
}

void bind_uuid_or_null(const statement& st, int i, const std::string& text) {
  if (auto blob = uuid_blob(text)) sqlite3_bind_blob64(st.get(), i, blob->data(), blob->size(), SQLITE_TRANSIENT);
  else st.bind_text_or_null(i, text);
}

std::string sqlite_row::uuid(int i) const {
  const auto* p = static_cast<const char*>(sqlite3_column_blob(st.get(), i));
  const std::string_view v(p ? p : "", static_cast<std::size_t>(sqlite3_column_bytes(st.get(), i)));
  return uuid_text(v, sqlite3_column_type(st.get(), i) == SQLITE_BLOB);
}

outcome<std::string> read_body(const statement& st, int first, std::int64_t event_id) {
  const auto* p = static_cast<const char*>(sqlite3_column_blob(st.get(), first));
  const std::string_view stored(p ? p : "", static_cast<std::size_t>(sqlite3_column_bytes(st.get(), first)));
  std::optional<std::int64_t> dict;
  if (sqlite3_column_type(st.get(), first + 1) != SQLITE_NULL) dict = st.column_int(first + 1);
  return unpack_body(stored, dict, event_id);
}

void append_filter(std::string& sql, const event_filter& f, int& n, std::string_view alias) {
  auto clause = [&](bool present, std::string_view column, std::string_view op) {
    if (!present) return;
    sql += " AND ";
    if (!alias.empty()) sql += std::string(alias) + ".";
    sql += column;
    sql += op;
    sql += "?" + std::to_string(++n);
  };
  clause(!f.entity.empty(), "entity", " = ");
  clause(!f.action.empty(), "action", " = ");
  clause(!f.entity_id.empty(), "entity_id", " = ");
  clause(!f.company_id.empty(), "company_id", " = ");
  clause(!f.user_id.empty(), "user_id", " = ");
  clause(!f.webhook_id.empty(), "webhook_id", " = ");
  clause(!f.change_source.empty(), "change_source", " = ");
  clause(f.since_us.has_value(), "occurred_at", " >= ");
  clause(f.until_us.has_value(), "occurred_at", " < ");
  clause(f.before_id.has_value(), "id", " < ");
  clause(f.after_id.has_value(), "id", " > ");
  if (!f.q.empty()) {
    const std::string a = alias.empty() ? "" : std::string(alias) + ".";
    sql += " AND ph_changes_match(" + a + "id, " + a + "body, " + a + "body_dict, " + a + "version, ?" + std::to_string(n + 1) + ", ?" + std::to_string(n + 2) + ")";
    n += 2;
  }
}

void bind_filter(const statement& st, const event_filter& f, int& i) {
  for (const std::string* s : {&f.entity, &f.action, &f.entity_id, &f.company_id, &f.user_id, &f.webhook_id, &f.change_source})
    if (!s->empty()) st.bind_text(++i, *s);
  for (const auto* t : {&f.since_us, &f.until_us, &f.before_id, &f.after_id})
    if (t->has_value()) st.bind_int(++i, **t);
  if (!f.q.empty()) {
    st.bind_text(++i, f.q);
    std::string keys;
    for (const auto& k : f.q_keys) keys += (keys.empty() ? "" : ",") + k;
    sqlite3_bind_text64(st.get(), ++i, keys.data(), keys.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
  }
}

outcome<event_filter> with_q_keys(sqlite3* db, const event_filter& f) {
  event_filter out = f;
  if (f.q.empty() || !f.q_keys.empty()) return out;
  auto st = statement::prepare(db, "SELECT DISTINCT key FROM fields WHERE instr(lower(name), lower(?1)) > 0");
  if (!st) return st.error();
  st->bind_text(1, f.q);
  int rc;
  while ((rc = st->step()) == SQLITE_ROW) out.q_keys.push_back(st->column_text(0));
  if (rc != SQLITE_DONE) return sqlite_failure(db, rc, "field names");
  return out;
}

outcome<db_handle> open_existing(const std::string& path, int flags, int min_version) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec))
    return make_failure(errc::not_found, "no event log at \"" + path + "\" (has `pipehook serve` run with this config?)");
  auto opened = open_connection(path, flags, 5000);
  if (!opened) return opened.error();
  db_handle db = std::move(*opened);
  auto st = statement::prepare(db.db, "PRAGMA user_version");
  if (!st) {
    failure f = st.error();
    f.message = path + ": " + f.message;
    return f;
  }
  const int step = st->step();
  const std::int64_t version = step == SQLITE_ROW ? st->column_int(0) : -1;
  st = {};
  if (step != SQLITE_ROW) return sqlite_failure(db.db, step, path);
  if (version == 0) return make_failure(errc::store_io, "\"" + path + "\" is not a pipehook event log");
  if (version > schema_version)
    return make_failure(errc::store_io, "\"" + path + "\" has schema version " + std::to_string(version) +
                                            ", newer than this pipehook reads (" + std::to_string(schema_version) + ")");
  if (version < min_version)
    return make_failure(errc::store_io, "\"" + path + "\" has schema version " + std::to_string(version) +
                                            ": run `pipehook serve` once with this version to upgrade it");
  // A log from before compression (a daemon of the previous version may still be writing it): its
  // rows are plain bodies, as body_dict NULL says. The view shadows the table on this connection only.
  if (version < 6)
    if (auto r = exec(db.db, "CREATE TEMP VIEW events AS SELECT *, NULL AS body_dict FROM main.events"); !r) return r.error();
  return db;
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
    // 2: the handlers' outbox.
    R"sql(
CREATE TABLE deliveries (
  id          INTEGER PRIMARY KEY,
  handler     TEXT    NOT NULL,
  event_id    INTEGER NOT NULL REFERENCES events(id),
  state       TEXT    NOT NULL,          -- pending, done, dead
  attempts    INTEGER NOT NULL DEFAULT 0,
  due_at      INTEGER NOT NULL,          -- microseconds since the epoch: the next attempt
  created_at  INTEGER NOT NULL,          -- queued at (max_age counts from here)
  updated_at  INTEGER NOT NULL,
  order_key   TEXT,                      -- entity/entity_id, for handlers that keep per-entity order
  last_error  TEXT,                      -- the latest failure (kept after a later success)
  last_error_at INTEGER,
  UNIQUE (handler, event_id)
);
-- Few indexes: each one costs the single writer on every event. Counts scan (a CLI query).
CREATE INDEX deliveries_due_idx   ON deliveries(handler, due_at) WHERE state = 'pending';
CREATE INDEX deliveries_order_idx ON deliveries(handler, order_key, id) WHERE state = 'pending' AND order_key IS NOT NULL;
CREATE INDEX deliveries_error_idx ON deliveries(handler, last_error_at) WHERE last_error_at IS NOT NULL;
)sql",
    // 3: retention deletes an event's deliveries with it (and skips events with pending ones);
    // the admin API's newest-first pages of one entity ((entity, entity_id, id) cannot serve
    // alone) and of a time range (per-hour id order: see reader::list).
    R"sql(
CREATE INDEX deliveries_event_idx ON deliveries(event_id);
CREATE INDEX events_entity_order_idx ON events(entity, id);
-- time ranges: each hour of occurred_at in id order (replaces the plain occurred_at index)
DROP INDEX IF EXISTS events_occurred_idx;
CREATE INDEX events_occurred_hour_idx ON events(occurred_at / 3600000000, id);
)sql",
    // 4: Pipedrive's field definitions (names of custom fields and options), per object.
    R"sql(
CREATE TABLE fields (
  object     TEXT    NOT NULL,
  key        TEXT    NOT NULL,
  name       TEXT    NOT NULL,
  field_type TEXT    NOT NULL,
  options    TEXT    NOT NULL,          -- JSON object: option id -> label
  fetched_at INTEGER NOT NULL,
  PRIMARY KEY (object, key)
) WITHOUT ROWID;
)sql",
    // 5: backfill runs (what was recovered through Pipedrive's API, and where a run stands).
    R"sql(
CREATE TABLE backfills (
  id            INTEGER PRIMARY KEY,
  reason        TEXT    NOT NULL,          -- downtime, webhook, manual
  detail        TEXT    NOT NULL,
  since_at      INTEGER NOT NULL,          -- the window, microseconds since the epoch
  until_at      INTEGER NOT NULL,
  objects       TEXT    NOT NULL,          -- comma-separated
  dry_run       INTEGER NOT NULL,
  state         TEXT    NOT NULL,          -- queued, running, interrupted, done, capped, failed
  object_index  INTEGER NOT NULL DEFAULT 0, -- where it stands: objects[object_index], from `next_start`
  next_start    INTEGER NOT NULL DEFAULT 0,
  records_read  INTEGER NOT NULL DEFAULT 0,
  events_stored INTEGER NOT NULL DEFAULT 0,
  already_known INTEGER NOT NULL DEFAULT 0,
  skipped       INTEGER NOT NULL DEFAULT 0,
  api_calls     INTEGER NOT NULL DEFAULT 0,
  token_cost    INTEGER NOT NULL DEFAULT 0,
  created_at    INTEGER NOT NULL,
  started_at    INTEGER,
  finished_at   INTEGER,
  updated_at    INTEGER NOT NULL,
  replica       TEXT,
  error         TEXT
);
CREATE INDEX backfills_state_idx ON backfills(state) WHERE state IN ('queued', 'running', 'interrupted');
)sql",
    // 6: compressed bodies. body_dict NULL: the body is the plain text (rows written before this
    // version, compressed in the background by store::compactor, newest first, through the
    // plain-body index, which stays empty after); else body is a zstd frame needing dictionary
    // body_dict (0: none). New rows' event keys are their 16 bytes (a BLOB; older rows' hex text is
    // converted with their bodies). The action index goes: an action filter reads newest first by
    // id (one of three actions), and every index costs each insert.
    R"sql(
ALTER TABLE events ADD COLUMN body_dict INTEGER;
CREATE INDEX events_plain_body_idx ON events(id) WHERE body_dict IS NULL;
DROP INDEX IF EXISTS events_action_idx;
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
  // Retention hands freed pages back to the file system (PRAGMA incremental_vacuum): possible only
  // when set before the first table; older databases are converted once by a VACUUM below.
  if (current == 0)
    if (auto r = exec(db, "PRAGMA auto_vacuum = INCREMENTAL"); !r) return r;
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
  auto mode = statement::prepare(db, "PRAGMA auto_vacuum");
  if (!mode) return mode.error();
  const bool incremental = mode->step() == SQLITE_ROW && mode->column_int(0) == 2;
  mode = {};
  if (!incremental) {
    if (auto r = exec(db, "PRAGMA auto_vacuum = INCREMENTAL"); !r) return r;
    if (auto r = exec(db, "VACUUM"); !r) {
      failure f = r.error();
      f.message = "converting the database to incremental vacuum (a one-time VACUUM) failed: " + f.message;
      return f;
    }
  }
  return {};
}

}  // namespace pipehook::store::detail
