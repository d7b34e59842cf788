#pragma once
// Strict JSON validation over a simdjson On-Demand document (internal to pipedrive/): On-Demand
// alone checks only what it visits, so the whole document is walked once — every key, string,
// literal and number (numbers by RFC 8259's grammar, so huge integers stay valid).

#include <simdjson.h>

#include <string>
#include <string_view>

namespace pipehook::pipedrive::detail {

namespace od = simdjson::ondemand;

// `s` without the JSON whitespace at its end (On-Demand's raw tokens keep it).
inline std::string_view rtrim(std::string_view s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\n' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// SUCCESS when `doc` (iterated over `body`) is one valid JSON value with only whitespace after it,
// at most max_json_depth deep; else the first error. Leaves the document to be rewound.
simdjson::error_code validate_json(od::document& doc, std::string_view body);

// The error in words, for a 400's detail ("the body is not valid UTF-8", ...).
std::string describe_json_error(simdjson::error_code e);

}  // namespace pipehook::pipedrive::detail
