// `http`: POSTs each event to a URL (HTTP or HTTPS) through a pool of kept-alive connections, one
// per concurrent delivery. The body is the original Pipedrive payload or the normalized envelope.
// Headers carry the event key (`webhook-id`), entity and action; with a signing secret the request
// is signed per the Standard Webhooks spec (webhook-id, webhook-timestamp, webhook-signature =
// "v1," + base64 HMAC-SHA256 of "id.timestamp.body"), which Pipedrive itself does not do.
// 2xx: done. 408, 429, 5xx, timeouts, connection errors: retry (Retry-After honoured).
// Any other status: permanent, with the status and a bounded excerpt of the answer.
// Destinations that need more than a static header: a client certificate (client_cert,
// client_key: mTLS), and OAuth 2.0 client credentials (RFC 6749 §4.4): the access token is
// fetched from oauth2_token_url, shared by the deliveries, cached until shortly before its
// expires_in, and refreshed once when the destination answers 401. It is never logged.
#include "handlers.hpp"

#include "pipehook/core/codec.hpp"
#include "pipehook/core/time.hpp"
#include "pipehook/core/use_tuple.hpp"
#include "pipehook/event/json.hpp"
#include "pipehook/http/client.hpp"
#include "pipehook/http/signing.hpp"

#include <boost/asio/steady_timer.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

namespace pipehook::handlers {
namespace {

namespace asio = boost::asio;
using clock = std::chrono::steady_clock;

struct oauth2_options {
  url token_url;
  std::string client_id, client_secret, scope;
  bool secret_in_body = false;  // client_secret_post; else HTTP Basic (client_secret_basic, RFC 6749 §2.3.1)
};

// The access token of OAuth 2.0 client credentials: one fetch at a time, shared by every
// delivery of the handler (on its executor), renewed before it expires.
class token_source {
 public:
  token_source(asio::any_io_executor ex, oauth2_options o, http::client_options co, std::shared_ptr<http::tls_settings> tls)
      : o_(std::move(o)), conn_(ex, o_.token_url, co, std::move(tls)), ready_(ex) {}

  // The cached token, or a fresh one. `rejected`: the token a destination answered 401 to; it is
  // replaced (unless another delivery replaced it meanwhile).
  asio::awaitable<outcome<std::string>> get(std::string rejected = {}) {
    while (fetching_) {
      auto w = ready_.async_wait(use_tuple);
      co_await std::move(w);
    }
    if (!token_.empty() && clock::now() < refresh_at_ && token_ != rejected) co_return token_;
    fetching_ = true;
    ready_.expires_at(clock::time_point::max());
    auto op = fetch();
    auto r = co_await std::move(op);
    fetching_ = false;
    ready_.cancel();  // the deliveries waiting for it
    co_return r;
  }

  void cancel() { conn_.cancel(); }

 private:
  asio::awaitable<outcome<std::string>> fetch() {
    http::client_request req;
    req.method = "POST";
    req.target = o_.token_url.path.empty() ? "/" : o_.token_url.path;
    req.body = "grant_type=client_credentials";
    if (!o_.scope.empty()) req.body += "&scope=" + percent_encode(o_.scope);
    if (o_.secret_in_body)
      req.body += "&client_id=" + percent_encode(o_.client_id) + "&client_secret=" + percent_encode(o_.client_secret);
    req.headers = {{"Content-Type", "application/x-www-form-urlencoded"}, {"Accept", "application/json"}};
    if (!o_.secret_in_body)
      req.headers.emplace_back("Authorization",
                               "Basic " + base64_encode(percent_encode(o_.client_id) + ":" + percent_encode(o_.client_secret)));
    const std::string where = "the OAuth2 token endpoint " + o_.token_url.authority();
    auto op = conn_.request(std::move(req));
    http::client_result r = co_await std::move(op);
    if (!r) co_return make_failure(errc::io_error, where + ": " + r.error().message);
    if (r->status != 200)
      co_return make_failure(errc::io_error, where + " answered HTTP " + std::to_string(r->status) + ": " +
                                                    http::snippet(r->body, 200));
    boost::system::error_code ec;
    const auto v = boost::json::parse(r->body, ec);
    const auto* obj = ec ? nullptr : v.if_object();
    const auto* token = obj ? obj->if_contains("access_token") : nullptr;
    if (!token || !token->is_string() || token->as_string().empty())
      co_return make_failure(errc::io_error, where + " answered 200 without an access_token");
    if (const auto* type = obj->if_contains("token_type");
        type && type->is_string() && ascii_lower(std::string(type->as_string())) != "bearer")
      co_return make_failure(errc::io_error, where + " issued a \"" + std::string(type->as_string()) +
                                                    "\" token; only bearer tokens are supported");
    token_ = std::string(token->as_string());
    // Renewed a little before it expires (a tenth of its life, at most a minute); without
    // expires_in, kept until a destination refuses it.
    refresh_at_ = clock::time_point::max();
    if (const auto* ttl = obj->if_contains("expires_in"); ttl && (ttl->is_int64() || ttl->is_double() || ttl->is_uint64())) {
      const double secs = ttl->is_double() ? ttl->as_double() : ttl->is_int64() ? static_cast<double>(ttl->as_int64())
                                                                                  : static_cast<double>(ttl->as_uint64());
      const double margin = std::min(60.0, secs / 10);
      refresh_at_ = clock::now() + std::chrono::milliseconds(static_cast<std::int64_t>((secs - margin) * 1000));
    }
    co_return token_;
  }

