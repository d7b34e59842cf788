// Backfill bookkeeping on both backends: one column list, each backend's statements.
#include "pipehook/store/backfills.hpp"

#include "pipehook/core/time.hpp"
#include "postgres/pg.hpp"
#include "sqlite/sqlite.hpp"

#include <algorithm>
#include <charconv>

namespace pipehook::store {

std::string join_objects(const std::vector<std::string>& objects) {
  std::string out;
  for (const auto& o : objects) out += (out.empty() ? "" : ",") + o;
  return out;
}

std::vector<std::string> split_objects(const std::string& text) {
  std::vector<std::string> out;
  std::size_t at = 0;
  while (at <= text.size()) {
    const auto comma = std::min(text.find(',', at), text.size());
    std::string part = text.substr(at, comma - at);
    part.erase(0, part.find_first_not_of(" \t"));
    part.erase(part.find_last_not_of(" \t") + 1);
    if (!part.empty()) out.push_back(std::move(part));
    at = comma + 1;
  }
  return out;
}

namespace {

constexpr std::string_view columns =
    "id, reason, detail, since_at, until_at, objects, dry_run, state, object_index, next_start, records_read, "
    "events_stored, already_known, skipped, api_calls, token_cost, created_at, coalesce(started_at, 0), "
    "coalesce(finished_at, 0), updated_at, coalesce(replica, ''), coalesce(error, '')";

// A row of `columns`, from either backend's accessor (text(i), integer(i)).
template <class Row>
backfill_run read_run(const Row& r) {
  backfill_run b;
  b.id = r.integer(0);
  b.reason = r.text(1);
  b.detail = r.text(2);
  b.since_us = r.integer(3);
  b.until_us = r.integer(4);
  b.objects = split_objects(r.text(5));
  const std::string dry = r.text(6);
  b.dry_run = dry == "1" || dry == "t" || dry == "true";
  b.state = r.text(7);
  b.object_index = static_cast<std::size_t>(std::max<std::int64_t>(0, r.integer(8)));
  b.next_start = r.integer(9);
  b.records_read = r.integer(10);
  b.events_stored = r.integer(11);
  b.already_known = r.integer(12);
  b.skipped = r.integer(13);
  b.api_calls = r.integer(14);
  b.token_cost = r.integer(15);
  b.created_at_us = r.integer(16);
  b.started_at_us = r.integer(17);
  b.finished_at_us = r.integer(18);
  b.updated_at_us = r.integer(19);
  b.replica = r.text(20);
  b.error = r.text(21);
  return b;
}

constexpr std::string_view heartbeat_key = "running_until";

// ------------------------------------------------------------------------------------------------
// SQLite

class sqlite_backfills final : public backfill_store {
 public:
  explicit sqlite_backfills(detail::db_handle db) : db_(std::move(db)) {}

  outcome<void> create(backfill_run& run) override {
    stamp(run);
    auto st = detail::statement::prepare(
        db_.db,
        "INSERT INTO backfills (reason, detail, since_at, until_at, objects, dry_run, state, object_index, next_start, "
        "records_read, events_stored, already_known, skipped, api_calls, token_cost, created_at, started_at, finished_at, "
        "updated_at, replica, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, "
        "nullif(?17, 0), nullif(?18, 0), ?19, ?20, ?21)");
    if (!st) return st.error();
    const std::string objects = join_objects(run.objects);
    bind_all(*st, run, objects);
    if (const int rc = st->step(); rc != SQLITE_DONE) return detail::sqlite_failure(db_.db, rc, "record a backfill run");
    run.id = sqlite3_last_insert_rowid(db_.db);
    return {};
  }

