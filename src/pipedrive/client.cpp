#include "pipehook/pipedrive/client.hpp"
#include "pipehook/store/fields.hpp"

#include "pipehook/core/backoff.hpp"
#include "pipehook/core/use_tuple.hpp"

#include "pipehook/core/url.hpp"

#include "pipehook/http/client.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <simdjson.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <optional>

namespace pipehook::pipedrive {

namespace asio = boost::asio;

bool api_error::transient() const {
  return kind == api_errc::rate_limited || kind == api_errc::server_error || kind == api_errc::unreachable ||
         kind == api_errc::timeout;
}

namespace {

api_error make_error(api_errc kind, std::string message, unsigned status = 0) {
  api_error e;
  e.kind = kind;
  e.status = status;
  e.message = std::move(message);
  return e;
}

// --- JSON helpers over simdjson's DOM: absent and null read as empty / 0. -------------------------

std::string str_field(simdjson::dom::element obj, std::string_view key) {
  std::string_view v;
  if (obj[key].get_string().get(v) == simdjson::SUCCESS) return std::string(v);
  return {};
}

std::int64_t int_field(simdjson::dom::element obj, std::string_view key) {
  simdjson::dom::element e;
  if (obj[key].get(e) != simdjson::SUCCESS) return 0;
  std::int64_t i = 0;
  if (e.get_int64().get(i) == simdjson::SUCCESS) return i;
  double d = 0;
  if (e.get_double().get(d) == simdjson::SUCCESS) return static_cast<std::int64_t>(d);
  std::string_view s;  // some Pipedrive fields arrive as numeric strings
  if (e.get_string().get(s) == simdjson::SUCCESS) std::from_chars(s.data(), s.data() + s.size(), i);
  return i;
}

bool bool_field(simdjson::dom::element obj, std::string_view key, bool fallback) {
  simdjson::dom::element e;
  if (obj[key].get(e) != simdjson::SUCCESS || e.is_null()) return fallback;
  bool b = false;
  if (e.get_bool().get(b) == simdjson::SUCCESS) return b;
  return int_field(obj, key) != 0;  // the spec's numberBoolean: 0 or 1
}

// The human part of an error envelope: `errors` (field -> messages), `error`, or `message`.
std::string envelope_detail(simdjson::dom::element doc) {
  std::string out;
  simdjson::dom::object errors;
  if (doc["errors"].get_object().get(errors) == simdjson::SUCCESS) {
    for (auto [field, value] : errors) {
      std::string msgs;
      simdjson::dom::array arr;
      std::string_view one;
      if (value.get_array().get(arr) == simdjson::SUCCESS) {
        for (simdjson::dom::element m : arr) {
          std::string_view s;
          if (m.get_string().get(s) != simdjson::SUCCESS) continue;
          msgs += (msgs.empty() ? "" : ", ") + std::string(s);
        }
      } else if (value.get_string().get(one) == simdjson::SUCCESS) {
        msgs = std::string(one);
      }
      out += (out.empty() ? "" : "; ") + std::string(field) + ": " + (msgs.empty() ? "invalid" : msgs);
    }
  }
  for (const char* key : {"error", "message"}) {
    if (!out.empty()) break;
    out = str_field(doc, key);
  }
  if (const std::string info = str_field(doc, "error_info"); !info.empty() && !out.empty()) out += " (" + info + ")";
  return out;
}

webhook parse_webhook(simdjson::dom::element o) {
  webhook w;
  w.id = int_field(o, "id");
  w.company_id = int_field(o, "company_id");
  w.owner_id = int_field(o, "owner_id");
  w.user_id = int_field(o, "user_id");
  w.event_action = str_field(o, "event_action");
  w.event_object = str_field(o, "event_object");
  w.subscription_url = str_field(o, "subscription_url");
  w.version = str_field(o, "version");
  w.name = str_field(o, "name");
  w.type = str_field(o, "type");
  w.http_auth_user = str_field(o, "http_auth_user");
  w.http_auth_password = str_field(o, "http_auth_password");
  w.is_active = bool_field(o, "is_active", true);
  w.add_time = str_field(o, "add_time");
  w.last_delivery_time = str_field(o, "last_delivery_time");
  w.last_http_status = static_cast<int>(int_field(o, "last_http_status"));
  return w;
}

}  // namespace

struct client::impl {
  config::pipedrive_config cfg;
  url base;
  std::unique_ptr<http::client_connection> conn;
  asio::steady_timer backoff;
  std::uint64_t generation = 0;  // cancel() bumps it; a call that sees it change stops
  std::uint64_t retries = 0;
  // Pipedrive said its burst window is used up (x-ratelimit-remaining: 0): no request before this.
  std::chrono::steady_clock::time_point quiet_until{};

