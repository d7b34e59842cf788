#include "pipehook/store/reader.hpp"

#include "sqlite.hpp"
#include "../body.hpp"

#include <filesystem>

#include <algorithm>
#include <tuple>


namespace pipehook::store {
namespace {

using detail::statement;

class sqlite_reader final : public reader {
 public:
  explicit sqlite_reader(detail::db_handle db) : db_(std::move(db)) {}

  outcome<std::vector<event::stored_event>> list(const event_filter& given, bool with_body) override {
    auto resolved = detail::with_q_keys(db_.db, given);  // `q` also finds fields by their names in Pipedrive
    if (!resolved) return resolved.error();
    const event_filter& f = *resolved;
    if (f.since_us || f.until_us) {
      auto ids = ids_by_hour(f);
      if (!ids) return ids.error();
      if (*ids) return rows_of(**ids, f.ascending, with_body);
    }
    std::string sql = "SELECT " + detail::event_columns() + (with_body ? ", " + std::string(detail::body_columns) : "") + " FROM events WHERE 1";
    int n = 0;
    detail::append_filter(sql, f, n);
    sql += f.ascending ? " ORDER BY id ASC" : " ORDER BY id DESC";
    sql += " LIMIT ?" + std::to_string(++n);
    auto st = statement::prepare(db_.db, sql);
    if (!st) return st.error();
    int i = 0;
    detail::bind_filter(*st, f, i);
    st->bind_int(++i, f.limit);
    return read_rows(*st, with_body, "list events");
  }

