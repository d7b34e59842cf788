#pragma once
// Address ranges for server.trusted_proxies and server.allow_from: "10.0.0.0/8", "2001:db8::/32",
// or a single address (a /32 or /128). IPv4-mapped IPv6 addresses count as the IPv4 address.

#include "pipehook/core/error.hpp"

#include <boost/asio/ip/address.hpp>

#include <optional>

#include <string>
#include <string_view>
#include <vector>

namespace pipehook {

struct cidr {
  boost::asio::ip::address net;
  unsigned prefix = 0;
  std::string text;  // as configured, for messages
};

outcome<cidr> parse_cidr(std::string_view text, std::string_view what);
bool in_ranges(const std::vector<cidr>& ranges, const boost::asio::ip::address& a);

// An address from text, "[::1]" brackets allowed; IPv4-mapped IPv6 becomes IPv4.
std::optional<boost::asio::ip::address> parse_address(std::string_view text);

}  // namespace pipehook
