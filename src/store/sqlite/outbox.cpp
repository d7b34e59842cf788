#include "pipehook/store/outbox.hpp"

#include "pipehook/core/time.hpp"
#include "sqlite.hpp"


namespace pipehook::store {

namespace {

using detail::statement;

class sqlite_outbox final : public outbox {
 public:
  sqlite_outbox(detail::db_handle db, statement due, statement due_ordered, statement next_due)
      : db_(std::move(db)), due_(std::move(due)), due_ordered_(std::move(due_ordered)), next_due_(std::move(next_due)) {}

  outcome<std::vector<pending_delivery>> due(const std::string& handler, std::int64_t now_us, int limit, bool ordered,
                                             const std::vector<std::int64_t>&) override {
    const statement& st = ordered ? due_ordered_ : due_;
    st.bind_text(1, handler);
    st.bind_int(2, now_us);
    st.bind_int(3, limit);
    std::vector<pending_delivery> out;
    int rc;
    while ((rc = st.step()) == SQLITE_ROW) {
      pending_delivery d;
      d.id = st.column_int(0);
      d.attempts = static_cast<int>(st.column_int(1));
      d.created_at_us = st.column_int(2);
      d.order_key = st.column_text(3);
      auto se = std::make_shared<event::stored_event>(detail::read_event(st, 4));
      if (auto body = detail::read_body(st, 4 + detail::event_column_count, se->id)) se->ev.body = std::move(*body);
      else d.unreadable = body.error().message;
      d.ev = std::move(se);
      out.push_back(std::move(d));
    }
    st.reset();
    if (rc != SQLITE_DONE) return detail::sqlite_failure(db_.db, rc, "read due deliveries");
    return out;
  }

  outcome<std::optional<std::int64_t>> next_due(const std::string& handler, std::int64_t now_us) override {
    next_due_.bind_text(1, handler);
    next_due_.bind_int(2, now_us);
    const int rc = next_due_.step();
    std::optional<std::int64_t> out;
    if (rc == SQLITE_ROW && sqlite3_column_type(next_due_.get(), 0) != SQLITE_NULL) out = next_due_.column_int(0);
    next_due_.reset();
    if (rc != SQLITE_ROW) return detail::sqlite_failure(db_.db, rc, "read next due delivery");
    return out;
  }

  outcome<std::vector<handler_counts>> counts() override {
    auto st = statement::prepare(db_.db, R"sql(
SELECT handler,
       sum(state = 'pending' AND attempts = 0), sum(state = 'pending' AND attempts > 0),
       sum(state = 'dead'), sum(state = 'done'),
       min(CASE WHEN state = 'pending' THEN created_at END)
FROM deliveries GROUP BY handler ORDER BY handler)sql");
    if (!st) return st.error();
    auto last = statement::prepare(db_.db, R"sql(
SELECT last_error, last_error_at FROM deliveries
WHERE handler = ?1 AND last_error_at IS NOT NULL ORDER BY last_error_at DESC LIMIT 1)sql");
    if (!last) return last.error();
    std::vector<handler_counts> out;
    int rc;
    while ((rc = st->step()) == SQLITE_ROW) {
      handler_counts c;
      c.handler = st->column_text(0);
      c.pending = st->column_int(1);
      c.retrying = st->column_int(2);
      c.dead = st->column_int(3);
      c.done = st->column_int(4);
      if (sqlite3_column_type(st->get(), 5) != SQLITE_NULL) c.oldest_pending_us = st->column_int(5);
      last->bind_text(1, c.handler);
      if (last->step() == SQLITE_ROW) {
        c.last_error = last->column_text(0);
        c.last_error_at_us = last->column_int(1);
      }
      last->reset();
      out.push_back(std::move(c));
    }
    if (rc != SQLITE_DONE) return detail::sqlite_failure(db_.db, rc, "count deliveries");
    return out;
  }

  outcome<void> requeue(const std::string& handler, const std::vector<std::pair<std::int64_t, std::string>>& rows) override {
    auto up = statement::prepare(db_.db, R"sql(
INSERT INTO deliveries (handler, event_id, state, attempts, due_at, created_at, updated_at, order_key)
VALUES (?1, ?2, 'pending', 0, ?3, ?3, ?3, ?4)
ON CONFLICT (handler, event_id) DO UPDATE SET
  state = 'pending', attempts = 0, due_at = excluded.due_at, created_at = excluded.created_at,
  updated_at = excluded.updated_at, order_key = excluded.order_key)sql");
    if (!up) return up.error();
    for (std::size_t start = 0; start < rows.size(); start += replay_chunk) {
      if (auto b = detail::exec(db_.db, "BEGIN IMMEDIATE"); !b) return b.error();
      const std::int64_t now = now_us();
      for (std::size_t i = start; i < std::min(rows.size(), start + replay_chunk); ++i) {
        up->bind_text(1, handler);
        up->bind_int(2, rows[i].first);
        up->bind_int(3, now);
        if (!rows[i].second.empty()) up->bind_text(4, rows[i].second);
        else up->bind_null(4);
        const int rc = up->step();
        up->reset();
        if (rc != SQLITE_DONE) {
          failure f2 = detail::sqlite_failure(db_.db, rc, "queue replay");
          (void)detail::exec(db_.db, "ROLLBACK");
          return f2;
        }
      }
      if (auto c = detail::exec(db_.db, "COMMIT"); !c) {
        (void)detail::exec(db_.db, "ROLLBACK");
        return c.error();
      }
    }
    return {};
  }