  outcome<event::stored_event> get(std::int64_t id) override {
    auto st = statement::prepare(db_.db, "SELECT " + detail::event_columns() + ", " + std::string(detail::body_columns) +
                                             " FROM events WHERE id = ?1");
    if (!st) return st.error();
    st->bind_int(1, id);
    const int rc = st->step();
    if (rc == SQLITE_DONE) return make_failure(errc::not_found, "no event with id " + std::to_string(id));
    if (rc != SQLITE_ROW) return detail::sqlite_failure(db_.db, rc, "get event");
    event::stored_event se = detail::read_event(*st, 0);
    auto body = detail::read_body(*st, detail::event_column_count, se.id);
    if (!body) return body.error();
    se.ev.body = std::move(*body);
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
    auto q = count("SELECT count(*) FROM quarantine WHERE received_at >= ?1 AND received_at < ?2", {since_us, until_us});
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

  outcome<std::int64_t> count_purgeable(std::int64_t before_us) override { return count(detail::purgeable_sql, {before_us}); }

  outcome<std::int64_t> used_bytes() override {
    return count("SELECT (page_count - freelist_count) * page_size FROM pragma_page_count(), pragma_freelist_count(), "
                 "pragma_page_size()");
  }

  outcome<storage_stats> storage(int sample) override {
    storage_stats out;
    auto n = count("SELECT count(*) FROM events");
    if (!n) return n.error();
    out.events = *n;
    auto plain = count("SELECT count(*) FROM events WHERE body_dict IS NULL");
    if (!plain) return plain.error();
    out.plain_events = *plain;
    std::error_code ec;
    const std::string file = sqlite3_db_filename(db_.db, "main");
    for (const std::string& f : {file, file + "-wal"}) {
      const auto size = std::filesystem::file_size(f, ec);
      if (!ec) out.bytes_on_disk += static_cast<std::int64_t>(size);
    }
    auto st = statement::prepare(db_.db, "SELECT body, body_dict FROM events ORDER BY id DESC LIMIT ?1");
    if (!st) return st.error();
    st->bind_int(1, sample);
    int rc;
    while ((rc = st->step()) == SQLITE_ROW) {
      const auto stored = static_cast<std::int64_t>(sqlite3_column_bytes(st->get(), 0));
      std::optional<std::int64_t> dict;
      if (sqlite3_column_type(st->get(), 1) != SQLITE_NULL) dict = st->column_int(1);
      const auto* p = static_cast<const char*>(sqlite3_column_blob(st->get(), 0));
      const std::int64_t raw = detail::unpacked_size(std::string_view(p ? p : "", static_cast<std::size_t>(stored)), dict);
      if (raw < 0) continue;
      ++out.sampled;
      out.sampled_raw_bytes += raw;
      out.sampled_stored_bytes += stored;
    }
    if (rc != SQLITE_DONE) return detail::sqlite_failure(db_.db, rc, "storage sample");
    return out;
  }

  outcome<std::vector<plain_body>> plain_bodies(int limit) override {
    auto st = statement::prepare(db_.db, "SELECT id, event_key, body FROM events WHERE body_dict IS NULL ORDER BY id DESC LIMIT ?1");
    if (!st) return st.error();
    st->bind_int(1, limit);
    std::vector<plain_body> out;
    int rc;
    while ((rc = st->step()) == SQLITE_ROW) out.push_back({st->column_int(0), st->column_text(1), st->column_text(2)});
    if (rc != SQLITE_DONE) return detail::sqlite_failure(db_.db, rc, "read plain bodies");
    return out;
  }

  outcome<std::int64_t> count_events() override { return count("SELECT count(*) FROM events"); }
  outcome<std::int64_t> count_quarantined() override { return count("SELECT count(*) FROM quarantine"); }

  outcome<field_map> fields(const std::string& object) override {
    auto st = statement::prepare(db_.db, "SELECT key, name, field_type, options FROM fields WHERE object = ?1");
    if (!st) return st.error();
    st->bind_text(1, object);
    field_map out;
    int rc;
    while ((rc = st->step()) == SQLITE_ROW) {
      field_definition f{st->column_text(0), st->column_text(1), st->column_text(2), detail::options_from_json(st->column_text(3))};
      out.emplace(f.key, std::move(f));
    }
    if (rc != SQLITE_DONE) return detail::sqlite_failure(db_.db, rc, "read field definitions");
    return out;
  }

 private:
  outcome<std::vector<event::stored_event>> read_rows(const statement& st, bool with_body, std::string_view what) {
    std::vector<event::stored_event> out;
    int rc;
    while ((rc = st.step()) == SQLITE_ROW) {
      out.push_back(detail::read_event(st, 0));
      if (!with_body) continue;
      auto body = detail::read_body(st, detail::event_column_count, out.back().id);
      if (!body) {
        st.reset();
        return body.error();
      }
      out.back().ev.body = std::move(*body);
    }
    if (rc != SQLITE_DONE) return detail::sqlite_failure(db_.db, rc, what);
    return out;
  }

  // The rows of `ids` (already in page order).
  outcome<std::vector<event::stored_event>> rows_of(const std::vector<std::int64_t>& ids, bool ascending, bool with_body) {
    if (ids.empty()) return std::vector<event::stored_event>{};
    std::string sql = "SELECT " + detail::event_columns() + (with_body ? ", " + std::string(detail::body_columns) : "") +
                      " FROM events WHERE id IN (";
    for (std::size_t k = 0; k < ids.size(); ++k) sql += (k ? "," : "") + std::to_string(ids[k]);
    sql += ascending ? ") ORDER BY id ASC" : ") ORDER BY id DESC";
    auto st = statement::prepare(db_.db, sql);
    if (!st) return st.error();
    return read_rows(*st, with_body, "list events");
  }

  // A page with a time range, from the (occurred hour, id) index: each hour of the range is an id
  // order of its own. The best id of every hour comes from one index seek; hours are then read in
  // the order of their best ids, each only for ids that can still make the page, until no hour
  // can. The cost follows the hours in the range and the page size, not the events in the range
  // (Pipedrive's late deliveries just make their hour one more to read). nullopt: a range of
  // more than a year, read the plain way.
  outcome<std::optional<std::vector<std::int64_t>>> ids_by_hour(const event_filter& f) {
    constexpr std::int64_t hour_us = 3'600'000'000;
    constexpr std::string_view hour_expr = "occurred_at / 3600000000";
    std::int64_t first = 0, last = 0;
    for (auto [bound, slot, agg] : {std::tuple{f.since_us, &first, "min"}, std::tuple{f.until_us, &last, "max"}}) {
      if (bound) {
        *slot = slot == &first ? *bound / hour_us : (*bound - 1) / hour_us;
        continue;
      }
      auto st = statement::prepare(db_.db, std::string("SELECT ") + agg + "(" + std::string(hour_expr) + ") FROM events");
      if (!st) return st.error();
      const int rc = st->step();
      if (rc != SQLITE_ROW) return detail::sqlite_failure(db_.db, rc, "hour bounds");
      if (sqlite3_column_type(st->get(), 0) == SQLITE_NULL) return std::optional<std::vector<std::int64_t>>(std::vector<std::int64_t>{});
      *slot = st->column_int(0);
    }
    if (last < first) return std::optional<std::vector<std::int64_t>>(std::vector<std::int64_t>{});
    if (last - first > 24 * 366) return std::optional<std::vector<std::int64_t>>();

    const bool asc = f.ascending;
    const char* order = asc ? " ORDER BY id ASC" : " ORDER BY id DESC";
    std::string where = std::string(" FROM events WHERE ") + std::string(hour_expr) + " = ?1";
    int n = 1;
    detail::append_filter(where, f, n);
    const int threshold_at = n + 1, limit_at = n + 2;
    auto probe = statement::prepare(db_.db, "SELECT id" + where + order + " LIMIT 1");
    auto take = statement::prepare(db_.db, "SELECT id" + where + (asc ? " AND id < ?" : " AND id > ?") +
                                               std::to_string(threshold_at) + order + " LIMIT ?" + std::to_string(limit_at));
    if (!probe) return probe.error();
    if (!take) return take.error();
    auto bind = [&](const statement& st, std::int64_t hour) {
      st.reset();
      st.bind_int(1, hour);
      int i = 1;
      detail::bind_filter(st, f, i);
    };
    const auto better = [asc](std::int64_t a, std::int64_t b) { return asc ? a < b : a > b; };

    std::vector<std::pair<std::int64_t, std::int64_t>> heads;  // best id, hour
    for (std::int64_t h = first; h <= last; ++h) {
      bind(*probe, h);
      const int rc = probe->step();
      if (rc == SQLITE_ROW) heads.emplace_back(probe->column_int(0), h);
      else if (rc != SQLITE_DONE) return detail::sqlite_failure(db_.db, rc, "list events by hour");
    }
    std::sort(heads.begin(), heads.end(), [&](const auto& a, const auto& b) { return better(a.first, b.first); });
    const auto limit = static_cast<std::size_t>(f.limit);
    std::vector<std::int64_t> page;
    for (const auto& [head, hour] : heads) {
      const bool full = page.size() >= limit;
      if (full && !better(head, page.back())) break;  // neither this hour nor any after it can make the page
      bind(*take, hour);
      // Once the page is full only ids better than its worst can enter it.
      take->bind_int(threshold_at, full ? page.back() : (asc ? INT64_MAX : INT64_MIN));
      take->bind_int(limit_at, static_cast<std::int64_t>(limit));
      int rc;
      while ((rc = take->step()) == SQLITE_ROW) page.push_back(take->column_int(0));
      if (rc != SQLITE_DONE) return detail::sqlite_failure(db_.db, rc, "list events by hour");
      std::sort(page.begin(), page.end(), better);
      page.erase(std::unique(page.begin(), page.end()), page.end());
      if (page.size() > limit) page.resize(limit);
    }
    return std::optional<std::vector<std::int64_t>>(std::move(page));
  }

  static quarantine_row read_quarantine(const statement& st) {
    return {st.column_int(0), st.column_int(1), st.column_text(2), st.column_text(3), st.column_text(4), {}};
  }

  // A single number from `sql`, its parameters bound in order.
  outcome<std::int64_t> count(std::string_view sql, std::initializer_list<std::int64_t> params = {}) {
    auto st = statement::prepare(db_.db, sql);
    if (!st) return st.error();
    int i = 0;
    for (const std::int64_t v : params) st->bind_int(++i, v);
    const int rc = st->step();
    if (rc != SQLITE_ROW) return detail::sqlite_failure(db_.db, rc, "count");
    return st->column_int(0);
  }

  detail::db_handle db_;
};

}  // namespace

outcome<std::unique_ptr<reader>> open_sqlite_reader(const std::string& path) {
  auto db = detail::open_existing(path, SQLITE_OPEN_READONLY, 1);
  if (!db) return db.error();
  return std::unique_ptr<reader>(new sqlite_reader(std::move(*db)));
}

}  // namespace pipehook::store