  impl(asio::any_io_executor ex, config::pipedrive_config c, url b, std::shared_ptr<http::tls_settings> tls)
      : cfg(std::move(c)), base(std::move(b)), backoff(ex) {
    http::client_options o;
    o.connect_timeout_ms = cfg.connect_timeout_ms;
    o.timeout_ms = cfg.timeout_ms;
    conn = std::make_unique<http::client_connection>(ex, base, o, std::move(tls));
  }

  api_error from_status(const std::string& what, const http::client_response& r) {
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    std::string detail;
    const bool json = parser.parse(r.body).get(doc) == simdjson::SUCCESS && doc.is_object();
    if (json) detail = envelope_detail(doc);
    if (detail.empty() && !r.body.empty() && !json) detail = "non-JSON answer: " + http::snippet(r.body);
    if (detail.empty()) detail = r.reason.empty() ? "no details" : r.reason;
    const std::string status = std::to_string(r.status);
    const std::string head = what + ": ";
    switch (r.status) {
      case 400:
        return make_error(api_errc::bad_request, head + "Pipedrive rejected the request (400): " + detail, r.status);
      case 401:
        return make_error(api_errc::unauthorized,
                          head + "Pipedrive refused the token (401: " + detail +
                              "); check PIPEDRIVE_API_TOKEN / pipedrive.api_token or the OAuth token",
                          r.status);
      case 402:
        return make_error(api_errc::payment_required,
                          head + "the Pipedrive company account is not open (402: " + detail + ")", r.status);
      case 403:
        if (!json)
          return make_error(api_errc::forbidden,
                            head + "access denied by Pipedrive's edge (403, " + detail +
                                "); this happens after ignoring 429s, so wait before trying again",
                            r.status);
        return make_error(api_errc::forbidden,
                          head + "Pipedrive forbids this (403: " + detail +
                              "); managing webhooks needs an admin user, or the admin scope for OAuth apps",
                          r.status);
      case 404:
        return make_error(api_errc::not_found, head + "not found (404: " + detail + ")", r.status);
      case 422:
        return make_error(api_errc::limit_reached,
                          head + "Pipedrive's webhook limit is reached (422: " + detail +
                              "); a user may have 40 webhooks: delete unused ones (pipehook webhooks list)",
                          r.status);
      case 429:
        return make_error(api_errc::rate_limited, head + "rate limited by Pipedrive (429: " + detail + ")", r.status);
      default:
        break;
    }
    if (r.status >= 500)
      return make_error(api_errc::server_error, head + "Pipedrive answered " + status + " (" + detail + ")", r.status);
    return make_error(api_errc::other_status, head + "unexpected answer " + status + " (" + detail + ")", r.status);
  }