  outcome<void> release(const std::vector<std::int64_t>&) override { return {}; }  // one process: no claims
  outcome<std::vector<replica_info>> replicas() override { return std::vector<replica_info>{}; }

  outcome<std::int64_t> retry_dead(const std::string& handler) override {
    auto st = statement::prepare(db_.db, R"sql(
UPDATE deliveries SET state = 'pending', attempts = 0, due_at = ?2, created_at = ?2, updated_at = ?2
WHERE handler = ?1 AND state = 'dead')sql");
    if (!st) return st.error();
    st->bind_text(1, handler);
    st->bind_int(2, now_us());
    const int rc = st->step();
    if (rc != SQLITE_DONE) return detail::sqlite_failure(db_.db, rc, "retry dead deliveries");
    return static_cast<std::int64_t>(sqlite3_changes(db_.db));
  }

  outcome<std::vector<delivery_row>> pending_rows(std::int64_t after_id, int limit) override {
    auto st = statement::prepare(db_.db, "SELECT " + std::string(detail::delivery_columns) +
                                             " FROM deliveries WHERE state = 'pending' AND id > ?1 ORDER BY id LIMIT ?2");
    if (!st) return st.error();
    st->bind_int(1, after_id);
    st->bind_int(2, limit);
    std::vector<delivery_row> out;
    int rc;
    while ((rc = st->step()) == SQLITE_ROW) out.push_back(detail::read_delivery_row(detail::sqlite_row{*st}));
    if (rc != SQLITE_DONE) return detail::sqlite_failure(db_.db, rc, "read pending deliveries");
    return out;
  }

 private:
  outcome<void> for_each_matching(const event_filter& given, const event_predicate& p, const each_event& each) override {
    auto resolved = detail::with_q_keys(db_.db, given);  // `q` also finds fields by their names in Pipedrive
    if (!resolved) return resolved.error();
    const event_filter& f = *resolved;
    // The predicate (a handler's match rules, when_changed among them) may look at the body.
    std::string sql = "SELECT " + detail::event_columns() + (p ? ", " + std::string(detail::body_columns) : "") + " FROM events WHERE 1";
    int n = 0;
    detail::append_filter(sql, f, n);
    sql += " ORDER BY id";
    auto st = statement::prepare(db_.db, sql);
    if (!st) return st.error();
    int i = 0;
    detail::bind_filter(*st, f, i);
    int rc;
    while ((rc = st->step()) == SQLITE_ROW) {
      event::stored_event se = detail::read_event(*st, 0);
      if (p) {
        auto body = detail::read_body(*st, detail::event_column_count, se.id);
        if (!body) return body.error();
        se.ev.body = std::move(*body);
      }
      if (!p || p(se.ev)) each(se.ev, se.id);
    }
    if (rc != SQLITE_DONE) return detail::sqlite_failure(db_.db, rc, "select events");
    return {};
  }

  detail::db_handle db_;
  statement due_, due_ordered_, next_due_;
};

std::string due_sql(bool ordered) {
  std::string sql = "SELECT d.id, d.attempts, d.created_at, d.order_key, " + detail::event_columns("e") +
                    ", e.body, e.body_dict FROM deliveries d JOIN events e ON e.id = d.event_id "
                    "WHERE d.handler = ?1 AND d.state = 'pending' AND d.due_at <= ?2";
  // Ordered: a row waits while an earlier row of its entity is pending (in flight or retrying).
  if (ordered)
    sql += " AND NOT EXISTS (SELECT 1 FROM deliveries p WHERE p.handler = d.handler AND p.state = 'pending' "
           "AND p.order_key IS NOT NULL AND p.order_key = d.order_key AND p.id < d.id)";
  sql += " ORDER BY d.id LIMIT ?3";
  return sql;
}

}  // namespace

outcome<std::unique_ptr<outbox>> open_sqlite_outbox(const std::string& path) {
  auto opened = detail::open_existing(path, SQLITE_OPEN_READWRITE, 2);  // 2: the outbox
  if (!opened) return opened.error();
  detail::db_handle db = std::move(*opened);
  auto due = statement::prepare(db.db, due_sql(false));
  auto due_ordered = statement::prepare(db.db, due_sql(true));
  auto next_due =
      statement::prepare(db.db, "SELECT min(due_at) FROM deliveries WHERE handler = ?1 AND state = 'pending' AND due_at > ?2");
  for (auto* st : {&due, &due_ordered, &next_due})
    if (!*st) return st->error();
  return std::unique_ptr<outbox>(
      new sqlite_outbox(std::move(db), std::move(*due), std::move(*due_ordered), std::move(*next_due)));
}

}  // namespace pipehook::store
