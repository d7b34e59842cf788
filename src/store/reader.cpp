#include "pipehook/store/reader.hpp"

#include "sqlite.hpp"

#include <filesystem>

namespace pipehook::store {
namespace {

using detail::statement;

constexpr std::string_view columns =
    "id, event_key, version, entity, action, source_action, entity_id, company_id, user_id, webhook_id, event_id, "
    "correlation_id, change_source, type, host, merged_to_id, merged_from_id, occurred_at, received_at, attempt, "
    "is_bulk, deliveries, last_attempt, last_received_at";

event::stored_event row(const statement& st) {
  event::stored_event se;
  event::event& e = se.ev;
  se.id = st.column_int(0);
  e.event_key = st.column_text(1);
  e.version = static_cast<int>(st.column_int(2));
  e.entity = st.column_text(3);
  e.action = st.column_text(4);
  e.source_action = st.column_text(5);
  e.entity_id = st.column_text(6);
  e.company_id = st.column_text(7);
  e.user_id = st.column_text(8);
  e.webhook_id = st.column_text(9);
  e.event_id = st.column_text(10);
  e.correlation_id = st.column_text(11);
  e.change_source = st.column_text(12);
  e.type = st.column_text(13);
  e.host = st.column_text(14);
  e.merged_to_id = st.column_text(15);
  e.merged_from_id = st.column_text(16);
  e.occurred_at_us = st.column_int(17);
  e.received_at_us = st.column_int(18);
  e.attempt = static_cast<int>(st.column_int(19));
  e.is_bulk = st.column_int(20) != 0;
  se.deliveries = static_cast<int>(st.column_int(21));
  se.last_attempt = static_cast<int>(st.column_int(22));
  se.last_received_at_us = st.column_int(23);
  return se;
}

class sqlite_reader final : public reader {
 public:
  explicit sqlite_reader(detail::db_handle db) : db_(std::move(db)) {}

  outcome<std::vector<event::stored_event>> list(const event_filter& f, bool with_body) override {
    std::string sql = "SELECT " + std::string(columns) + (with_body ? ", body" : "") + " FROM events WHERE 1";
    // Placeholders are numbered by what is present; values bound in the same order below.
    int n = 0;
    auto clause = [&](bool present, std::string_view column, std::string_view op) {
      if (!present) return;
      sql += " AND ";
      sql += column;
      sql += op;
      sql += "?" + std::to_string(++n);
    };
    clause(!f.entity.empty(), "entity", " = ");
    clause(!f.action.empty(), "action", " = ");
    clause(!f.entity_id.empty(), "entity_id", " = ");
    clause(!f.company_id.empty(), "company_id", " = ");
    clause(f.since_us.has_value(), "occurred_at", " >= ");
    clause(f.until_us.has_value(), "occurred_at", " < ");
    clause(f.before_id.has_value(), "id", " < ");
    sql += " ORDER BY id DESC LIMIT ?" + std::to_string(++n);

    auto st = statement::prepare(db_.db, sql);
    if (!st) return st.error();
    int i = 0;
    for (const std::string* s : {&f.entity, &f.action, &f.entity_id, &f.company_id})
      if (!s->empty()) st->bind_text(++i, *s);
    for (const auto* t : {&f.since_us, &f.until_us, &f.before_id})
      if (t->has_value()) st->bind_int(++i, **t);
    st->bind_int(++i, f.limit);

    std::vector<event::stored_event> out;
    int rc;
    while ((rc = st->step()) == SQLITE_ROW) {
      out.push_back(row(*st));
      if (with_body) out.back().ev.body = st->column_text(24);
    }
    if (rc != SQLITE_DONE) return detail::sqlite_failure(db_.db, rc, "list events");
    return out;
  }

  outcome<event::stored_event> get(std::int64_t id) override {
    auto st = statement::prepare(db_.db, "SELECT " + std::string(columns) + ", body FROM events WHERE id = ?1");
    if (!st) return st.error();
    st->bind_int(1, id);
    const int rc = st->step();
    if (rc == SQLITE_DONE) return make_failure(errc::not_found, "no event with id " + std::to_string(id));
    if (rc != SQLITE_ROW) return detail::sqlite_failure(db_.db, rc, "get event");
    event::stored_event se = row(*st);
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
  std::error_code ec;
  if (!std::filesystem::exists(path, ec))
    return make_failure(errc::not_found, "no event log at \"" + path + "\" (has `pipehook serve` run with this config?)");
  auto opened = detail::open_connection(path, SQLITE_OPEN_READONLY, 5000);
  if (!opened) return opened.error();
  detail::db_handle db = std::move(*opened);
  auto st = statement::prepare(db.db, "PRAGMA user_version");
  if (!st) {
    failure f = st.error();
    f.message = path + ": " + f.message;
    return f;
  }
  const int step = st->step();
  const std::int64_t version = step == SQLITE_ROW ? st->column_int(0) : -1;
  st = {};
  if (step != SQLITE_ROW) return detail::sqlite_failure(db.db, step, path);
  if (version == 0) return make_failure(errc::store_io, "\"" + path + "\" is not a pipehook event log");
  if (version > detail::schema_version)
    return make_failure(errc::store_io, "\"" + path + "\" has schema version " + std::to_string(version) +
                                            ", newer than this pipehook reads (" +
                                            std::to_string(detail::schema_version) + ")");
  return std::unique_ptr<reader>(new sqlite_reader(std::move(db)));
}

}  // namespace pipehook::store
