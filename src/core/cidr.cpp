#include "pipehook/core/cidr.hpp"

#include <charconv>

namespace pipehook {

namespace ip = boost::asio::ip;

namespace {

ip::address unmapped(const ip::address& a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped()) return ip::make_address_v4(ip::v4_mapped, a.to_v6());
  return a;
}

std::vector<unsigned char> bytes_of(const ip::address& a) {
  if (a.is_v4()) {
    const auto b = a.to_v4().to_bytes();
    return {b.begin(), b.end()};
  }
  const auto b = a.to_v6().to_bytes();
  return {b.begin(), b.end()};
}

}  // namespace

std::optional<ip::address> parse_address(std::string_view text) {
  if (text.size() >= 2 && text.front() == '[' && text.back() == ']') text = text.substr(1, text.size() - 2);
  boost::system::error_code ec;
  const ip::address a = ip::make_address(std::string(text), ec);
  if (ec) return std::nullopt;
  return unmapped(a);
}

outcome<cidr> parse_cidr(std::string_view text, std::string_view what) {
  auto bad = [&] {
    return make_failure(errc::invalid_config, std::string(what) + ": \"" + std::string(text) +
                                                  "\" is not an address range like \"10.0.0.0/8\", \"2001:db8::/32\" or "
                                                  "\"127.0.0.1\"");
  };
  const auto slash = text.find('/');
  auto addr = parse_address(text.substr(0, slash));
  if (!addr) return bad();
  cidr c;
  c.net = *addr;
  c.text = std::string(text);
  const unsigned max = c.net.is_v4() ? 32 : 128;
  c.prefix = max;
  if (slash != std::string_view::npos) {
    const std::string_view p = text.substr(slash + 1);
    unsigned v = 0;
    auto [ptr, ec] = std::from_chars(p.data(), p.data() + p.size(), v);
    if (ec != std::errc() || ptr != p.data() + p.size() || p.empty() || v > max) return bad();
    c.prefix = v;
  }
  return c;
}

bool in_ranges(const std::vector<cidr>& ranges, const ip::address& raw) {
  const ip::address a = unmapped(raw);
  for (const auto& r : ranges) {
    if (r.net.is_v4() != a.is_v4()) continue;
    const std::vector<unsigned char> x = bytes_of(a), n = bytes_of(r.net);
    unsigned bits = r.prefix;
    bool match = true;
    for (std::size_t i = 0; i < x.size() && bits > 0 && match; ++i) {
      const unsigned take = bits >= 8 ? 8 : bits;
      const unsigned char mask = static_cast<unsigned char>(0xff << (8 - take));
      match = (x[i] & mask) == (n[i] & mask);
      bits -= take;
    }
    if (match) return true;
  }
  return false;
}

}  // namespace pipehook
