#pragma once
// Absolute http/https URLs as pipehook uses them: the Pipedrive API base and the subscription URL.
// Deliberately strict: no user-info (credentials belong in the config's secret keys, never in a
// URL that gets logged), no fragment; a query only where the caller allows it.

#include "pipehook/core/error.hpp"

#include <cstdint>
#include <string>
#include <string_view>

namespace pipehook {

struct url {
  std::string scheme;  // "http" or "https"
  std::string host;    // without brackets for IPv6
  std::uint16_t port = 0;
  std::string path;    // "" or starting with '/'; the query, if any, included
  bool tls() const { return scheme == "https"; }
  bool default_port() const { return port == (tls() ? 443 : 80); }
  // host[:port] as the Host header wants it (brackets for IPv6, port only when not the default).
  std::string authority() const;
  std::string str() const;  // scheme://authority/path
};

// `what` names the value in the error ("pipedrive.api_base").
outcome<url> parse_url(std::string_view text, std::string_view what, bool allow_query = false);

// A connection URI (postgresql://user:password@host/db?password=...) with its password replaced
// by ********, for logs and check-config.
std::string mask_url_password(const std::string& url);

// A query value: RFC 3986 unreserved characters as they are, every other byte as %XX.
std::string percent_encode(std::string_view value);

}  // namespace pipehook
