#include "pipehook/store/reader.hpp"

#include "sqlite.hpp"


namespace pipehook::store {
namespace {

using detail::statement;

class sqlite_reader final : public reader {
 public:
  explicit sqlite_reader(detail::db_handle db) : db_(std::move(db)) {}

  outcome<std::vector<event::stored_event>> list(const event_filter& f, bool with_body) override {
    std::string sql = "SELECT " + detail::event_columns() + (with_body ? ", body" : "") + " FROM events WHERE 1";
    int n = 0;
    detail::append_filter(sql, f, n);
    sql += " ORDER BY id DESC LIMIT ?" + std::to_string(++n);

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

  outcome<std::int64_t> count_events() override { return count("SELECT count(*) FROM events"); }
  outcome<std::int64_t> count_quarantined() override { return count("SELECT count(*) FROM quarantine"); }

 private:
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
