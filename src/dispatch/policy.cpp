#include "pipehook/dispatch/policy.hpp"

#include "pipehook/event/diff.hpp"

#include <algorithm>
#include <cctype>

namespace pipehook::dispatch {

bool glob_match(std::string_view p, std::string_view t) {
  // Iterative matching with backtracking to the last '*'.
  std::size_t pi = 0, ti = 0, star = std::string_view::npos, mark = 0;
  while (ti < t.size()) {
    if (pi < p.size() && p[pi] == '*') {
      star = pi++;
      mark = ti;
    } else if (pi < p.size() && p[pi] == t[ti]) {
      ++pi;
      ++ti;
    } else if (star != std::string_view::npos) {
      pi = star + 1;
      ti = ++mark;
    } else {
      return false;
    }
  }
  while (pi < p.size() && p[pi] == '*') ++pi;
  return pi == p.size();
}

bool matches(const config::match_config& m, const event::event& e, const field_definitions* defs) {
  auto any = [](const std::vector<std::string>& patterns, std::string_view value) {
    if (patterns.empty()) return true;
    return std::any_of(patterns.begin(), patterns.end(), [&](const std::string& p) { return glob_match(p, value); });
  };
  if (!m.backfill && event::recovered(e)) return false;
  return any(m.entity, e.entity) && any(m.action, e.action) && any(m.company_id, e.company_id) && changed_match(m.changed, e, defs);
}

bool changed_match(const std::vector<std::string>& fields, const event::event& e, const field_definitions* defs) {
  if (fields.empty()) return true;
  auto listed = [&](std::string_view f) { return std::find(fields.begin(), fields.end(), f) != fields.end(); };
  // A field's name in Pipedrive ("Region"), from the cached definitions of the event's object.
  const store::field_map* names = nullptr;
  if (defs)
    if (const auto it = defs->find(store::fields_object_of(e.entity)); it != defs->end()) names = &it->second;
  auto lower = [](std::string_view v) {
    std::string out(v);
    for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
  };
  auto listed_by_name = [&](std::string_view key) {
    if (!names) return false;
    const auto it = names->find(key);
    if (it == names->end() || it->second.name.empty()) return false;
    const std::string name = lower(it->second.name);
    return std::any_of(fields.begin(), fields.end(), [&](const std::string& f) { return lower(f) == name; });
  };
  if (e.action == "create") return listed("*created");
  if (e.action == "delete") return listed("*deleted");
  // A recovered change holds the record's state, not what changed: it may touch any field, and
  // is sent rather than lost (a handler that wants none says backfill = false).
  if (event::recovered(e)) return true;
  // A change (a merge is one too): the fields whose values it changed.
  constexpr std::string_view custom = "custom_fields.";
  for (const auto& c : event::diff_body(e.body, e.version)) {
    const std::string_view f = c.field;
    const std::string_view key = f.substr(0, custom.size()) == custom ? f.substr(custom.size()) : f;
    if (listed(f) || listed(key) || listed_by_name(key)) return true;  // v2 custom fields also by their bare key
  }
  return false;
}

std::chrono::milliseconds retry_delay(const config::retry_config& r, int failures, double u) {
  if (r.schedule_ms.empty()) return std::chrono::milliseconds(0);
  const std::size_t step = std::min<std::size_t>(static_cast<std::size_t>(std::max(failures, 1) - 1), r.schedule_ms.size() - 1);
  const double factor = 0.8 + 0.4 * std::clamp(u, 0.0, 0.999999);
  return std::chrono::milliseconds(static_cast<std::int64_t>(static_cast<double>(r.schedule_ms[step]) * factor));
}

after_failure decide_after_failure(const config::retry_config& r, int attempts, std::int64_t created_at_us,
                                   std::int64_t now_us, std::optional<std::chrono::milliseconds> retry_after, double u) {
  after_failure out;
  if (r.max_attempts != 0 && attempts >= static_cast<int>(r.max_attempts)) {
    out.dead = true;
    return out;
  }
  if (now_us - created_at_us >= r.max_age_ms * 1000) {
    out.dead = true;
    return out;
  }
  auto wait = retry_delay(r, attempts, u);
  if (retry_after) wait = std::max(wait, *retry_after);
  out.due_at_us = now_us + wait.count() * 1000;
  return out;
}

}  // namespace pipehook::dispatch
