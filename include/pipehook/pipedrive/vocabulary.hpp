#pragma once
// Pipedrive's own vocabulary for webhooks: the event_action and event_object values of the create
// endpoint (shared/pipedrive/api/openapi-v1.yaml, POST /webhooks), "*" included.

#include <string_view>

namespace pipehook::pipedrive {

bool valid_event_action(std::string_view a);
bool valid_event_object(std::string_view o);

}  // namespace pipehook::pipedrive