  oauth2_options o_;
  http::client_connection conn_;
  asio::steady_timer ready_;  // cancelled when a fetch ends
  bool fetching_ = false;
  std::string token_;
  clock::time_point refresh_at_{};
};

class http_handler final : public dispatch::handler {
 public:
  struct options {
    url target;
    std::vector<std::pair<std::string, std::string>> headers;
    bool envelope = false;
    std::string key;  // signing key bytes; empty: unsigned
  };

  http_handler(asio::any_io_executor ex, options o, http::client_options co, std::shared_ptr<http::tls_settings> tls,
               unsigned pool_size, std::unique_ptr<token_source> oauth2)
      : o_(std::move(o)), oauth2_(std::move(oauth2)) {
    for (unsigned i = 0; i < pool_size; ++i)
      pool_.push_back(std::make_unique<http::client_connection>(ex, o_.target, co, tls));
  }

  asio::awaitable<dispatch::delivery_result> deliver(const event::stored_event& se) override {
    http::client_connection* conn = nullptr;
    for (auto& c : pool_)
      if (!c->busy()) {
        conn = c.get();
        break;
      }
    if (!conn) co_return dispatch::delivery_result::retry("no free connection (more deliveries than concurrency)");

    const std::string body = o_.envelope ? boost::json::serialize(event::to_json_envelope(se)) : se.ev.body;
    std::string token;
    if (oauth2_) {
      auto get = oauth2_->get();
      auto t = co_await std::move(get);
      if (!t) co_return dispatch::delivery_result::retry(t.error().message);
      token = *t;
    }
    auto op = conn->request(make_request(se, body, token));
    http::client_result r = co_await std::move(op);
    // 401 with a token: it may have been revoked or expired early; one fresh token, one more try.
    if (r && r->status == 401 && oauth2_) {
      auto get = oauth2_->get(token);
      auto t = co_await std::move(get);
      if (!t) co_return dispatch::delivery_result::retry(t.error().message);
      token = *t;
      auto again = conn->request(make_request(se, body, token));
      r = co_await std::move(again);
      if (r && r->status == 401)
        co_return dispatch::delivery_result::retry("HTTP 401 from " + o_.target.authority() +
                                                   " even with a fresh OAuth2 token: " + http::snippet(r->body, 200));
    }
    if (!r) co_return dispatch::delivery_result::retry(r.error().message);
    const unsigned status = r->status;
    if (status >= 200 && status < 300) co_return dispatch::delivery_result::ok();
    const std::string what = "HTTP " + std::to_string(status) + " from " + o_.target.authority() + ": " +
                             http::snippet(r->body, 200);
    if (status == 408 || status == 429 || status >= 500) {
      std::optional<std::chrono::milliseconds> after;
      if (auto s = http::seconds_header(r->header("retry-after")))
        after = std::chrono::milliseconds(static_cast<std::int64_t>(*s * 1000));
      co_return dispatch::delivery_result::retry(what, after);
    }
    co_return dispatch::delivery_result::permanent(what);
  }

  void cancel() override {
    for (auto& c : pool_) c->cancel();
    if (oauth2_) oauth2_->cancel();
  }

 private:
  http::client_request make_request(const event::stored_event& se, const std::string& body, const std::string& token) const {
    http::client_request req;
    req.method = "POST";
    req.target = o_.target.path.empty() ? "/" : o_.target.path;
    req.idempotent = false;  // never resent blindly; the outbox retries with the same webhook-id
    req.body = body;
    const std::string ts = std::to_string(now_us() / 1'000'000);
    req.headers = {{"Content-Type", "application/json"},
                   {"webhook-id", se.ev.event_key},
                   {"webhook-timestamp", ts},
                   {"X-Pipehook-Entity", se.ev.entity},
                   {"X-Pipehook-Action", se.ev.action},
                   {"X-Pipehook-Entity-Id", se.ev.entity_id},
                   {"X-Pipehook-Event-Id", std::to_string(se.id)}};
    if (!o_.key.empty()) req.headers.emplace_back("webhook-signature", http::webhook_signature(o_.key, se.ev.event_key, ts, req.body));
    for (const auto& h : o_.headers) req.headers.push_back(h);
    if (!token.empty()) req.headers.emplace_back("Authorization", "Bearer " + token);
    return req;
  }

