#pragma once
// The webhook endpoint's business logic, apart from the transport: Basic auth and content type on
// the head, then parse -> commit -> answer. Also the health and readiness checks.

#include "pipehook/core/cidr.hpp"
#include "pipehook/http/types.hpp"
#include "pipehook/store/event_log.hpp"

#include <array>
#include <atomic>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace pipehook::ingest {

struct options {
  bool auth_enabled = true;
  std::string user;
  std::string password;             // secret
  std::uint32_t retry_after_s = 5;  // sent with 503
  std::vector<cidr> allow_from;     // clients allowed to POST (empty: anyone); others get 403
};

class webhook_endpoint {
 public:
  webhook_endpoint(options opt, store::event_log& log);

  // 403 (client not in allow_from), 401 (missing/wrong credentials, with WWW-Authenticate) or 415
  // (not JSON), from the head alone.
  std::optional<http::response> check(const http::request_head& head) const;

  // 400 invalid JSON; 200 stored/duplicate; 202 quarantined; 503 + Retry-After when the log cannot
  // take it. A 2xx is sent only after the commit.
  boost::asio::awaitable<http::response> handle(http::request_head head, std::string body);

  // GET /healthz: the process is alive.
  http::response health() const;

  // GET /readyz: 200 when a write through the event log commits now, else 503 with the reason.
  // After an event could not be stored (disk full, I/O error, lock), the probe writes as many bytes
  // as that event had: readiness follows the last write's outcome, not a tiny write's.
  boost::asio::awaitable<http::response> ready();

  // SIGHUP: new Basic-auth settings for the requests that follow (any thread).
  void set_credentials(bool enabled, const std::string& user, const std::string& password);

  // Marks the endpoint as shutting down: /readyz answers 503 so a proxy stops sending.
  void set_draining() { draining_ = true; }

 private:
  http::response unavailable(const failure& f) const;
  // Remembers a failed write of `bytes` (store trouble, not a full queue), or forgets it on success.
  void note_write(const store::append_result& r, std::size_t bytes);

  options opt_;
  store::event_log& log_;
  mutable std::mutex cred_mu_;                       // guards the two below (SIGHUP may change them)
  bool auth_enabled_ = true;
  std::array<unsigned char, 32> expected_digest_{};  // SHA-256 of "user:password"
  std::atomic<bool> draining_{false};
  std::atomic<bool> write_failed_{false};  // a failure is noted below (read without the lock on the hot path)
  std::mutex failure_mu_;
  std::size_t failure_bytes_ = 0;  // the size of the largest write that failed since the last success
};

}  // namespace pipehook::ingest
