#pragma once
// A small threaded HTTP/1.1 server on 127.0.0.1 for tests (thread per connection, keep-alive,
// optional TLS): the stand-in Pipedrive API and the downstream sink of the http handler are built
// on it. `answer` decides each response; every request is recorded.

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace pipehook::test {

// A self-signed certificate (it is its own CA) with subjectAltName DNS:localhost.
struct self_signed {
  std::string cert_pem;
  std::string key_pem;
};
self_signed make_self_signed_localhost();

struct recorded_request {
  std::string method, target, body;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
  }
};

struct canned_response {
  unsigned status = 200;
  std::string body;
  std::map<std::string, std::string> headers;
  std::string content_type = "application/json";
};

class http_test_server {
 public:
  using answer_fn = std::function<canned_response(const recorded_request&)>;
  // port 0: any free port; a fixed port re-binds one used before (SO_REUSEADDR). With `client_ca`
  // (PEM) the TLS handshake requires a client certificate that this CA signed (mTLS).
  http_test_server(answer_fn answer, unsigned short port = 0, std::optional<self_signed> cert = {},
                   std::optional<std::string> client_ca = {});
  ~http_test_server();
  unsigned short port() const { return port_; }
  std::vector<recorded_request> requests() const;
  std::size_t request_count() const;
  void stop();

 private:
  struct impl;
  std::shared_ptr<impl> p_;
  unsigned short port_ = 0;
};

// A port that was free a moment ago (bound, read, closed): for servers started later in a test.
unsigned short reserve_port();

}  // namespace pipehook::test
