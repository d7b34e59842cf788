#include "pipehook/store/reader.hpp"

#include "sqlite.hpp"


namespace pipehook::store {
namespace {

using detail::statement;

class sqlite_reader final : public reader {
 public:
  explicit sqlite_reader(detail::db_handle db) : db_(std::move(db)) {}

  outcome<std::vector<event::stored_event>> list(const event_filter& f, bool with_body) override {
    // With a time range the page's ids come from the occurred_at index alone (only ids are
    // sorted, no row is read for it) and then those rows are read; the other filters have
    // indexes in id order, and a plain scan in id order is fastest for them.
    const bool ranged = f.since_us || f.until_us;
    std::string sql = "SELECT " + detail::event_columns() + (with_body ? ", body" : "") + " FROM events WHERE ";
    sql += ranged ? "id IN (SELECT id FROM events WHERE 1" : "1";
    int n = 0;
    detail::append_filter(sql, f, n);
    const char* order = f.ascending ? " ORDER BY id ASC" : " ORDER BY id DESC";
    sql += order;
    sql += " LIMIT ?" + std::to_string(++n);
    if (ranged) {
      sql += ")";
      sql += order;
    }

    auto st = statement::prepare(db_.db, sql);
    if (!st) return st.error();
    int i = 0;
    detail::bind_filter(*st, f, i);
    st->bind_int(++i, f.limit);

    std::vector<event::stored_event> out;
    int rc;
    while ((rc = st->step()) == SQLITE_ROW) {
      out.push_back(detail::read_event(*st, 0));
      if (with_body) out.back().ev.body = st->column_text(24);
    }
    if (rc != SQLITE_DONE) return detail::sqlite_failure(db_.db, rc, "list events");
    return out;
  }

  outcome<event::stored_event> get(std::int64_t id) override {
    auto st = statement::prepare(db_.db, "SELECT " + detail::event_columns() + ", body FROM events WHERE id = ?1");
    if (!st) return st.error();
    st->bind_int(1, id);
    const int rc = st->step();
    if (rc == SQLITE_DONE) return make_failure(errc::not_found, "no event with id " + std::to_string(id));
    if (rc != SQLITE_ROW) return detail::sqlite_failure(db_.db, rc, "get event");
    event::stored_event se = detail::read_event(*st, 0);
    se.ev.body = st->column_text(24);
    return se;
  }

  outcome<store::event_stats> stats(std::int64_t since_us, std::int64_t until_us) override {
    store::event_stats out;
    auto by = statement::prepare(db_.db,
                                 "SELECT entity, action, count(*), sum(deliveries - 1) FROM events "
                                 "WHERE received_at >= ?1 AND received_at < ?2 GROUP BY entity, action ORDER BY entity, action");
    if (!by) return by.error();
    by->bind_int(1, since_us);
    by->bind_int(2, until_us);
    int rc;
    while ((rc = by->step()) == SQLITE_ROW) {
      count_row r{by->column_text(0), by->column_text(1), by->column_int(2), by->column_int(3)};
      out.events += r.events;
      out.duplicates += r.duplicates;
      out.by_entity_action.push_back(std::move(r));
    }
    if (rc != SQLITE_DONE) return detail::sqlite_failure(db_.db, rc, "stats");
    auto hours = statement::prepare(db_.db,
                                    "SELECT received_at / 3600000000 * 3600000000 AS h, count(*) FROM events "
                                    "WHERE received_at >= ?1 AND received_at < ?2 GROUP BY h ORDER BY h");
    if (!hours) return hours.error();
    hours->bind_int(1, since_us);
    hours->bind_int(2, until_us);
    while ((rc = hours->step()) == SQLITE_ROW) out.per_hour.emplace_back(hours->column_int(0), hours->column_int(1));
    if (rc != SQLITE_DONE) return detail::sqlite_failure(db_.db, rc, "stats per hour");
    auto q = count_between("SELECT count(*) FROM quarantine WHERE received_at >= ?1 AND received_at < ?2", since_us, until_us);
    if (!q) return q.error();
    out.quarantined = *q;
    return out;
  }

  outcome<std::vector<quarantine_row>> quarantine(std::optional<std::int64_t> before_id, int limit) override {
    auto st = statement::prepare(db_.db,
                                 "SELECT id, received_at, reason, content_type, remote FROM quarantine "
                                 "WHERE id < ?1 ORDER BY id DESC LIMIT ?2");
    if (!st) return st.error();
    st->bind_int(1, before_id.value_or(INT64_MAX));
    st->bind_int(2, limit);
    std::vector<quarantine_row> out;
    int rc;
    while ((rc = st->step()) == SQLITE_ROW) out.push_back(read_quarantine(*st));
    if (rc != SQLITE_DONE) return detail::sqlite_failure(db_.db, rc, "list quarantine");
    return out;
  }

  outcome<quarantine_row> quarantined(std::int64_t id) override {
    auto st = statement::prepare(db_.db, "SELECT id, received_at, reason, content_type, remote, body FROM quarantine WHERE id = ?1");
    if (!st) return st.error();
    st->bind_int(1, id);
    const int rc = st->step();
    if (rc == SQLITE_DONE) return make_failure(errc::not_found, "no quarantined body with id " + std::to_string(id));
    if (rc != SQLITE_ROW) return detail::sqlite_failure(db_.db, rc, "get quarantined");
    quarantine_row r = read_quarantine(*st);
    r.body = st->column_text(5);
    return r;
  }

  outcome<std::int64_t> count_purgeable(std::int64_t before_us) override {
    return count_between(detail::purgeable_sql, before_us, 0);
  }

  outcome<std::int64_t> used_bytes() override {
    return count("SELECT (page_count - freelist_count) * page_size FROM pragma_page_count(), pragma_freelist_count(), "
                 "pragma_page_size()");
  }

  outcome<std::int64_t> count_events() override { return count("SELECT count(*) FROM events"); }
  outcome<std::int64_t> count_quarantined() override { return count("SELECT count(*) FROM quarantine"); }

 private:
  static quarantine_row read_quarantine(const statement& st) {
    return {st.column_int(0), st.column_int(1), st.column_text(2), st.column_text(3), st.column_text(4), {}};
  }

  outcome<std::int64_t> count_between(std::string_view sql, std::int64_t a, std::int64_t b) {
    auto st = statement::prepare(db_.db, sql);
    if (!st) return st.error();
    st->bind_int(1, a);
    st->bind_int(2, b);
    const int rc = st->step();
    if (rc != SQLITE_ROW) return detail::sqlite_failure(db_.db, rc, "count");
    return st->column_int(0);
  }

  outcome<std::int64_t> count(std::string_view sql) {
    auto st = statement::prepare(db_.db, sql);
    if (!st) return st.error();
    const int rc = st->step();
    if (rc != SQLITE_ROW) return detail::sqlite_failure(db_.db, rc, "count");
    return st->column_int(0);
  }

  detail::db_handle db_;
};

}  // namespace

outcome<std::unique_ptr<reader>> reader::open(const std::string& path) {
  auto db = detail::open_existing(path, SQLITE_OPEN_READONLY, 1);
  if (!db) return db.error();
  return std::unique_ptr<reader>(new sqlite_reader(std::move(*db)));
}

}  // namespace pipehook::store
