#pragma once
// The events columns a stored_event is read from (the body not among them), the same for both
// backends, and reading them from a row of either (internal to the store module).

#include "pipehook/event/event.hpp"
#include "pipehook/store/outbox.hpp"

#include <cstdint>
#include <string>
#include <string_view>

namespace pipehook::store::detail {

inline constexpr int event_column_count = 24;

// "id, event_key, ..." (with "alias." before each when given).
std::string event_columns(std::string_view alias = {});
// The stored body and how to unpack it (body.hpp), after the event columns where a body is read.
inline constexpr std::string_view body_columns = "body, body_dict";

// Reads the columns starting at `f` from a row offering text(i), key(i), uuid(i) and integer(i).
template <class Row>
event::stored_event read_event_columns(const Row& row, int f) {
  event::stored_event se;
  event::event& e = se.ev;
  se.id = row.integer(f + 0);
  e.event_key = row.key(f + 1);
  e.version = static_cast<int>(row.integer(f + 2));
  e.entity = row.text(f + 3);
  e.action = row.text(f + 4);
  e.source_action = row.text(f + 5);
  if (e.source_action.empty()) e.source_action = e.action;  // SQLite stores '' when it is the action
  e.entity_id = row.text(f + 6);
  e.company_id = row.text(f + 7);
  e.user_id = row.text(f + 8);
  e.webhook_id = row.text(f + 9);
  e.event_id = row.uuid(f + 10);
  e.correlation_id = row.uuid(f + 11);
  e.change_source = row.text(f + 12);
  e.type = row.text(f + 13);
  e.host = row.text(f + 14);
  e.merged_to_id = row.text(f + 15);
  e.merged_from_id = row.text(f + 16);
  e.occurred_at_us = row.integer(f + 17);
  e.received_at_us = row.integer(f + 18);
  e.attempt = static_cast<int>(row.integer(f + 19));
  e.is_bulk = row.integer(f + 20) != 0;
  se.deliveries = static_cast<int>(row.integer(f + 21));
  se.last_attempt = static_cast<int>(row.integer(f + 22));
  se.last_received_at_us = row.integer(f + 23);
  if (se.last_received_at_us == 0) se.last_received_at_us = e.received_at_us;  // SQLite: 0 until a repeat
  return se;
}

// The delivery columns copied with a log, in this order (both backends' pending_rows).
inline constexpr std::string_view delivery_columns =
    "id, handler, event_id, attempts, due_at, created_at, updated_at, order_key, last_error, last_error_at";

template <class Row>
delivery_row read_delivery_row(const Row& row) {
  delivery_row d;
  d.id = row.integer(0);
  d.handler = row.text(1);
  d.event_id = row.integer(2);
  d.attempts = static_cast<int>(row.integer(3));
  d.due_at_us = row.integer(4);
  d.created_at_us = row.integer(5);
  d.updated_at_us = row.integer(6);
  d.order_key = row.text(7);
  d.last_error = row.text(8);
  d.last_error_at_us = row.integer(9);
  return d;
}

}  // namespace pipehook::store::detail
