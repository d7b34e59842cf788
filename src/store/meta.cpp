// The meta table as a key-value store, on both backends.
#include "pipehook/store/meta.hpp"

#include "postgres/pg.hpp"
#include "sqlite/sqlite.hpp"

namespace pipehook::store {
namespace {

class sqlite_meta final : public meta_store {
 public:
  explicit sqlite_meta(detail::db_handle db) : db_(std::move(db)) {}

  outcome<std::map<std::string, std::string>> with_prefix(const std::string& prefix) override {
    auto st = detail::statement::prepare(db_.db, "SELECT key, coalesce(value, '') FROM meta WHERE substr(key, 1, length(?1)) = ?1");
    if (!st) return st.error();
    st->bind_text(1, prefix);
    std::map<std::string, std::string> out;
    int rc;
    while ((rc = st->step()) == SQLITE_ROW) out[st->column_text(0)] = st->column_text(1);
    if (rc != SQLITE_DONE) return detail::sqlite_failure(db_.db, rc, "read the meta table");
    return out;
  }

  outcome<void> put(const std::string& key, const std::string& value) override {
    auto st = detail::statement::prepare(
        db_.db, "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value");
    if (!st) return st.error();
    st->bind_text(1, key);
    st->bind_text(2, value);
    if (const int rc = st->step(); rc != SQLITE_DONE) return detail::sqlite_failure(db_.db, rc, "write the meta table");
    return {};
  }

 private:
  detail::db_handle db_;
};

class postgres_meta final : public meta_store {
 public:
  explicit postgres_meta(const location& where) : session_(pg::options_of(where)) {}
  outcome<void> open() { return session_.open(); }

  outcome<std::map<std::string, std::string>> with_prefix(const std::string& prefix) override {
    pg::params p;
    p.text(prefix);
    auto r = exec("SELECT key, coalesce(value, '') FROM meta WHERE left(key, length($1)) = $1", p);
    if (!r) return r.error();
    std::map<std::string, std::string> out;
    for (int i = 0; i < PQntuples(r->get()); ++i) out[pg::text(r->get(), i, 0)] = pg::text(r->get(), i, 1);
    return out;
  }

  outcome<void> put(const std::string& key, const std::string& value) override {
    pg::params p;
    p.text(key).text(value);
    auto r = exec("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value", p);
    if (!r) return r.error();
    return {};
  }

 private:
  outcome<pg::result> exec(std::string_view sql, const pg::params& p) { return session_.exec(sql, p); }

  pg::session session_;
};

}  // namespace

outcome<std::unique_ptr<meta_store>> meta_store::open(const location& where) {
  if (where.is_postgres()) {
    auto s = std::make_unique<postgres_meta>(where);
    if (auto opened = s->open(); !opened) return opened.error();
    return std::unique_ptr<meta_store>(std::move(s));
  }
  auto db = detail::open_existing(where.path, SQLITE_OPEN_READWRITE, 1);
  if (!db) return db.error();
  return std::unique_ptr<meta_store>(new sqlite_meta(std::move(*db)));
}

}  // namespace pipehook::store
