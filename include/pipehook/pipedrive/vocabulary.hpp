#pragma once
// Pipedrive's own vocabulary for webhooks: the event_action values of the create endpoint, and the
// event_object values Pipedrive documents per webhooks version. Actions are a closed set; objects
// are not — Pipedrive adds some every few months — so an object not listed here is sent all the
// same (with a warning), and Pipedrive's answer decides.

#include <span>
#include <string>
#include <string_view>

namespace pipehook::pipedrive {

bool valid_event_action(std::string_view a);

// The objects known for webhooks "1.0" or "2.0" ("*" included); an empty span for another version.
std::span<const std::string_view> known_event_objects(std::string_view version);
bool known_event_object(std::string_view version, std::string_view o);
// What an object name may look like at all: letters, digits and '_', or "*".
bool plausible_event_object(std::string_view o);

// Backfill: the webhook objects whose changes GET /recents lists (its `items` enum, less file and
// filter, which have no webhooks). Leads and the 2026 v2 objects are not among them.
std::span<const std::string_view> recoverable_objects();
bool recoverable_object(std::string_view o);
std::string recoverable_objects_text();  // "activity, activityType, deal, ..."

}  // namespace pipehook::pipedrive
