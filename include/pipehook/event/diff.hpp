#pragma once
// Field-level changes of one Pipedrive event, from its original body:
//   v2: `previous` (only the fields that changed, with their old values) against `data`;
//   v1: `previous` against `current` (both whole objects): only the fields whose values differ.
// Custom fields are compared one by one: v2 nests them under `custom_fields` ("custom_fields.<key>"),
// v1 keeps them as top-level 40-hex keys. A create has no `previous` (every field is new); a delete
// has no `data`/`current` (every field is gone).

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pipehook::event {

struct field_change {
  std::string field;                 // "value", "custom_fields.3d0f..." (v2), "3d0f..." (v1)
  std::optional<std::string> before;  // minified JSON; nullopt: the field was not there
  std::optional<std::string> after;
};

// Changes in field-name order. An unparsable body or one without the objects gives no changes.
std::vector<field_change> diff_body(std::string_view body, int version);

// Whether any changed field's name contains `needle` (ASCII case-insensitive), or its key (a v2
// custom field's without "custom_fields.") is one of `keys` (fields whose names contain it): the `q` filter.
bool changes_match(std::string_view body, int version, std::string_view needle, const std::vector<std::string>& keys = {});

}  // namespace pipehook::event
