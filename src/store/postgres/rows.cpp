#include "rows.hpp"

#include <iterator>

namespace pipehook::store::pg {

std::string event_columns(std::string_view alias) {
  static constexpr std::string_view names[] = {
      "id",           "event_key",  "version",      "entity",         "action",    "source_action",
      "entity_id",    "company_id", "user_id",      "webhook_id",     "event_id",  "correlation_id",
      "change_source", "type",      "host",         "merged_to_id",   "merged_from_id", "occurred_at",
      "received_at",  "attempt",    "is_bulk",      "deliveries",     "last_attempt", "last_received_at"};
  static_assert(std::size(names) == event_column_count);
  std::string out;
  for (auto n : names) {
    if (!out.empty()) out += ", ";
    if (!alias.empty()) out += std::string(alias) + ".";
    out += n;
  }
  return out;
}

event::stored_event read_event(const PGresult* r, int row, int f) {
  event::stored_event se;
  event::event& e = se.ev;
  se.id = integer(r, row, f + 0);
  e.event_key = text(r, row, f + 1);
  e.version = static_cast<int>(integer(r, row, f + 2));
  e.entity = text(r, row, f + 3);
  e.action = text(r, row, f + 4);
  e.source_action = text(r, row, f + 5);
  e.entity_id = text(r, row, f + 6);
  e.company_id = text(r, row, f + 7);
  e.user_id = text(r, row, f + 8);
  e.webhook_id = text(r, row, f + 9);
  e.event_id = text(r, row, f + 10);
  e.correlation_id = text(r, row, f + 11);
  e.change_source = text(r, row, f + 12);
  e.type = text(r, row, f + 13);
  e.host = text(r, row, f + 14);
  e.merged_to_id = text(r, row, f + 15);
  e.merged_from_id = text(r, row, f + 16);
  e.occurred_at_us = integer(r, row, f + 17);
  e.received_at_us = integer(r, row, f + 18);
  e.attempt = static_cast<int>(integer(r, row, f + 19));
  e.is_bulk = integer(r, row, f + 20) != 0;
  se.deliveries = static_cast<int>(integer(r, row, f + 21));
  se.last_attempt = static_cast<int>(integer(r, row, f + 22));
  se.last_received_at_us = integer(r, row, f + 23);
  return se;
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