  outcome<void> save(const backfill_run& run) override {
    backfill_run r = run;
    r.updated_at_us = now_us();
    auto st = detail::statement::prepare(
        db_.db,
        "UPDATE backfills SET reason = ?1, detail = ?2, since_at = ?3, until_at = ?4, objects = ?5, dry_run = ?6, state = ?7, "
        "object_index = ?8, next_start = ?9, records_read = ?10, events_stored = ?11, already_known = ?12, skipped = ?13, "
        "api_calls = ?14, token_cost = ?15, created_at = ?16, started_at = nullif(?17, 0), finished_at = nullif(?18, 0), "
        "updated_at = ?19, replica = ?20, error = ?21 WHERE id = ?22");
    if (!st) return st.error();
    const std::string objects = join_objects(r.objects);
    bind_all(*st, r, objects);
    st->bind_int(22, r.id);
    if (const int rc = st->step(); rc != SQLITE_DONE) return detail::sqlite_failure(db_.db, rc, "save a backfill run");
    return {};
  }

  outcome<std::optional<backfill_run>> get(std::int64_t id) override {
    auto rows = select(" WHERE id = ?1", id);
    if (!rows) return rows.error();
    if (rows->empty()) return std::optional<backfill_run>{};
    return std::optional<backfill_run>{std::move(rows->front())};
  }

  outcome<std::vector<backfill_run>> list(int limit, std::int64_t before_id) override {
    return select(" WHERE (?1 = 0 OR id < ?1) ORDER BY id DESC LIMIT " + std::to_string(std::clamp(limit, 1, 1000)), before_id);
  }

  outcome<std::vector<backfill_run>> unfinished() override {
    return select(" WHERE state IN ('queued', 'running', 'interrupted') AND dry_run = 0 AND ?1 = 0 ORDER BY id", 0);
  }

  outcome<std::optional<std::int64_t>> latest_occurred(const std::string& entity, const std::string& entity_id) override {
    auto st = detail::statement::prepare(db_.db, "SELECT max(occurred_at) FROM events WHERE entity = ?1 AND entity_id = ?2");
    if (!st) return st.error();
    st->bind_text(1, entity);
    st->bind_text(2, entity_id);
    return optional_int(*st, "look up a record's latest event");
  }

  outcome<std::optional<std::int64_t>> last_received_from(const std::string& webhook_id) override {
    // Newest first along the received_at index: stops at the webhook's latest event.
    auto st = detail::statement::prepare(
        db_.db, "SELECT received_at FROM events INDEXED BY events_received_idx WHERE webhook_id = ?1 ORDER BY received_at DESC LIMIT 1");
    if (!st) return st.error();
    st->bind_text(1, webhook_id);
    return optional_int(*st, "look up a webhook's last delivery");
  }

  outcome<std::optional<std::int64_t>> heartbeat() override {
    auto st = detail::statement::prepare(db_.db, "SELECT CAST(value AS INTEGER) FROM meta WHERE key = ?1");
    if (!st) return st.error();
    st->bind_text(1, heartbeat_key);
    return optional_int(*st, "read the heartbeat");
  }

  outcome<void> beat(std::int64_t at_us) override {
    auto st = detail::statement::prepare(
        db_.db,
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = "
        "CAST(max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER)) AS TEXT)");
    if (!st) return st.error();
    const std::string at = std::to_string(at_us);  // bound without a copy: must outlive step()
    st->bind_text(1, heartbeat_key);
    st->bind_text(2, at);
    if (const int rc = st->step(); rc != SQLITE_DONE) return detail::sqlite_failure(db_.db, rc, "write the heartbeat");
    return {};
  }

 private:
  static void stamp(backfill_run& run) {
    const auto now = now_us();
    if (run.created_at_us == 0) run.created_at_us = now;
    run.updated_at_us = now;
  }

  // `objects` is r.objects joined: bound without a copy, it must outlive step().
  static void bind_all(const detail::statement& st, const backfill_run& r, const std::string& objects) {
    st.bind_text(1, r.reason);
    st.bind_text(2, r.detail);
    st.bind_int(3, r.since_us);
    st.bind_int(4, r.until_us);
    st.bind_text(5, objects);
    st.bind_int(6, r.dry_run ? 1 : 0);
    st.bind_text(7, r.state);
    st.bind_int(8, static_cast<std::int64_t>(r.object_index));
    st.bind_int(9, r.next_start);
    st.bind_int(10, r.records_read);
    st.bind_int(11, r.events_stored);
    st.bind_int(12, r.already_known);
    st.bind_int(13, r.skipped);
    st.bind_int(14, r.api_calls);
    st.bind_int(15, r.token_cost);
    st.bind_int(16, r.created_at_us);
    st.bind_int(17, r.started_at_us);
    st.bind_int(18, r.finished_at_us);
    st.bind_int(19, r.updated_at_us);
    st.bind_text_or_null(20, r.replica);
    st.bind_text_or_null(21, r.error);
  }

