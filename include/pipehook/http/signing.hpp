#pragma once
// Standard Webhooks signatures (https://www.standardwebhooks.com): webhook-signature =
// "v1," + base64(HMAC-SHA256(key, "<webhook-id>.<webhook-timestamp>.<body>")). Used by the http
// handler and by alerts.

#include "pipehook/core/error.hpp"

#include <string>
#include <string_view>

namespace pipehook::http {

// "whsec_<base64>" (the Standard Webhooks form) is decoded; any other secret is used as bytes.
outcome<std::string> signing_key(const std::string& secret, const std::string& key_name);
// The webhook-signature header's value.
std::string webhook_signature(std::string_view key, std::string_view id, std::string_view timestamp, std::string_view body);

}  // namespace pipehook::http
