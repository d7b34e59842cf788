#include "pipehook/pipedrive/client.hpp"

#include "pipehook/core/url.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <simdjson.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <chrono>
#include <optional>
#include <random>

namespace pipehook::pipedrive {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;
using tuple_awaitable_t = asio::as_tuple_t<asio::use_awaitable_t<>>;
constexpr tuple_awaitable_t use_tuple{};
using clock = std::chrono::steady_clock;

bool api_error::transient() const {
  return kind == api_errc::rate_limited || kind == api_errc::server_error || kind == api_errc::unreachable ||
         kind == api_errc::timeout;
}

namespace {

constexpr std::size_t response_body_limit = 8 * 1024 * 1024;
// A kept-alive connection idle longer than this is not reused: servers close idle connections
// (often after 5 s) and a request written into a closing connection fails halfway.
constexpr auto reuse_window = std::chrono::seconds(4);

struct exchange_result {
  enum stage_t { sending, waiting, reading };
  boost::system::error_code ec;
  stage_t stage = sending;  // where it failed
};

struct raw_response {
  unsigned status = 0;
  std::string reason;
  std::string content_type;
  std::string body;
  std::optional<double> wait_hint_s;  // x-ratelimit-reset or Retry-After, in seconds
};

api_error make_error(api_errc kind, std::string message, unsigned status = 0) {
  api_error e;
  e.kind = kind;
  e.status = status;
  e.message = std::move(message);
  return e;
}

std::optional<double> seconds_header(std::string_view v) {
  while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
  double d = 0;
  auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), d);
  if (ec != std::errc() || d < 0) return std::nullopt;
  return d;
}