  outcome<std::vector<backfill_run>> select(const std::string& tail, std::int64_t arg) {
    auto st = detail::statement::prepare(db_.db, "SELECT " + std::string(columns) + " FROM backfills" + tail);
    if (!st) return st.error();
    st->bind_int(1, arg);
    std::vector<backfill_run> out;
    int rc;
    while ((rc = st->step()) == SQLITE_ROW) out.push_back(read_run(detail::sqlite_row{*st}));
    if (rc != SQLITE_DONE) return detail::sqlite_failure(db_.db, rc, "read the backfill runs");
    return out;
  }

  outcome<std::optional<std::int64_t>> optional_int(const detail::statement& st, std::string_view what) {
    const int rc = st.step();
    if (rc == SQLITE_DONE) return std::optional<std::int64_t>{};
    if (rc != SQLITE_ROW) return detail::sqlite_failure(db_.db, rc, what);
    if (sqlite3_column_type(st.get(), 0) == SQLITE_NULL) return std::optional<std::int64_t>{};
    return std::optional<std::int64_t>{st.column_int(0)};
  }

  detail::db_handle db_;
};

// ------------------------------------------------------------------------------------------------
// PostgreSQL

struct pg_row {
  const PGresult* r;
  int row;
  std::string text(int i) const { return pg::text(r, row, i); }
  std::int64_t integer(int i) const { return pg::integer(r, row, i); }
};

class postgres_backfills final : public backfill_store {
 public:
  explicit postgres_backfills(const location& where) : session_(pg::options_of(where)) {}
  outcome<void> open() { return session_.open(); }

  outcome<void> create(backfill_run& run) override {
    const auto now = now_us();
    if (run.created_at_us == 0) run.created_at_us = now;
    run.updated_at_us = now;
    auto r = exec(
                      "INSERT INTO backfills (reason, detail, since_at, until_at, objects, dry_run, state, object_index, next_start, "
                      "records_read, events_stored, already_known, skipped, api_calls, token_cost, created_at, started_at, "
                      "finished_at, updated_at, replica, error) VALUES ($1, $2, $3::bigint, $4::bigint, $5, $6::boolean, $7, "
                      "$8::integer, $9::bigint, $10::bigint, $11::bigint, $12::bigint, $13::bigint, $14::bigint, $15::bigint, "
                      "$16::bigint, nullif($17::bigint, 0), nullif($18::bigint, 0), $19::bigint, $20, $21) RETURNING id",
                      params_of(run));
    if (!r) return r.error();
    run.id = pg::integer(r->get(), 0, 0);
    return {};
  }

  outcome<void> save(const backfill_run& run) override {
    backfill_run b = run;
    b.updated_at_us = now_us();
    pg::params p = params_of(b);
    p.integer(b.id);
    auto r = exec(
                      "UPDATE backfills SET reason = $1, detail = $2, since_at = $3::bigint, until_at = $4::bigint, objects = $5, "
                      "dry_run = $6::boolean, state = $7, object_index = $8::integer, next_start = $9::bigint, "
                      "records_read = $10::bigint, events_stored = $11::bigint, already_known = $12::bigint, "
                      "skipped = $13::bigint, api_calls = $14::bigint, token_cost = $15::bigint, created_at = $16::bigint, "
                      "started_at = nullif($17::bigint, 0), finished_at = nullif($18::bigint, 0), updated_at = $19::bigint, "
                      "replica = $20, error = $21 WHERE id = $22::bigint",
                      p);
    if (!r) return r.error();
    return {};
  }