  // One API call: send, classify, retry what is worth retrying.
  asio::awaitable<api_result<http::client_response>> call(std::string method, std::string path, std::string body) {
    const std::string what = method + " " + path;
    const std::uint64_t gen = generation;
    http::client_request req;
    req.method = method;
    req.target = base.path + path;
    req.idempotent = method != "POST";
    req.headers.emplace_back("Accept", "application/json");
    if (!cfg.oauth_token.empty()) req.headers.emplace_back("Authorization", "Bearer " + cfg.oauth_token);
    else req.headers.emplace_back("x-api-token", cfg.api_token);
    if (!body.empty()) req.headers.emplace_back("Content-Type", "application/json");
    req.body = std::move(body);

    for (unsigned n = 1;; ++n) {
      if (std::chrono::steady_clock::now() < quiet_until) {  // wait out the burst window rather than earn a 429
        backoff.expires_at(quiet_until);
        auto w = backoff.async_wait(use_tuple);
        co_await std::move(w);
        if (generation != gen) co_return make_error(api_errc::cancelled, what + ": cancelled");
      }
      auto op = conn->request(req);
      http::client_result r = co_await std::move(op);
      if (generation != gen) co_return make_error(api_errc::cancelled, what + ": cancelled");
      if (r && r->header("x-ratelimit-remaining") == "0") {
        const auto reset = http::seconds_header(r->header("x-ratelimit-reset")).value_or(2.0);  // the window is 2 s
        quiet_until = std::chrono::steady_clock::now() +
                      std::chrono::milliseconds(static_cast<std::int64_t>(std::clamp(reset, 0.0, 60.0) * 1000.0));
      }
      api_error e;
      std::optional<double> hint;
      if (r) {
        if (r->status >= 200 && r->status < 300) co_return std::move(*r);
        e = from_status(what, *r);
        for (const char* h : {"x-ratelimit-reset", "retry-after"})
          if (auto v = http::seconds_header(r->header(h))) hint = std::max(hint.value_or(0.0), *v);
        // A server error on a create may have created the webhook: the caller re-reads first.
        if (!req.idempotent && r->status >= 500) e.may_have_applied = true;
      } else {
        static constexpr api_errc kinds[] = {api_errc::unreachable, api_errc::timeout, api_errc::tls,
                                             api_errc::bad_response, api_errc::cancelled};
        e = make_error(kinds[static_cast<int>(r.error().kind)], what + ": " + r.error().message);
        e.may_have_applied = r.error().may_have_applied;
      }
      const bool more = e.transient() && n < cfg.max_attempts && !e.may_have_applied;
      if (!more) {
        if (n > 1) e.message += " (after " + std::to_string(n) + " attempts)";
        co_return e;
      }
      auto wait = backoff_delay(n, std::chrono::milliseconds(cfg.retry_base_ms), std::chrono::milliseconds(cfg.retry_max_ms));
      if (hint) {
        const auto hinted = std::chrono::milliseconds(static_cast<std::int64_t>(*hint * 1000.0));
        if (hinted.count() > cfg.retry_max_ms) {
          e.message += "; Pipedrive asks to wait " + std::to_string(static_cast<std::int64_t>(*hint)) +
                       " s, longer than pipedrive.retry_max";
          co_return e;
        }
        wait = std::max(wait, hinted);
      }
      spdlog::info("{}; trying again in {} ms (attempt {} of {})", e.message, wait.count(), n + 1, cfg.max_attempts);
      ++retries;
      backoff.expires_after(wait);
      auto w = backoff.async_wait(use_tuple);
      co_await std::move(w);
      if (generation != gen) co_return make_error(api_errc::cancelled, what + ": cancelled");
    }
  }