  options o_;
  std::unique_ptr<token_source> oauth2_;  // with oauth2_token_url
  std::vector<std::unique_ptr<http::client_connection>> pool_;
};

outcome<std::unique_ptr<dispatch::handler>> make_http(const config::handler_config& h, dispatch::settings_reader& s,
                                                      asio::any_io_executor ex) {
  const auto env = config::process_env();
  http_handler::options o;
  auto url_text = s.string("url");
  if (!url_text) return url_text.error();
  if (url_text->empty()) return make_failure(errc::invalid_config, s.name("url") + " is required");
  auto target = parse_url(*url_text, s.name("url"), true);
  if (!target) return target.error();
  o.target = *target;
  auto headers = s.table("headers");
  if (!headers) return headers.error();
  for (const auto& [k, v] : *headers) {
    auto value = dispatch::expand_env(v, s.name("headers") + "." + k, env);
    if (!value) return value.error();
    o.headers.emplace_back(k, *value);
  }
  auto body = s.one_of("body", "original", {"original", "envelope"});
  if (!body) return body.error();
  o.envelope = *body == "envelope";
  auto secret = s.string("signing_secret");
  if (!secret) return secret.error();
  if (!secret->empty()) {
    auto expanded = dispatch::expand_env(*secret, s.name("signing_secret"), env);
    if (!expanded) return expanded.error();
    auto key = http::signing_key(*expanded, s.name("signing_secret"));
    if (!key) return key.error();
    o.key = *key;
  }
  http::client_options co;
  auto timeout = s.duration_ms("timeout", 10'000, 100, 600'000);
  if (!timeout) return timeout.error();
  co.timeout_ms = *timeout;
  auto connect_timeout = s.duration_ms("connect_timeout", 5'000, 100, 600'000);
  if (!connect_timeout) return connect_timeout.error();
  co.connect_timeout_ms = *connect_timeout;
  auto ca = s.string("ca_file");
  if (!ca) return ca.error();
  auto cert = s.string("client_cert");
  if (!cert) return cert.error();
  auto key = s.string("client_key");
  if (!key) return key.error();
  auto tls = http::make_tls_settings(*ca, s.name("ca_file"), *cert, *key, h.where + ".");
  if (!tls) return tls.error();
  if ((!cert->empty()) && o.target.scheme != "https")
    return make_failure(errc::invalid_config, s.name("client_cert") + " needs an https url");
  // OAuth 2.0 client credentials.
  std::unique_ptr<token_source> oauth2;
  auto token_url = s.string("oauth2_token_url");
  if (!token_url) return token_url.error();
  auto client_id = s.string("oauth2_client_id");
  if (!client_id) return client_id.error();
  auto secret_inline = s.string("oauth2_client_secret");
  if (!secret_inline) return secret_inline.error();
  auto secret_file = s.string("oauth2_client_secret_file");
  if (!secret_file) return secret_file.error();
  auto scope = s.string("oauth2_scope");
  if (!scope) return scope.error();
  auto client_auth = s.one_of("oauth2_client_auth", "basic", {"basic", "post"});
  if (!client_auth) return client_auth.error();
  if (!token_url->empty()) {
    oauth2_options oo;
    auto tu = parse_url(*token_url, s.name("oauth2_token_url"), true);
    if (!tu) return tu.error();
    oo.token_url = *tu;
    if (client_id->empty()) return make_failure(errc::invalid_config, s.name("oauth2_token_url") + " needs " + s.name("oauth2_client_id"));
    oo.client_id = *client_id;
    if (secret_inline->empty() == secret_file->empty())
      return make_failure(errc::invalid_config, s.name("oauth2_token_url") + " needs one of " + s.name("oauth2_client_secret") +
                                                    " (\"${ENV}\") or " + s.name("oauth2_client_secret_file"));
    if (!secret_file->empty()) {
      std::vector<std::string> warnings;
      auto secret = config::read_secret_file(*secret_file, s.name("oauth2_client_secret_file"), warnings);
      if (!secret) return secret.error();
      oo.client_secret = *secret;
    } else {
      auto secret = dispatch::expand_env(*secret_inline, s.name("oauth2_client_secret"), env);
      if (!secret) return secret.error();
      oo.client_secret = *secret;
    }
    oo.scope = *scope;
    oo.secret_in_body = *client_auth == "post";
    for (const auto& [k, v] : o.headers)
      if (ascii_lower(k) == "authorization")
        return make_failure(errc::invalid_config, s.name("headers") + ".Authorization and " + s.name("oauth2_token_url") +
                                                      " both set the Authorization header: keep one");
    auto token_tls = http::make_tls_settings(*ca, s.name("ca_file"));
    if (!token_tls) return token_tls.error();
    oauth2 = std::make_unique<token_source>(ex, std::move(oo), co, std::move(*token_tls));
  } else if (!client_id->empty() || !secret_inline->empty() || !secret_file->empty() || !scope->empty()) {
    return make_failure(errc::invalid_config, s.name("oauth2_client_id") + " and the other oauth2_ keys need " + s.name("oauth2_token_url"));
  }
  return std::make_unique<http_handler>(ex, std::move(o), co, std::move(*tls), h.concurrency, std::move(oauth2));
}

}  // namespace

void register_http() { dispatch::register_handler_type("http", make_http); }

}  // namespace pipehook::handlers
