#pragma once
// The HTTP/1.1 server: one coroutine per connection, keep-alive, header and body limits, read and
// idle timeouts, a connection cap that closes the longest-idle connections, strict request framing
// (RFC 9112: anything that could be read two ways is refused and the connection closed), and
// graceful shutdown.

#include "pipehook/core/cidr.hpp"
#include "pipehook/core/error.hpp"
#include "pipehook/http/types.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <functional>
#include <memory>

namespace pipehook::http {

struct server_options {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8080;             // 0 picks a free port (see server::local_endpoint)
  std::string unix_path;                 // when set: a Unix domain socket at this path instead of host:port
  unsigned unix_mode = 0660;             // the socket file's permissions
  bool trust_unix_peers = false;         // believe forwarding headers from Unix-socket peers (a local proxy)
  std::uint64_t max_body_bytes = 1024 * 1024;
  std::uint32_t header_limit = 16 * 1024;
  // At the cap the longest-idle connection is closed for a new one; when none is idle, new
  // connections wait in the listen backlog.
  std::uint32_t max_connections = 1024;
  // A request must arrive whole within this once begun; a new connection must begin its first
  // request within it too.
  std::chrono::milliseconds read_timeout{10'000};
  std::chrono::milliseconds idle_timeout{60'000};  // a keep-alive connection between requests
  std::chrono::milliseconds shutdown_timeout{15'000};
  std::vector<cidr> trusted_proxies;     // whose Forwarded / X-Forwarded-* headers are believed
  std::string listen_key = "server.listen";  // the config key that errors about the address name
  // Runs on every well-framed request head before routing; a response refuses the request (and
  // closes the connection). The admin listener checks Host and Origin here.
  std::function<std::optional<response>(const request_head&)> admit;
  // Called (on the connection's strand) for each idle connection closed at the cap: counters.
  std::function<void()> on_closed_at_cap;
  // Called after each response is written (or a request abandoned): logging and counters.
  std::function<void(const request_head&, const response&, std::chrono::microseconds elapsed)> on_response;
};

class server {
 public:
  server(boost::asio::io_context& ioc, server_options options, std::vector<route> routes);
  ~server();

  // Binds and listens. Errors say which address could not be used and why. On a Unix socket the
  // endpoint returned is empty; a stale socket file is replaced, a live one is an error.
  outcome<boost::asio::ip::tcp::endpoint> listen();

  // Instead of listen(): serves on a socket already bound and listening (systemd socket
  // activation), TCP or Unix. Takes ownership of `fd`. Returns the bound address (empty for Unix).
  outcome<boost::asio::ip::tcp::endpoint> adopt(int fd);

  // Starts accepting (after listen() or adopt()).
  void start();

  // Graceful stop, callable from any thread: stop accepting, close idle connections, let in-flight
  // requests finish (answered with Connection: close) for up to shutdown_timeout, then close the rest.
  // io_context::run() returns once every connection is gone.
  void stop();

  std::size_t active_connections() const;
  connection_counts connections() const;  // any thread

  struct state;  // opaque

 private:
  outcome<void> listen_unix();
  std::shared_ptr<state> state_;
};

}  // namespace pipehook::http
