#include "pipehook/core/url.hpp"

#include <algorithm>
#include <cctype>

namespace pipehook {

std::string url::authority() const {
  std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  if (!default_port()) h += ":" + std::to_string(port);
  return h;
}

std::string url::str() const { return scheme + "://" + authority() + path; }

outcome<url> parse_url(std::string_view text, std::string_view what, bool allow_query) {
  auto bad = [&](std::string why) {
    return make_failure(errc::invalid_config, std::string(what) + " \"" + std::string(text) + "\": " + why);
  };
  url u;
  const auto sep = text.find("://");
  if (sep == std::string_view::npos) return bad("must be an absolute http:// or https:// URL");
  for (char c : text.substr(0, sep)) u.scheme += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (u.scheme != "http" && u.scheme != "https") return bad("the scheme must be http or https");
  if (std::any_of(text.begin(), text.end(), [](char c) { return static_cast<unsigned char>(c) <= ' ' || c == 0x7f; }))
    return bad("must not contain spaces or control characters");
  std::string_view rest = text.substr(sep + 3);
  const auto path_at = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, path_at);
  std::string_view path = path_at == std::string_view::npos ? std::string_view{} : rest.substr(path_at);
  if (authority.find('@') != std::string_view::npos)
    return bad("must not carry credentials (user@host); put secrets in their own config keys");
  if (path.find('#') != std::string_view::npos) return bad("must not have a fragment (#...)");
  if (!allow_query && path.find('?') != std::string_view::npos) return bad("must not have a query (?...)");
  if (!path.empty() && path.front() == '?') u.path = "/" + std::string(path);
  else u.path = std::string(path);

  std::string_view port_text;
  if (!authority.empty() && authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) return bad("unclosed '[' in the host");
    u.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return bad("unexpected text after the IPv6 address");
      port_text = after.substr(1);
    }
  } else {
    const auto colon = authority.rfind(':');
    u.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port_text = authority.substr(colon + 1);
  }
  if (u.host.empty()) return bad("has no host");
  if (u.host.find_first_of(":") != std::string::npos && authority.front() != '[')
    return bad("an IPv6 host must be written in brackets, like [::1]");
  for (char& c : u.host) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (authority.find(':') != std::string_view::npos && port_text.empty() && authority.back() == ':')
    return bad("has an empty port");
  if (!port_text.empty()) {
    unsigned long p = 0;
    for (char c : port_text) {
      if (c < '0' || c > '9' || p > 65535) return bad("the port must be a number from 1 to 65535");
      p = p * 10 + static_cast<unsigned long>(c - '0');
    }
    if (p == 0 || p > 65535) return bad("the port must be a number from 1 to 65535");
    u.port = static_cast<std::uint16_t>(p);
  } else {
    u.port = u.tls() ? 443 : 80;
  }
  return u;
}

std::string mask_url_password(const std::string& url) {
  std::string out = url;
  const auto scheme = out.find("://");
  if (scheme != std::string::npos) {
    const auto start = scheme + 3;
    const auto end = out.find_first_of("/?", start);
    const auto at = out.rfind('@', end == std::string::npos ? std::string::npos : end);
    if (at != std::string::npos && at >= start) {
      const auto colon = out.find(':', start);
      if (colon != std::string::npos && colon < at) out.replace(colon + 1, at - colon - 1, "********");
    }
  }
  // ?password=... or &password=...
  for (std::size_t pos = out.find("password="); pos != std::string::npos; pos = out.find("password=", pos + 1)) {
    if (pos == 0 || (out[pos - 1] != '?' && out[pos - 1] != '&')) continue;
    const auto value = pos + 9;
    const auto end = out.find('&', value);
    out.replace(value, (end == std::string::npos ? out.size() : end) - value, "********");
  }
  return out;
}

std::string percent_encode(std::string_view value) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(value.size());
  for (unsigned char c : value) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

}  // namespace pipehook
