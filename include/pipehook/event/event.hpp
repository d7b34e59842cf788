#pragma once
// The normalized Pipedrive event: the same fields for webhooks v1 and v2 (DESIGN.md, "The event").
// Optional text fields are empty when the payload did not carry them.

#include <cstdint>
#include <string>

namespace pipehook::event {

struct event {
  int version = 2;                 // 1 or 2
  std::string event_key;           // stable across Pipedrive's retries of one event; unique per event
  std::string entity;              // "deal", "lead", "deal_product", ... (any name Pipedrive sends)
  std::string action;              // "create" | "change" | "delete"
  std::string source_action;       // as sent: v1 added/updated/merged/deleted, v2 create/change/delete
  std::string entity_id;           // ids arrive as strings or numbers; kept as text (leads are UUIDs)
  std::string company_id;
  std::string user_id;
  std::string webhook_id;
  std::string event_id;            // v2 meta.id
  std::string correlation_id;
  std::string change_source;       // "app" | "api" | ...
  std::string type;                // "general" | "application"
  std::string host;
  std::string merged_to_id;
  std::string merged_from_id;
  std::int64_t occurred_at_us = 0;  // when Pipedrive says it happened
  std::int64_t received_at_us = 0;  // when pipehook received it
  int attempt = 1;                  // delivery attempt, 1-based (v1: retry + 1)
  bool is_bulk = false;
  std::string body;                 // the payload exactly as received
};

// Recovered through Pipedrive's API by a backfill (not a webhook): source_action and
// change_source are both "backfill", the body is the record as the API returned it.
inline constexpr const char* backfill_source = "backfill";
inline bool recovered(const event& e) { return e.source_action == backfill_source; }

// An event as the log holds it: the row id and how many times it was delivered to us.
struct stored_event {
  std::int64_t id = 0;
  event ev;
  int deliveries = 1;              // 1 + the duplicates answered for it
  int last_attempt = 1;            // highest attempt number seen
  std::int64_t last_received_at_us = 0;
};

}  // namespace pipehook::event
