#include "pipehook/pipedrive/vocabulary.hpp"

#include <algorithm>
#include <array>

namespace pipehook::pipedrive {
namespace {

// Webhooks v1: shared/pipedrive/docs/guide-for-webhooks.md "Supported object types" and
// list-of-webhooks.md (activityType there, and in the OpenAPI spec's POST /webhooks examples,
// though not in that endpoint's enum).
constexpr std::array<std::string_view, 11> v1_objects = {"*",      "activity", "activityType", "deal",  "note", "organization",
                                                          "person", "pipeline", "product",      "stage", "user"};
// Webhooks v2: shared/pipedrive/docs/guide-for-webhooks-v2.md "Supported object types" (lead, no
// activityType; pipeline and stage are still listed there), plus the objects Pipedrive's changelog
// added for v2 in April and May 2026: deal_product (tests/data/samples/v2-create-deal_product.json
// is a real capture), deal_installment, project, task, board, phase.
constexpr std::array<std::string_view, 17> v2_objects = {
    "*",       "activity", "deal",    "lead",  "note",         "organization",     "person", "pipeline", "product",
    "stage",   "user",     "deal_product", "deal_installment", "project", "task",  "board",  "phase"};

// GET /recents `items` (openapi-v1.yaml), less file and filter.
constexpr std::array<std::string_view, 10> recents_objects = {"activity", "activityType", "deal",    "note",  "organization",
                                                              "person",   "pipeline",     "product", "stage", "user"};

}  // namespace

std::span<const std::string_view> recoverable_objects() { return recents_objects; }

bool recoverable_object(std::string_view o) {
  return std::find(recents_objects.begin(), recents_objects.end(), o) != recents_objects.end();
}

std::string recoverable_objects_text() {
  std::string out;
  for (auto o : recents_objects) out += (out.empty() ? "" : ", ") + std::string(o);
  return out;
}

bool valid_event_action(std::string_view a) {
  for (std::string_view v : {"create", "change", "delete", "*"})
    if (a == v) return true;
  return false;
}

std::span<const std::string_view> known_event_objects(std::string_view version) {
  if (version == "1.0") return v1_objects;
  if (version == "2.0") return v2_objects;
  return {};
}

bool known_event_object(std::string_view version, std::string_view o) {
  const auto known = known_event_objects(version);
  return std::find(known.begin(), known.end(), o) != known.end();
}

bool plausible_event_object(std::string_view o) {
  if (o == "*") return true;
  if (o.empty() || o.size() > 64) return false;
  return std::all_of(o.begin(), o.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  });
}

}  // namespace pipehook::pipedrive
