#include "pipehook/event/diff.hpp"

#include <simdjson.h>

#include <algorithm>
#include <map>

namespace pipehook::event {
namespace {

namespace dom = simdjson::dom;

// The object at `key` of `root`, when it is one.
std::optional<dom::object> object_at(dom::element root, std::string_view key) {
  dom::object obj;
  if (root[key].get_object().get(obj) != simdjson::SUCCESS) return std::nullopt;
  return obj;
}

using fields = std::map<std::string, std::string, std::less<>>;  // name -> minified JSON

fields flatten(const std::optional<dom::object>& obj, std::string_view nested) {
  fields out;
  if (!obj) return out;
  for (auto [key, value] : *obj) {
    dom::object inner;
    if (!nested.empty() && key == nested && value.get_object().get(inner) == simdjson::SUCCESS) {
      for (auto [k, v] : inner) out.emplace(std::string(key) + "." + std::string(k), simdjson::minify(v));
      continue;
    }
    out.emplace(std::string(key), simdjson::minify(value));
  }
  return out;
}

std::optional<std::string> lookup(const fields& f, std::string_view name) {
  auto it = f.find(name);
  if (it == f.end()) return std::nullopt;
  return it->second;
}

}  // namespace

std::vector<field_change> diff_body(std::string_view body, int version) {
  std::vector<field_change> out;
  thread_local dom::parser parser;  // reused: the admin thread diffs many bodies
  dom::element root;
  if (parser.parse(body.data(), body.size()).get(root) != simdjson::SUCCESS) return out;
  // v2 nests custom fields one level down; v1 keeps them at the top (nothing to unnest).
  const std::string_view nested = version == 1 ? "" : "custom_fields";
  const auto after_obj = object_at(root, version == 1 ? "current" : "data");
  const auto before_obj = object_at(root, "previous");
  const fields after = flatten(after_obj, nested);
  const fields before = flatten(before_obj, nested);

  if (version != 1 && before_obj && after_obj) {
    // v2 change: `previous` names exactly the fields that changed.
    for (const auto& [name, old] : before) {
      auto now = lookup(after, name);
      if (!now && name.starts_with("custom_fields.")) now = "null";  // a custom field cleared: sent as absent
      out.push_back({name, old, now});
    }
    return out;
  }
  // v1 (whole objects on both sides), creates and deletes: every field whose value differs.
  for (const auto& [name, old] : before) {
    auto now = lookup(after, name);
    if (now && *now == old) continue;
    out.push_back({name, old, now});
  }
  for (const auto& [name, now] : after)
    if (!before.contains(name)) out.push_back({name, std::nullopt, now});
  std::sort(out.begin(), out.end(), [](const field_change& a, const field_change& b) { return a.field < b.field; });
  return out;
}

bool changes_match(std::string_view body, int version, std::string_view needle, const std::vector<std::string>& keys) {
  auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
  constexpr std::string_view custom = "custom_fields.";
  for (const auto& c : diff_body(body, version)) {
    auto it = std::search(c.field.begin(), c.field.end(), needle.begin(), needle.end(),
                          [&](char a, char b) { return lower(a) == lower(b); });
    if (it != c.field.end()) return true;
    std::string_view key = c.field;
    if (key.substr(0, custom.size()) == custom) key.remove_prefix(custom.size());
    if (std::find(keys.begin(), keys.end(), key) != keys.end()) return true;
  }
  return false;
}

}  // namespace pipehook::event