  outcome<std::optional<backfill_run>> get(std::int64_t id) override {
    auto rows = select(" WHERE id = $1::bigint", id);
    if (!rows) return rows.error();
    if (rows->empty()) return std::optional<backfill_run>{};
    return std::optional<backfill_run>{std::move(rows->front())};
  }

  outcome<std::vector<backfill_run>> list(int limit, std::int64_t before_id) override {
    return select(" WHERE ($1::bigint = 0 OR id < $1::bigint) ORDER BY id DESC LIMIT " + std::to_string(std::clamp(limit, 1, 1000)),
                  before_id);
  }

  outcome<std::vector<backfill_run>> unfinished() override {
    return select(" WHERE state IN ('queued', 'running', 'interrupted') AND NOT dry_run AND $1::bigint = 0 ORDER BY id", 0);
  }

  outcome<std::optional<std::int64_t>> latest_occurred(const std::string& entity, const std::string& entity_id) override {
    pg::params p;
    p.text(entity).text(entity_id);
    return optional_int(exec( "SELECT max(occurred_at) FROM events WHERE entity = $1 AND entity_id = $2", p));
  }

  outcome<std::optional<std::int64_t>> last_received_from(const std::string& webhook_id) override {
    pg::params p;
    p.text(webhook_id);
    return optional_int(
        exec( "SELECT received_at FROM events WHERE webhook_id = $1 ORDER BY received_at DESC LIMIT 1", p));
  }

  outcome<std::optional<std::int64_t>> heartbeat() override {
    pg::params p;
    p.text(heartbeat_key);
    return optional_int(exec( "SELECT value::bigint FROM meta WHERE key = $1", p));
  }

  outcome<void> beat(std::int64_t at_us) override {
    pg::params p;
    p.text(heartbeat_key).integer(at_us);
    auto r = exec(
                      "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = "
                      "greatest(meta.value::bigint, excluded.value::bigint)::text",
                      p);
    if (!r) return r.error();
    return {};
  }

 private:
  static pg::params params_of(const backfill_run& r) {
    pg::params p;
    p.text(r.reason).text(r.detail).integer(r.since_us).integer(r.until_us).text(join_objects(r.objects));
    p.text(r.dry_run ? "true" : "false").text(r.state).integer(static_cast<std::int64_t>(r.object_index)).integer(r.next_start);
    p.integer(r.records_read).integer(r.events_stored).integer(r.already_known).integer(r.skipped).integer(r.api_calls);
    p.integer(r.token_cost).integer(r.created_at_us).integer(r.started_at_us).integer(r.finished_at_us).integer(r.updated_at_us);
    p.text_or_null(r.replica).text_or_null(r.error);
    return p;
  }

  outcome<std::vector<backfill_run>> select(const std::string& tail, std::int64_t arg) {
    pg::params p;
    p.integer(arg);
    auto r = exec( "SELECT " + std::string(columns) + " FROM backfills" + tail, p);
    if (!r) return r.error();
    std::vector<backfill_run> out;
    for (int i = 0; i < PQntuples(r->get()); ++i) out.push_back(read_run(pg_row{r->get(), i}));
    return out;
  }

  static outcome<std::optional<std::int64_t>> optional_int(outcome<pg::result> r) {
    if (!r) return r.error();
    if (PQntuples(r->get()) == 0 || PQgetisnull(r->get(), 0, 0)) return std::optional<std::int64_t>{};
    return std::optional<std::int64_t>{pg::integer(r->get(), 0, 0)};
  }

  outcome<pg::result> exec(std::string_view sql, const pg::params& p = {}) { return session_.exec(sql, p); }

  pg::session session_;
};

}  // namespace

outcome<std::unique_ptr<backfill_store>> backfill_store::open(const location& where) {
  if (where.is_postgres()) {
    auto s = std::make_unique<postgres_backfills>(where);
    if (auto opened = s->open(); !opened) return opened.error();
    return std::unique_ptr<backfill_store>(std::move(s));
  }
  auto db = detail::open_existing(where.path, SQLITE_OPEN_READWRITE, 5);
  if (!db) return db.error();
  return std::unique_ptr<backfill_store>(new sqlite_backfills(std::move(*db)));
}

}  // namespace pipehook::store
