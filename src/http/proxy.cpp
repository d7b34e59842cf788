#include "pipehook/http/proxy.hpp"

#include <algorithm>

namespace pipehook::http {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  bool quoted = false;
  for (std::size_t i = 0; i <= s.size(); ++i) {
    if (i < s.size() && s[i] == '"') quoted = !quoted;
    if (i == s.size() || (s[i] == sep && !quoted)) {
      out.push_back(trim(s.substr(start, i - start)));
      start = i + 1;
    }
  }
  return out;
}

std::string unquote(std::string_view v) {
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
  return std::string(v);
}

// "192.0.2.1", "192.0.2.1:4711", "[2001:db8::1]:4711", "2001:db8::1" -> the address text.
std::string strip_port(std::string v) {
  if (!v.empty() && v.front() == '[') {
    const auto close = v.find(']');
    return close == std::string::npos ? v : v.substr(1, close - 1);
  }
  if (std::count(v.begin(), v.end(), ':') == 1) return v.substr(0, v.find(':'));
  return v;
}

struct hop {
  std::string address;
  std::string proto;
};

}  // namespace

client_address resolve_client(const boost::asio::ip::address& peer, std::string_view forwarded,
                              std::string_view x_forwarded_for, std::string_view x_forwarded_proto,
                              const std::vector<cidr>& trusted) {
  if (!in_ranges(trusted, peer)) return {peer.to_string(), "", false};
  client_address out = resolve_forwarded(forwarded, x_forwarded_for, x_forwarded_proto, trusted);
  if (!out.forwarded) out.address = peer.to_string();
  return out;
}

client_address resolve_forwarded(std::string_view forwarded, std::string_view x_forwarded_for,
                                 std::string_view x_forwarded_proto, const std::vector<cidr>& trusted) {
  client_address out;

  std::vector<hop> hops;  // nearest last
  if (!trim(forwarded).empty()) {
    for (auto element : split(forwarded, ',')) {
      hop h;
      for (auto pair : split(element, ';')) {
        const auto eq = pair.find('=');
        if (eq == std::string_view::npos) continue;
        std::string key(trim(pair.substr(0, eq)));
        std::transform(key.begin(), key.end(), key.begin(), [](unsigned char c) { return std::tolower(c); });
        const std::string value = unquote(trim(pair.substr(eq + 1)));
        if (key == "for") h.address = strip_port(value);
        if (key == "proto") h.proto = value;
      }
      hops.push_back(h);
    }
  } else {
    for (auto a : split(x_forwarded_for, ','))
      if (!a.empty()) hops.push_back({strip_port(std::string(a)), ""});
    if (!hops.empty()) hops.back().proto = std::string(trim(split(x_forwarded_proto, ',').front()));
  }
  if (hops.empty()) return out;

  // From the nearest hop outwards: trusted proxies are skipped, the first other address is the client.
  std::size_t i = hops.size();
  while (i > 1) {
    auto a = parse_address(hops[i - 1].address);
    if (!a || !in_ranges(trusted, *a)) break;
    --i;
  }
  out.address = hops[i - 1].address.empty() ? "unknown" : hops[i - 1].address;
  out.proto = hops[i - 1].proto.empty() ? hops.back().proto : hops[i - 1].proto;
  out.forwarded = true;
  return out;
}

}  // namespace pipehook::http
