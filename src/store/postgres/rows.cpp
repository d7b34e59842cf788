#include "rows.hpp"

#include "../body.hpp"


namespace pipehook::store::pg {

event::stored_event read_event(const PGresult* r, int row, int f) { return detail::read_event_columns(pg_row{r, row}, f); }

std::string body_columns(std::string_view alias) {
  const std::string a = alias.empty() ? "" : std::string(alias) + ".";
  return a + "body, " + a + "body_z, " + a + "body_dict";
}

outcome<std::string> read_body(const PGresult* r, int row, int first, std::int64_t event_id) {
  if (PQgetisnull(r, row, first + 2)) return text(r, row, first);
  return detail::unpack_body(bytes(r, row, first + 1), integer(r, row, first + 2), event_id);
}

void append_filter(std::string& sql, const event_filter& f, params& p, std::string_view alias) {
  const std::string a = alias.empty() ? "" : std::string(alias) + ".";
  auto text_clause = [&](const std::string& v, std::string_view column) {
    if (v.empty()) return;
    p.text(v);
    sql += " AND " + a + std::string(column) + " = $" + std::to_string(p.size());
  };
  text_clause(f.entity, "entity");
  text_clause(f.action, "action");
  text_clause(f.entity_id, "entity_id");
  text_clause(f.company_id, "company_id");
  text_clause(f.user_id, "user_id");
  text_clause(f.webhook_id, "webhook_id");
  text_clause(f.change_source, "change_source");
  auto int_clause = [&](const std::optional<std::int64_t>& v, std::string_view column, std::string_view op) {
    if (!v) return;
    p.integer(*v);
    sql += " AND " + a + std::string(column) + std::string(op) + "$" + std::to_string(p.size()) + "::bigint";
  };
  int_clause(f.since_us, "occurred_at", " >= ");
  int_clause(f.until_us, "occurred_at", " < ");
  int_clause(f.before_id, "id", " < ");
  int_clause(f.after_id, "id", " > ");
}

}  // namespace pipehook::store::pg
