#pragma once
// Pipedrive's field definitions, cached in the event log's database: per object (deal, person,
// organization, product, activity, note), each field's key, name and type, and the options of enum
// and set fields, with when they were fetched. Names are added to what is shown (diffs); the stored
// bodies never change. A field deleted in Pipedrive keeps its last known name.

#include "pipehook/core/error.hpp"
#include "pipehook/store/location.hpp"

#include <cstdint>
#include <map>
#include <string_view>
#include <string>
#include <vector>

namespace pipehook::store {

struct field_definition {
  std::string key;   // "stage_id", or a custom field's 40-hex key
  std::string name;  // "Stage", "Region"
  std::string field_type;
  std::map<std::string, std::string> options;  // option id (as text) -> label: enum and set fields
};

// An object's fields by key.
using field_map = std::map<std::string, field_definition, std::less<>>;
// Every object's fields by object.
using field_maps = std::map<std::string, field_map, std::less<>>;

// The objects that have field definitions in Pipedrive's API (leads use the deal fields).
inline constexpr std::string_view field_objects[] = {"deal", "person", "organization", "product", "activity", "note"};

// Writes (inserts or replaces) `fields` of `object` in one transaction, on a connection of its own.
outcome<void> save_fields(const location& where, const std::string& object, const std::vector<field_definition>& fields,
                          std::int64_t fetched_at_us);

// The object whose fields describe an entity's events ("lead" -> "deal"); "" when none.
std::string fields_object_of(const std::string& entity);
// The object whose field definitions a webhook about fields changed: "dealField", "deal_field",
// "personFields", ... -> "deal", "person" (leads' -> "deal"); "" for any other entity.
std::string fields_object_of_definition(std::string_view entity);

namespace detail {
// The options column: a JSON object of id -> label, and back.
std::string options_json(const std::map<std::string, std::string>& options);
std::map<std::string, std::string> options_from_json(std::string_view text);
}  // namespace detail

}  // namespace pipehook::store
