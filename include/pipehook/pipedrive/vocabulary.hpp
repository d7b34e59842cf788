#pragma once
// Pipedrive's own vocabulary for webhooks: the event_action values of the create endpoint, and the
// event_object values Pipedrive documents per webhooks version. Actions are a closed set; objects
// are not — Pipedrive adds some every few months — so an object not listed here is sent all the
// same (with a warning), and Pipedrive's answer decides.

#include <span>
#include <string_view>

namespace pipehook::pipedrive {

bool valid_event_action(std::string_view a);

// The objects known for webhooks "1.0" or "2.0" ("*" included); an empty span for another version.
std::span<const std::string_view> known_event_objects(std::string_view version);
bool known_event_object(std::string_view version, std::string_view o);
// What an object name may look like at all: letters, digits and '_', or "*".
bool plausible_event_object(std::string_view o);

}  // namespace pipehook::pipedrive
