#pragma once
// Pipedrive webhook payloads (v1 and v2) -> one normalized event. Bytes in, a result out; no I/O.

#include "pipehook/event/event.hpp"

#include <cstddef>
#include <optional>
#include <string>

namespace pipehook::pipedrive {

// Extra bytes the parser reads past the end of a body (simdjson's padding). A body whose
// capacity() leaves this much room is parsed in place; any other body is copied once.
inline constexpr std::size_t parse_padding = 64;

// How deep a payload may nest; deeper documents are refused as invalid (Pipedrive's are < 10).
inline constexpr int max_json_depth = 512;

enum class parse_status {
  event,         // a v1 or v2 Pipedrive event: `ev` is filled in
  not_an_event,  // valid JSON, but not a recognisable Pipedrive event: quarantine it (`reason` says why)
  invalid_json,  // not valid JSON (`reason` says what is wrong)
};

struct parse_result {
  parse_status status = parse_status::invalid_json;
  std::string reason;   // empty for events
  event::event ev;      // ev.body always holds the body; the other fields only for events
};

// Validates the whole body as JSON (RFC 8259, UTF-8) and, when it is a Pipedrive event, normalizes
// it. Uses one simdjson On-Demand parser per thread.
parse_result parse_webhook(std::string body, std::int64_t received_at_us);

// Just the validation parse_webhook starts with: nullopt when `body` is one valid JSON value
// (RFC 8259, UTF-8, at most max_json_depth deep), else what is wrong.
std::optional<std::string> json_error(std::string body);

}  // namespace pipehook::pipedrive
