// The field-definition cache: what both backends share, and each one's transaction.
#include "pipehook/store/fields.hpp"

#include "postgres/pg.hpp"
#include "sqlite/sqlite.hpp"

#include <boost/json/object.hpp>
#include <cctype>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

namespace pipehook::store {

namespace detail {

std::string options_json(const std::map<std::string, std::string>& options) {
  boost::json::object o;
  for (const auto& [id, label] : options) o[id] = label;
  return boost::json::serialize(o);
}

std::map<std::string, std::string> options_from_json(std::string_view text) {
  std::map<std::string, std::string> out;
  boost::system::error_code ec;
  const auto v = boost::json::parse(text, ec);
  if (ec || !v.is_object()) return out;
  for (const auto& [id, label] : v.as_object())
    if (label.is_string()) out.emplace(std::string(id), std::string(label.as_string()));
  return out;
}

}  // namespace detail

std::string fields_object_of(const std::string& entity) {
  if (entity == "lead") return "deal";  // leads use the deal fields
  for (std::string_view o : field_objects)
    if (entity == o) return entity;
  return {};
}

std::string fields_object_of_definition(std::string_view entity) {
  std::string e;
  for (char c : entity) e += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (!e.empty() && e.back() == 's') e.pop_back();
  constexpr std::string_view field = "field";
  if (e.size() <= field.size() || e.compare(e.size() - field.size(), field.size(), field) != 0) return {};
  e.resize(e.size() - field.size());
  if (!e.empty() && e.back() == '_') e.pop_back();
  return fields_object_of(e);
}

namespace {

constexpr std::string_view upsert_sqlite =
    "INSERT INTO fields (object, key, name, field_type, options, fetched_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6) "
    "ON CONFLICT (object, key) DO UPDATE SET name = excluded.name, field_type = excluded.field_type, "
    "options = excluded.options, fetched_at = excluded.fetched_at";

outcome<void> save_sqlite(const std::string& path, const std::string& object, const std::vector<field_definition>& fields,
                          std::int64_t fetched_at_us) {
  auto db = detail::open_existing(path, SQLITE_OPEN_READWRITE, detail::schema_version);
  if (!db) return db.error();
  if (auto r = detail::exec(db->db, "BEGIN IMMEDIATE"); !r) return r;
  auto st = detail::statement::prepare(db->db, upsert_sqlite);
  if (!st) {
    (void)detail::exec(db->db, "ROLLBACK");
    return st.error();
  }
  for (const auto& f : fields) {
    const std::string options = detail::options_json(f.options);  // bound without a copy: must outlive step()
    st->bind_text(1, object);
    st->bind_text(2, f.key);
    st->bind_text(3, f.name);
    st->bind_text(4, f.field_type);
    st->bind_text(5, options);
    st->bind_int(6, fetched_at_us);
    if (const int rc = st->step(); rc != SQLITE_DONE) {
      failure e = detail::sqlite_failure(db->db, rc, "save field definitions");
      (void)detail::exec(db->db, "ROLLBACK");
      return e;
    }
    st->reset();
  }
  return detail::exec(db->db, "COMMIT");
}

outcome<void> save_postgres(const location& where, const std::string& object, const std::vector<field_definition>& fields,
                            std::int64_t fetched_at_us) {
  auto c = pg::connect(pg::options_of(where));
  if (!c) return c.error();
  pg::pipeline pl(c->get());
  pl.send("BEGIN");
  for (const auto& f : fields) {
    pg::params p;
    p.text(object).text(f.key).text(f.name).text(f.field_type).text(detail::options_json(f.options)).integer(fetched_at_us);
    pl.send("INSERT INTO fields (object, key, name, field_type, options, fetched_at) VALUES ($1, $2, $3, $4, $5, $6::bigint) "
            "ON CONFLICT (object, key) DO UPDATE SET name = excluded.name, field_type = excluded.field_type, "
            "options = excluded.options, fetched_at = excluded.fetched_at",
            p);
  }
  pl.send("COMMIT");
  auto r = pl.run(std::chrono::seconds(60));
  if (!r) return r.error();  // the connection goes with it; nothing was committed
  return {};
}

}  // namespace

outcome<void> save_fields(const location& where, const std::string& object, const std::vector<field_definition>& fields,
                          std::int64_t fetched_at_us) {
  return where.is_postgres() ? save_postgres(where, object, fields, fetched_at_us)
                             : save_sqlite(where.path, object, fields, fetched_at_us);
}

}  // namespace pipehook::store