  // Parses a 2xx body: the success envelope with its `data`.
  api_result<simdjson::dom::element> data_of(const std::string& what, simdjson::dom::parser& parser,
                                             const http::client_response& r) {
    simdjson::dom::element doc;
    if (parser.parse(r.body).get(doc) != simdjson::SUCCESS || !doc.is_object())
      return make_error(api_errc::bad_response, what + ": the answer is not a JSON object: " + http::snippet(r.body),
                        r.status);
    bool success = true;
    if (doc["success"].get_bool().get(success) == simdjson::SUCCESS && !success) {
      std::string detail = envelope_detail(doc);
      return make_error(api_errc::bad_response,
                        what + ": Pipedrive answered " + std::to_string(r.status) + " with success=false" +
                            (detail.empty() ? "" : ": " + detail),
                        r.status);
    }
    simdjson::dom::element data;
    if (doc["data"].get(data) != simdjson::SUCCESS) return make_error(api_errc::bad_response, what + ": no `data` in the answer", r.status);
    return data;
  }
};

client::client(std::unique_ptr<impl> p) : p_(std::move(p)) {}
client::~client() = default;

outcome<std::unique_ptr<client>> client::create(asio::any_io_executor ex, const config::pipedrive_config& cfg) {
  auto base = parse_url(cfg.api_base, "pipedrive.api_base");
  if (!base) return base.error();
  while (!base->path.empty() && base->path.back() == '/') base->path.pop_back();
  auto tls = http::make_tls_settings(cfg.ca_file, "pipedrive.ca_file");
  if (!tls) return tls.error();
  return std::unique_ptr<client>(new client(std::make_unique<impl>(ex, cfg, std::move(*base), std::move(*tls))));
}

asio::awaitable<api_result<current_user>> client::whoami() {
  auto op = p_->call("GET", "/users/me", {});
  auto r = co_await std::move(op);
  if (!r) co_return r.error();
  simdjson::dom::parser parser;
  auto data = p_->data_of("GET /users/me", parser, *r);
  if (!data) co_return data.error();
  if (!data->is_object()) co_return make_error(api_errc::bad_response, "GET /users/me: `data` is not an object", r->status);
  current_user u;
  u.id = int_field(*data, "id");
  u.name = str_field(*data, "name");
  u.email = str_field(*data, "email");
  u.company_id = int_field(*data, "company_id");
  u.company_name = str_field(*data, "company_name");
  u.company_domain = str_field(*data, "company_domain");
  simdjson::dom::array access;
  if ((*data)["access"].get_array().get(access) == simdjson::SUCCESS)
    for (simdjson::dom::element a : access)
      if (str_field(a, "app") == "global" && bool_field(a, "admin", false)) u.is_admin = true;
  if (u.id == 0) co_return make_error(api_errc::bad_response, "GET /users/me: the answer has no user id", r->status);
  co_return u;
}

asio::awaitable<api_result<std::vector<webhook>>> client::list_webhooks() {
  auto op = p_->call("GET", "/webhooks", {});
  auto r = co_await std::move(op);
  if (!r) co_return r.error();
  simdjson::dom::parser parser;
  auto data = p_->data_of("GET /webhooks", parser, *r);
  if (!data) co_return data.error();
  std::vector<webhook> out;
  if (data->is_null()) co_return out;
  simdjson::dom::array arr;
  if (data->get_array().get(arr) != simdjson::SUCCESS)
    co_return make_error(api_errc::bad_response, "GET /webhooks: `data` is not a list", r->status);
  for (simdjson::dom::element e : arr) {
    if (!e.is_object()) co_return make_error(api_errc::bad_response, "GET /webhooks: a webhook is not an object", r->status);
    out.push_back(parse_webhook(e));
  }
  co_return out;
}

bool has_fields_endpoint(std::string_view object) {
  return std::find(std::begin(store::field_objects), std::end(store::field_objects), object) != std::end(store::field_objects);
}

asio::awaitable<api_result<std::vector<field_def>>> client::list_fields(std::string object) {
  const std::string path = "/" + object + "Fields";
  // Deal, person, organization and product fields are paged (start, limit); activity and note
  // fields come whole (openapi-v1.yaml).
  const bool paged = object != "activity" && object != "note";
  constexpr int page_size = 500;
  std::vector<field_def> out;
  std::int64_t start = 0;
  for (int page = 0; page < 200; ++page) {  // bounded: 100,000 fields
    const std::string target = paged ? path + "?start=" + std::to_string(start) + "&limit=" + std::to_string(page_size) : path;
    auto op = p_->call("GET", target, {});
    auto r = co_await std::move(op);
    if (!r) co_return r.error();
    simdjson::dom::parser parser;
    auto data = p_->data_of("GET " + path, parser, *r);
    if (!data) co_return data.error();
    simdjson::dom::array arr;
    if (!data->is_null() && data->get_array().get(arr) != simdjson::SUCCESS)
      co_return make_error(api_errc::bad_response, "GET " + path + ": `data` is not a list", r->status);
    if (!data->is_null())
      for (simdjson::dom::element f : arr) {
        if (!f.is_object()) co_return make_error(api_errc::bad_response, "GET " + path + ": a field is not an object", r->status);
        field_def d;
        d.key = str_field(f, "key");
        d.name = str_field(f, "name");
        d.field_type = str_field(f, "field_type");
        d.custom = bool_field(f, "edit_flag", false);
        simdjson::dom::array options;
        if (f["options"].get_array().get(options) == simdjson::SUCCESS)
          for (simdjson::dom::element o : options) {
            field_option opt;
            if (std::int64_t n; o["id"].get_int64().get(n) == simdjson::SUCCESS) opt.id = std::to_string(n);
            else opt.id = str_field(o, "id");
            opt.label = str_field(o, "label");
            d.options.push_back(std::move(opt));
          }
        if (!d.key.empty()) out.push_back(std::move(d));
      }
    if (!paged) break;
    simdjson::dom::element pagination;
    bool more = false;
    std::int64_t next = 0;
    if (parser.parse(r->body)["additional_data"]["pagination"].get(pagination) != simdjson::SUCCESS ||
        pagination["more_items_in_collection"].get_bool().get(more) != simdjson::SUCCESS || !more)
      break;
    if (pagination["next_start"].get_int64().get(next) != simdjson::SUCCESS || next <= start)
      co_return make_error(api_errc::bad_response, "GET " + path + ": more items, but no usable next_start", r->status);
    start = next;
  }
  co_return out;
}

asio::awaitable<api_result<recents_page>> client::recents(std::string since, std::string item, std::int64_t start, int limit) {
  std::string target = "/recents?since_timestamp=" + percent_encode(since) + "&items=" + percent_encode(item) +
                       "&start=" + std::to_string(start) + "&limit=" + std::to_string(limit);
  const std::string what = "GET /recents (" + item + ")";
  auto op = p_->call("GET", target, {});
  auto r = co_await std::move(op);
  if (!r) co_return r.error();
  simdjson::dom::parser parser;
  auto data = p_->data_of(what, parser, *r);
  if (!data) co_return data.error();
  recents_page page;
  simdjson::dom::array arr;
  if (!data->is_null() && data->get_array().get(arr) != simdjson::SUCCESS)
    co_return make_error(api_errc::bad_response, what + ": `data` is not a list", r->status);
  std::size_t listed = 0;
  if (!data->is_null())
    for (simdjson::dom::element e : arr) {
      ++listed;
      if (!e.is_object()) co_return make_error(api_errc::bad_response, what + ": an item is not an object", r->status);
      recent_record rec;
      rec.item = str_field(e, "item");
      simdjson::dom::element d;
      if (e["data"].get(d) != simdjson::SUCCESS || !d.is_object()) continue;  // nothing to store (a null record)
      if (std::int64_t n; e["id"].get_int64().get(n) == simdjson::SUCCESS) rec.id = std::to_string(n);
      else rec.id = str_field(e, "id");
      if (rec.id.empty()) {
        if (std::int64_t n; d["id"].get_int64().get(n) == simdjson::SUCCESS) rec.id = std::to_string(n);
      }
      rec.data = simdjson::to_string(d);
      rec.update_time = str_field(d, "update_time");
      if (rec.update_time.empty()) rec.update_time = str_field(d, "modified");
      rec.add_time = str_field(d, "add_time");
      if (rec.add_time.empty()) rec.add_time = str_field(d, "created");
      if (rec.item.empty() || rec.id.empty())
        co_return make_error(api_errc::bad_response, what + ": an item without `item` or `id`", r->status);
      page.records.push_back(std::move(rec));
    }
  simdjson::dom::element pagination;
  if (parser.parse(r->body)["additional_data"]["pagination"].get(pagination) == simdjson::SUCCESS)
    if (pagination["more_items_in_collection"].get_bool().get(page.more) != simdjson::SUCCESS) page.more = false;
  // The spec gives no next_start for /recents: the next page starts after this one.
  page.next_start = start + static_cast<std::int64_t>(listed);
  if (page.more && listed == 0)
    co_return make_error(api_errc::bad_response, what + ": more items, but an empty page", r->status);
  co_return page;
}

asio::awaitable<api_result<webhook>> client::create_webhook(new_webhook w) {
  boost::json::object body;
  body["subscription_url"] = w.subscription_url;
  body["event_action"] = w.event_action;
  body["event_object"] = w.event_object;
  body["name"] = w.name;
  body["version"] = w.version;
  if (w.user_id != 0) body["user_id"] = w.user_id;
  if (!w.http_auth_user.empty()) body["http_auth_user"] = w.http_auth_user;
  if (!w.http_auth_password.empty()) body["http_auth_password"] = w.http_auth_password;
  auto op = p_->call("POST", "/webhooks", boost::json::serialize(body));
  auto r = co_await std::move(op);
  if (!r) co_return r.error();
  simdjson::dom::parser parser;
  auto data = p_->data_of("POST /webhooks", parser, *r);
  if (!data) co_return data.error();
  if (!data->is_object()) co_return make_error(api_errc::bad_response, "POST /webhooks: `data` is not an object", r->status);
  webhook created = parse_webhook(*data);
  if (created.id == 0) co_return make_error(api_errc::bad_response, "POST /webhooks: the answer has no webhook id", r->status);
  co_return created;
}

asio::awaitable<api_result<void>> client::delete_webhook(std::int64_t id) {
  const std::string path = "/webhooks/" + std::to_string(id);
  auto op = p_->call("DELETE", path, {});
  auto r = co_await std::move(op);
  if (!r) co_return r.error();
  co_return api_result<void>{};
}

void client::cancel() {
  ++p_->generation;
  p_->backoff.cancel();
  p_->conn->cancel();
}

client_stats client::stats() const {
  return {p_->conn->requests_sent(), p_->conn->connections_opened(), p_->retries};
}
std::string client::base_url() const { return p_->base.str(); }

}  // namespace pipehook::pipedrive
