#pragma once
// A stateful stand-in for Pipedrive's REST API (v1) on 127.0.0.1, for the registrar tests: the
// operations pipehook calls (GET /users/me, GET/POST /webhooks, DELETE /webhooks/{id}) with the
// status codes, envelopes and webhook objects of ../shared/pipedrive/api/openapi-v1.yaml, request
// validation as the spec states it (required fields, enums), the 40-webhooks-per-user limit as 422,
// token checks as 401, and injected faults (a status with headers, or a delay) for the next
// matching requests, and GET /recents over records the test puts (filtered, sorted and paged as the
// spec describes it). Optionally HTTPS with a generated self-signed certificate.

#include "http_sink.hpp"

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace pipehook::test {

struct fake_webhook {
  std::int64_t id = 0;
  std::int64_t user_id = 0;
  std::string event_action, event_object, subscription_url, version, name;
  std::string http_auth_user, http_auth_password;
  bool is_active = true;
};

struct fake_request {
  std::string method, target, body;
  std::string api_token;       // the x-api-token header
  std::string authorization;   // the Authorization header
  std::string content_type;
};

struct fake_fault {
  std::string method;      // "" = any
  std::string path;        // relative to the prefix, "" = any
  unsigned status = 0;     // 0: no status override (only the delay, and `headers` added to the real answer)
  std::string body;        // JSON; a default envelope when empty
  std::map<std::string, std::string> headers;
  std::chrono::milliseconds delay{0};
  bool apply_then_fail = false;  // perform the operation, then answer `status` (a 5xx after a create)
};

// A field definition served by GET /{object}Fields.
struct fake_field {
  std::string key, name, field_type;
  bool custom = false;
  std::vector<std::pair<std::int64_t, std::string>> options;  // id, label
};

class fake_pipedrive {
 public:
  // prefix: the API path the base URL includes ("/v1"); tls: serve HTTPS with `cert`.
  explicit fake_pipedrive(std::string token, std::string prefix = "/v1", std::optional<self_signed> cert = {},
                          unsigned short port = 0);
  ~fake_pipedrive();
  unsigned short port() const { return port_; }
  std::string base_url(const std::string& host = "127.0.0.1") const;

  static constexpr std::int64_t user_id = 1001;  // the token's user
  static constexpr std::int64_t company_id = 77;

  void add_webhook(fake_webhook w);  // pre-existing state (id assigned when 0)
  // The fields of `object` ("deal", ...): GET /dealFields pages them by start and limit as the spec does.
  void set_fields(const std::string& object, std::vector<fake_field> fields);
  // A record GET /recents lists (item "deal", "person", ...): `data` is its JSON object, whose
  // update_time ("YYYY-MM-DD HH:MM:SS", UTC) says when it changed; put again to change it.
  void put_record(const std::string& item, std::int64_t id, const std::string& data);
  void remove_webhook(std::int64_t id);  // as Pipedrive does after 3 days of failed deliveries
  std::vector<fake_webhook> webhooks() const;
  std::vector<fake_request> requests() const;
  std::size_t count(const std::string& method) const;  // requests with that method
  void inject(fake_fault f);  // consumed by the next matching request
  void stop();

 private:
  struct impl;
  std::shared_ptr<impl> p_;
  std::unique_ptr<http_test_server> server_;
  unsigned short port_ = 0;
  std::string prefix_;
  bool tls_ = false;
};

}  // namespace pipehook::test
