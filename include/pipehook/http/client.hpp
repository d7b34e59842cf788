#pragma once
// An HTTP/1.1 client connection to one origin (scheme, host, port): plain TCP or TLS with
// certificate and host-name verification (system CA store plus an optional CA file), SNI, TLS 1.2+,
// a connect deadline (resolve + connect + handshake) and a whole-request deadline, keep-alive
// reuse (a connection idle longer than a few seconds is replaced rather than risked), and one
// transparent resend of an idempotent request when a reused connection turns out closed.
// Callers keep one per concurrent request (a pool is a vector of them).

#include "pipehook/core/error.hpp"
#include "pipehook/core/url.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/system/result.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace pipehook::http {

// Trust settings shared by the connections of one client (an OpenSSL context, opaque here).
struct tls_settings;
outcome<std::shared_ptr<tls_settings>> make_tls_settings(const std::string& ca_file, std::string_view ca_key_name);
// The same, presenting a client certificate (mTLS): `cert_file` (PEM, with its chain) and the
// private key in `key_file` (PEM); errors name `key_prefix` + "client_cert" / "client_key".
outcome<std::shared_ptr<tls_settings>> make_tls_settings(const std::string& ca_file, std::string_view ca_key_name,
                                                         const std::string& cert_file, const std::string& key_file,
                                                         std::string_view key_prefix);

struct client_options {
  std::int64_t connect_timeout_ms = 5'000;
  std::int64_t timeout_ms = 15'000;
  std::size_t body_limit = 8 * 1024 * 1024;
};

struct client_request {
  std::string method = "GET";
  std::string target = "/";
  std::vector<std::pair<std::string, std::string>> headers;  // Host, User-Agent, Content-Length are set
  std::string body;
  bool idempotent = true;  // false: never resent, and a failure after sending says it may have been applied
};

struct client_response {
  unsigned status = 0;
  std::string reason;
  std::vector<std::pair<std::string, std::string>> headers;  // names in lower case
  std::string body;
  std::string header(std::string_view name) const;  // "" when absent
};

enum class client_errc { unreachable, timeout, tls, bad_response, cancelled };

struct client_error {
  client_errc kind = client_errc::unreachable;
  std::string message;            // "connecting to host:443 failed: Connection refused"
  bool may_have_applied = false;  // the request was (partly) sent: the server may have acted on it
};

using client_result = boost::system::result<client_response, client_error>;

class client_connection {
 public:
  client_connection(boost::asio::any_io_executor ex, url origin, client_options opts, std::shared_ptr<tls_settings> tls);
  ~client_connection();

  boost::asio::awaitable<client_result> request(client_request req);
  // Aborts the request in progress (it fails with client_errc::cancelled); the next one reconnects.
  void cancel();
  bool busy() const;
  std::uint64_t connections_opened() const;
  std::uint64_t requests_sent() const;

  struct impl;

 private:
  std::unique_ptr<impl> p_;
};

// Seconds from Retry-After (delta-seconds) or x-ratelimit-reset; nullopt when absent or not a number.
std::optional<double> seconds_header(std::string_view v);

// A bounded, printable excerpt of a body, for error messages.
std::string snippet(std::string_view body, std::size_t max = 160);

}  // namespace pipehook::http
