// `http`: POSTs each event to a URL (HTTP or HTTPS) through a pool of kept-alive connections, one
// per concurrent delivery. The body is the original Pipedrive payload or the normalized envelope.
// Headers carry the event key (`webhook-id`), entity and action; with a signing secret the request
// is signed per the Standard Webhooks spec (webhook-id, webhook-timestamp, webhook-signature =
// "v1," + base64 HMAC-SHA256 of "id.timestamp.body"), which Pipedrive itself does not do.
// 2xx: done. 408, 429, 5xx, timeouts, connection errors: retry (Retry-After honoured).
// Any other status: permanent, with the status and a bounded excerpt of the answer.
#include "handlers.hpp"

#include "pipehook/core/time.hpp"
#include "pipehook/event/json.hpp"
#include "pipehook/http/client.hpp"
#include "pipehook/http/signing.hpp"

#include <boost/json/serialize.hpp>

namespace pipehook::handlers {
namespace {

namespace asio = boost::asio;

class http_handler final : public dispatch::handler {
 public:
  struct options {
    url target;
    std::vector<std::pair<std::string, std::string>> headers;
    bool envelope = false;
    std::string key;  // signing key bytes; empty: unsigned
  };

  http_handler(asio::any_io_executor ex, options o, http::client_options co, std::shared_ptr<http::tls_settings> tls,
               unsigned pool_size)
      : o_(std::move(o)) {
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

    http::client_request req;
    req.method = "POST";
    req.target = o_.target.path.empty() ? "/" : o_.target.path;
    req.idempotent = false;  // never resent blindly; the outbox retries with the same webhook-id
    req.body = o_.envelope ? boost::json::serialize(event::to_json_envelope(se)) : se.ev.body;
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

    auto op = conn->request(std::move(req));
    http::client_result r = co_await std::move(op);
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
  }

 private:
  options o_;
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
  auto tls = http::make_tls_settings(*ca, s.name("ca_file"));
  if (!tls) return tls.error();
  return std::make_unique<http_handler>(ex, std::move(o), co, std::move(*tls), h.concurrency);
}

}  // namespace

void register_http() { dispatch::register_handler_type("http", make_http); }

}  // namespace pipehook::handlers
