#pragma once
// Who is the client behind a reverse proxy? Only when the connection comes from a trusted proxy
// (server.trusted_proxies) are its forwarding headers believed: `Forwarded` (RFC 7239) when
// present, else `X-Forwarded-For`. The chain is read from the right (the hop nearest to us), skipping
// trusted proxies; the first address that is not one is the client. Anyone else's headers are
// ignored: the client is the peer.

#include "pipehook/core/cidr.hpp"

#include <string>
#include <string_view>
#include <vector>

namespace pipehook::http {

struct client_address {
  std::string address;  // the client's IP (or the proxy's token, e.g. "unknown", when not an IP)
  std::string proto;    // "https"/"http" as forwarded; "" when not forwarded
  bool forwarded = false;
};

client_address resolve_client(const boost::asio::ip::address& peer, std::string_view forwarded,
                              std::string_view x_forwarded_for, std::string_view x_forwarded_proto,
                              const std::vector<cidr>& trusted);

// The same for a peer that is trusted by other means (a Unix-socket peer when server.trusted_proxies
// lists "unix"); `forwarded` is false (and `address` empty) when the headers name no client.
client_address resolve_forwarded(std::string_view forwarded, std::string_view x_forwarded_for,
                                 std::string_view x_forwarded_proto, const std::vector<cidr>& trusted);

}  // namespace pipehook::http
