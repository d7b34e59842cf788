#pragma once
// A client for the few Pipedrive REST API (v1) operations pipehook needs: who am I, and list,
// create and delete webhooks. HTTPS with certificate and host-name verification (system CA store
// plus an optional extra CA file), SNI, connect and request deadlines, one keep-alive connection
// reused between calls, and retries with backoff for 429, 5xx and unreachable servers (honouring
// x-ratelimit-reset and Retry-After). Pipedrive's error envelopes become api_error values whose
// messages say what was refused and why; tokens and passwords never appear in them.

#include "pipehook/config/config.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/system/result.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace pipehook::pipedrive {

// A webhook as GET /webhooks and POST /webhooks describe it (the spec's BaseWebhook).
struct webhook {
  std::int64_t id = 0;
  std::int64_t company_id = 0;
  std::int64_t owner_id = 0;
  std::int64_t user_id = 0;
  std::string event_action;
  std::string event_object;
  std::string subscription_url;
  std::string version;
  std::string name;
  std::string type;                // general, application, automation
  std::string http_auth_user;      // "" when null
  std::string http_auth_password;  // secret, "" when null: compared, never shown
  bool is_active = true;
  std::string add_time;
  std::string last_delivery_time;  // "" when null
  int last_http_status = 0;        // 0 when null
};

// GET /users/me: the token's user and company.
struct current_user {
  std::int64_t id = 0;
  std::string name;
  std::string email;
  bool is_admin = false;  // admin of the "global" app (can manage all webhooks of the company)
  std::int64_t company_id = 0;
  std::string company_name;
  std::string company_domain;
};

// GET /{object}Fields: one field of an object, with its options for enum and set fields.
struct field_option {
  std::string id;  // as text
  std::string label;
};
struct field_def {
  std::string key;   // "stage_id", or a custom field's 40-hex key
  std::string name;  // "Stage", "Region"
  std::string field_type;
  bool custom = false;  // edit_flag: a field the company added
  std::vector<field_option> options;
};

// The objects that have a fields endpoint (leads use the deal fields).
bool has_fields_endpoint(std::string_view object);

// GET /recents: a record changed since a time, as the API lists it.
struct recent_record {
  std::string item;         // "deal", "person", ...
  std::string id;           // as text
  std::string data;         // the record's JSON (minified)
  std::string update_time;  // UTC "YYYY-MM-DD HH:MM:SS" as sent (users: `modified`); "" when absent
  std::string add_time;     // (users: `created`); "" when absent
};
struct recents_page {
  std::vector<recent_record> records;
  bool more = false;            // more_items_in_collection
  std::int64_t next_start = 0;  // the offset of the next page
};
// The token cost of one GET /recents (openapi-v1.yaml x-token-cost) and of GET /users/me (a
// single entity, core-api-concepts-rate-limiting.md).
inline constexpr int recents_token_cost = 20;
inline constexpr int whoami_token_cost = 2;

// POST /webhooks.
struct new_webhook {
  std::string subscription_url;
  std::string event_action;
  std::string event_object;
  std::string name;
  std::string version = "2.0";
  std::int64_t user_id = 0;  // 0: not sent (the token's user)
  std::string http_auth_user;
  std::string http_auth_password;  // secret: sent, never logged
};

enum class api_errc {
  bad_request,       // 400: the `errors` envelope, field by field
  unauthorized,      // 401: bad or revoked token
  payment_required,  // 402: the company account is not open
  forbidden,         // 403: not allowed (admin scope missing, or blocked after ignoring 429s)
  not_found,         // 404
  limit_reached,     // 422: 40 webhooks per user
  rate_limited,      // 429, after the retries (or a reset too far away to wait for)
  server_error,      // 5xx, after the retries
  other_status,      // any other non-2xx status
  unreachable,       // resolve/connect/reset, after the retries
  timeout,           // a connect or request deadline passed, after the retries
  tls,               // handshake or certificate verification failed (not retried)
  bad_response,      // 2xx whose body is not what the spec says
  cancelled,         // cancel() was called (shutdown)
  plan_refused,      // the registrar refused a plan before calling the API
};

struct api_error {
  api_errc kind = api_errc::other_status;
  unsigned status = 0;  // the HTTP status; 0 when there was no response
  std::string message;  // for people: what, why, and where relevant what to do
  // True when a non-idempotent request (POST) may have been applied although no success was
  // seen (a 5xx, a timeout or a reset after it was sent): re-read before trying again.
  bool may_have_applied = false;
  bool transient() const;  // worth trying again later (rate limits, 5xx, network, timeouts)
};

template <class T>
using api_result = boost::system::result<T, api_error>;

struct client_stats {
  std::uint64_t requests = 0;     // HTTP requests sent, retries included
  std::uint64_t connections = 0;  // connections opened (keep-alive reuse keeps this low)
  std::uint64_t retries = 0;
};

class client {
 public:
  // Fails when the base URL is invalid or the CA file cannot be loaded; no I/O happens here.
  static outcome<std::unique_ptr<client>> create(boost::asio::any_io_executor ex, const config::pipedrive_config& cfg);
  ~client();

  boost::asio::awaitable<api_result<current_user>> whoami();
  boost::asio::awaitable<api_result<std::vector<webhook>>> list_webhooks();
  boost::asio::awaitable<api_result<webhook>> create_webhook(new_webhook w);
  boost::asio::awaitable<api_result<void>> delete_webhook(std::int64_t id);
  // Every field of `object` (deal, person, organization, product, activity, note), page by page.
  boost::asio::awaitable<api_result<std::vector<field_def>>> list_fields(std::string object);
  // One page of GET /recents?since_timestamp=...&items=...&start=...&limit=... (since: UTC
  // "YYYY-MM-DD HH:MM:SS"; item: one of the spec's `items`).
  boost::asio::awaitable<api_result<recents_page>> recents(std::string since, std::string item, std::int64_t start, int limit);

  // Aborts the call in progress (it returns api_errc::cancelled) and closes the connection;
  // later calls work again. Call on the executor the calls run on.
  void cancel();
  client_stats stats() const;
  std::string base_url() const;

  struct impl;

 private:
  explicit client(std::unique_ptr<impl> p);
  std::unique_ptr<impl> p_;
};

}  // namespace pipehook::pipedrive