bool is_ip_literal(const std::string& host) {
  boost::system::error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

// Bounded, printable excerpt of a response that was not what we expected.
std::string snippet(std::string_view body) {
  std::string out;
  for (char c : body.substr(0, 160)) out += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? ' ' : c;
  if (body.size() > 160) out += "...";
  return out;
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
  asio::any_io_executor ex;
  config::pipedrive_config cfg;
  url base;
  ssl::context tls{ssl::context::tls_client};
  std::optional<beast::tcp_stream> plain;
  std::optional<beast::ssl_stream<beast::tcp_stream>> secure;
  clock::time_point last_used{};
  tcp::resolver resolver;
  asio::steady_timer backoff;
  std::uint64_t generation = 0;  // cancel() bumps it; a call that sees it change stops
  client_stats stats;
  std::mt19937_64 rng{std::random_device{}()};

  impl(asio::any_io_executor e, config::pipedrive_config c) : ex(e), cfg(std::move(c)), resolver(e), backoff(e) {}

  bool connected() const { return plain.has_value() || secure.has_value(); }

  tcp::socket& socket() { return secure ? beast::get_lowest_layer(*secure).socket() : plain->socket(); }

  void drop() {  // only when no operation is pending on the stream
    boost::system::error_code ec;
    if (connected()) socket().close(ec);
    plain.reset();
    secure.reset();
  }

  std::string where() const { return base.authority(); }

  // A failure without an answer; `limit_ms` is the deadline that applied to that stage.
  api_error transport_error(const char* stage, const boost::system::error_code& ec, std::int64_t limit_ms) {
    if (ec == beast::error::timeout)
      return make_error(api_errc::timeout,
                        std::string(stage) + " " + where() + " timed out (" + std::to_string(limit_ms) + " ms)");
    return make_error(api_errc::unreachable, std::string(stage) + " " + where() + " failed: " + ec.message());
  }

  asio::awaitable<std::optional<api_error>> connect() {
    ++stats.connections;
    asio::steady_timer guard(ex);  // the resolver has no deadline of its own
    guard.expires_after(std::chrono::milliseconds(cfg.connect_timeout_ms));
    guard.async_wait([r = &resolver](boost::system::error_code ec) {
      if (!ec) r->cancel();
    });
    const std::string port = std::to_string(base.port);
    auto resolve = resolver.async_resolve(base.host, port, use_tuple);
    auto [rec, results] = co_await std::move(resolve);
    guard.cancel();
    if (rec == asio::error::operation_aborted)
      co_return make_error(api_errc::timeout, "resolving " + base.host + " timed out");
    if (rec) co_return make_error(api_errc::unreachable, "cannot resolve " + base.host + ": " + rec.message());

    if (!base.tls()) {
      plain.emplace(ex);
      plain->expires_after(std::chrono::milliseconds(cfg.connect_timeout_ms));
      auto op = plain->async_connect(results, use_tuple);
      auto [cec, ep] = co_await std::move(op);
      if (cec) {
        drop();
        co_return transport_error("connecting to", cec, cfg.connect_timeout_ms);
      }
      co_return std::nullopt;
    }

    secure.emplace(ex, tls);
    if (!is_ip_literal(base.host)) SSL_set_tlsext_host_name(secure->native_handle(), base.host.c_str());  // SNI
    secure->set_verify_mode(ssl::verify_peer);
    secure->set_verify_callback(ssl::host_name_verification(base.host));
    auto& lowest = beast::get_lowest_layer(*secure);
    lowest.expires_after(std::chrono::milliseconds(cfg.connect_timeout_ms));
    auto op = lowest.async_connect(results, use_tuple);
    auto [cec, ep] = co_await std::move(op);
    if (cec) {
      drop();
      co_return transport_error("connecting to", cec, cfg.connect_timeout_ms);
    }
    auto hs = secure->async_handshake(ssl::stream_base::client, use_tuple);
    auto [hec] = co_await std::move(hs);
    if (hec) {
      std::string why = hec.message();
      const long verify = SSL_get_verify_result(secure->native_handle());
      if (verify != X509_V_OK) why += std::string(" (") + X509_verify_cert_error_string(verify) + ")";
      if (hec == asio::error::eof || hec == asio::ssl::error::stream_truncated)
        why = "the server closed the connection during the handshake (is it speaking TLS?)";
      const bool timed_out = hec == beast::error::timeout;
      drop();
      if (timed_out) co_return transport_error("TLS handshake with", hec, cfg.connect_timeout_ms);
      co_return make_error(api_errc::tls, "TLS handshake with " + where() + " failed: " + why);
    }
    co_return std::nullopt;
  }

  template <class Stream>
  asio::awaitable<exchange_result> exchange_on(Stream& s, bhttp::request<bhttp::string_body>& req, raw_response& out) {
    beast::get_lowest_layer(s).expires_after(std::chrono::milliseconds(cfg.timeout_ms));
    auto w = bhttp::async_write(s, req, use_tuple);
    auto [wec, wn] = co_await std::move(w);
    if (wec) co_return exchange_result{wec, exchange_result::sending};
    beast::flat_buffer buffer;
    bhttp::response_parser<bhttp::string_body> parser;
    parser.body_limit(response_body_limit);
    auto r = bhttp::async_read(s, buffer, parser, use_tuple);
    auto [rec, rn] = co_await std::move(r);
    if (rec) co_return exchange_result{rec, parser.got_some() ? exchange_result::reading : exchange_result::waiting};
    auto res = parser.release();
    out.status = res.result_int();
    out.reason = std::string(res.reason());
    out.content_type = std::string(res[bhttp::field::content_type]);
    out.body = std::move(res.body());
    for (const char* h : {"x-ratelimit-reset", "retry-after"}) {
      auto it = res.find(h);
      if (it == res.end()) continue;
      if (auto v = seconds_header(it->value())) out.wait_hint_s = std::max(out.wait_hint_s.value_or(0.0), *v);
    }
    if (!res.keep_alive()) drop();
    co_return exchange_result{};
  }

  // One request on the kept-alive connection (or a new one).
  asio::awaitable<api_result<raw_response>> attempt(bhttp::request<bhttp::string_body>& req, bool idempotent) {
    for (int round = 0;; ++round) {
      const bool reused = connected() && socket().is_open() && clock::now() - last_used < reuse_window;
      if (connected() && (!reused || !socket().is_open())) drop();  // idle too long, or closed by cancel()
      if (!connected()) {
        auto c = connect();
        if (auto err = co_await std::move(c)) co_return *err;
      }
      raw_response out;
      ++stats.requests;
      exchange_result r;
      if (secure) {
        auto op = exchange_on(*secure, req, out);
        r = co_await std::move(op);
      } else {
        auto op = exchange_on(*plain, req, out);
        r = co_await std::move(op);
      }
      last_used = clock::now();
      const auto ec = r.ec;
      if (!ec) co_return out;
      drop();
      // A reused connection the server had already closed: nothing was processed, send again.
      if (reused && r.stage != exchange_result::reading && idempotent && round == 0 && ec != beast::error::timeout)
        continue;
      static constexpr const char* stages[] = {"sending the request to", "waiting for the answer from",
                                               "reading the answer from"};
      api_error e = transport_error(stages[r.stage], ec, cfg.timeout_ms);
      e.may_have_applied = !idempotent;
      if (ec == bhttp::error::body_limit)
        e = make_error(api_errc::bad_response, "the answer from " + where() + " is larger than 8 MiB");
      co_return e;
    }
  }

  api_error from_status(const std::string& what, const raw_response& r) {
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    std::string detail;
    const bool json = parser.parse(r.body).get(doc) == simdjson::SUCCESS && doc.is_object();
    if (json) detail = envelope_detail(doc);
    if (detail.empty() && !r.body.empty() && !json) detail = "non-JSON answer: " + snippet(r.body);
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

  std::chrono::milliseconds backoff_for(unsigned attempt) {
    const double cap = static_cast<double>(cfg.retry_max_ms);
    const double full = std::min(cap, static_cast<double>(cfg.retry_base_ms) * std::pow(2.0, attempt - 1));
    std::uniform_real_distribution<double> jitter(0.5, 1.0);  // "equal jitter": never less than half
    return std::chrono::milliseconds(static_cast<std::int64_t>(full * jitter(rng)));
  }

  // One API call: send, classify, retry what is worth retrying.
  asio::awaitable<api_result<raw_response>> call(bhttp::verb verb, std::string path, std::string body) {
    const std::string what = std::string(bhttp::to_string(verb)) + " " + path;
    const bool idempotent = verb != bhttp::verb::post;
    const std::uint64_t gen = generation;
    bhttp::request<bhttp::string_body> req{verb, base.path + path, 11};
    req.set(bhttp::field::host, base.authority());
    req.set(bhttp::field::user_agent, "pipehook/" PIPEHOOK_VERSION);
    req.set(bhttp::field::accept, "application/json");
    if (!cfg.oauth_token.empty()) req.set(bhttp::field::authorization, "Bearer " + cfg.oauth_token);
    else req.set("x-api-token", cfg.api_token);
    if (!body.empty()) {
      req.set(bhttp::field::content_type, "application/json");
      req.body() = std::move(body);
    }
    req.prepare_payload();

    for (unsigned n = 1;; ++n) {
      auto op = attempt(req, idempotent);
      api_result<raw_response> r = co_await std::move(op);
      if (generation != gen) co_return make_error(api_errc::cancelled, what + ": cancelled");
      api_error e;
      std::optional<double> hint;
      if (r) {
        if (r->status >= 200 && r->status < 300) co_return r;
        e = from_status(what, *r);
        hint = r->wait_hint_s;
        // A server error on a create may have created the webhook: the caller re-reads first.
        if (!idempotent && r->status >= 500) e.may_have_applied = true;
      } else {
        e = r.error();
        e.message = what + ": " + e.message;
      }
      const bool more = e.transient() && n < cfg.max_attempts && !e.may_have_applied;
      if (!more) {
        if (n > 1) e.message += " (after " + std::to_string(n) + " attempts)";
        co_return e;
      }
      auto wait = backoff_for(n);
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
      ++stats.retries;
      backoff.expires_after(wait);
      auto w = backoff.async_wait(use_tuple);
      co_await std::move(w);
      if (generation != gen) co_return make_error(api_errc::cancelled, what + ": cancelled");
    }
  }

  // Parses a 2xx body: the success envelope with its `data`.
  api_result<simdjson::dom::element> data_of(const std::string& what, simdjson::dom::parser& parser,
                                             const raw_response& r) {
    simdjson::dom::element doc;
    if (parser.parse(r.body).get(doc) != simdjson::SUCCESS || !doc.is_object())
      return make_error(api_errc::bad_response, what + ": the answer is not a JSON object: " + snippet(r.body), r.status);
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
  auto p = std::make_unique<impl>(ex, cfg);
  p->base = *base;
  while (!p->base.path.empty() && p->base.path.back() == '/') p->base.path.pop_back();
  boost::system::error_code ec;
  p->tls.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                         ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1,
                     ec);
  p->tls.set_default_verify_paths(ec);
  if (ec) return make_failure(errc::io_error, "cannot load the system CA certificates: " + ec.message());
  if (!cfg.ca_file.empty()) {
    p->tls.load_verify_file(cfg.ca_file, ec);
    if (ec)
      return make_failure(errc::invalid_config,
                          "pipedrive.ca_file \"" + cfg.ca_file + "\": cannot load it as PEM certificates: " + ec.message());
  }
  return std::unique_ptr<client>(new client(std::move(p)));
}

asio::awaitable<api_result<current_user>> client::whoami() {
  auto op = p_->call(bhttp::verb::get, "/users/me", {});
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
  auto op = p_->call(bhttp::verb::get, "/webhooks", {});
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
  auto op = p_->call(bhttp::verb::post, "/webhooks", boost::json::serialize(body));
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
  auto op = p_->call(bhttp::verb::delete_, path, {});
  auto r = co_await std::move(op);
  if (!r) co_return r.error();
  co_return api_result<void>{};
}

void client::cancel() {
  ++p_->generation;
  p_->backoff.cancel();
  p_->resolver.cancel();
  boost::system::error_code ec;
  if (p_->connected()) p_->socket().close(ec);  // pending operations complete with an error
}

client_stats client::stats() const { return p_->stats; }
std::string client::base_url() const { return p_->base.str(); }

}  // namespace pipehook::pipedrive
