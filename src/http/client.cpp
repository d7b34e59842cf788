#include "pipehook/http/client.hpp"

#include "pipehook/core/use_tuple.hpp"

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
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include <charconv>
#include <chrono>

namespace pipehook::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;
using clock = std::chrono::steady_clock;

// A kept-alive connection idle longer than this is not reused: servers close idle connections
// (often after 5 s) and a request written into a closing connection fails halfway.
constexpr auto reuse_window = std::chrono::seconds(4);

struct tls_settings {
  ssl::context ctx{ssl::context::tls_client};
};

outcome<std::shared_ptr<tls_settings>> make_tls_settings(const std::string& ca_file, std::string_view ca_key_name) {
  auto t = std::make_shared<tls_settings>();
  boost::system::error_code ec;
  t->ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                         ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1,
                     ec);
  t->ctx.set_default_verify_paths(ec);
  if (ec) return make_failure(errc::io_error, "cannot load the system CA certificates: " + ec.message());
  if (!ca_file.empty()) {
    t->ctx.load_verify_file(ca_file, ec);
    if (ec)
      return make_failure(errc::invalid_config, std::string(ca_key_name) + " \"" + ca_file +
                                                    "\": cannot load it as PEM certificates: " + ec.message());
  }
  return t;
}

outcome<std::shared_ptr<tls_settings>> make_tls_settings(const std::string& ca_file, std::string_view ca_key_name,
                                                         const std::string& cert_file, const std::string& key_file,
                                                         std::string_view key_prefix) {
  auto t = make_tls_settings(ca_file, ca_key_name);
  if (!t || (cert_file.empty() && key_file.empty())) return t;
  const std::string cert_key = std::string(key_prefix) + "client_cert", key_key = std::string(key_prefix) + "client_key";
  if (cert_file.empty() || key_file.empty())
    return make_failure(errc::invalid_config, cert_key + " and " + key_key + " go together: set both, or neither");
  boost::system::error_code ec;
  (*t)->ctx.use_certificate_chain_file(cert_file, ec);
  if (ec) return make_failure(errc::invalid_config, cert_key + " \"" + cert_file + "\": cannot load it as a PEM certificate: " + ec.message());
  (*t)->ctx.use_private_key_file(key_file, ssl::context::pem, ec);
  if (ec)
    return make_failure(errc::invalid_config, key_key + " \"" + key_file + "\": cannot load it as the PEM private key of " +
                                                  cert_key + ": " + ec.message());
  if (SSL_CTX_check_private_key((*t)->ctx.native_handle()) != 1)
    return make_failure(errc::invalid_config, key_key + " \"" + key_file + "\" is not the key of " + cert_key + " \"" + cert_file + "\"");
  return t;
}

std::string client_response::header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (k == name) return v;
  return {};
}

std::optional<double> seconds_header(std::string_view v) {
  while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
  double d = 0;
  auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), d);
  if (ec != std::errc() || d < 0) return std::nullopt;
  return d;
}

std::string snippet(std::string_view body, std::size_t max) {
  std::string out;
  for (char c : body.substr(0, max)) out += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? ' ' : c;
  if (body.size() > max) out += "...";
  return out;
}

namespace {

bool is_ip_literal(const std::string& host) {
  boost::system::error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

client_error make_error(client_errc kind, std::string message) { return {kind, std::move(message), false}; }

struct exchange_result {
  enum stage_t { sending, waiting, reading };
  boost::system::error_code ec;
  stage_t stage = sending;  // where it failed
};

}  // namespace

struct client_connection::impl {
  asio::any_io_executor ex;
  url origin;
  client_options opts;
  std::shared_ptr<tls_settings> tls;
  std::optional<beast::tcp_stream> plain;
  std::optional<beast::ssl_stream<beast::tcp_stream>> secure;
  clock::time_point last_used{};
  tcp::resolver resolver;
  std::uint64_t generation = 0;  // cancel() bumps it
  std::uint64_t connections = 0, requests = 0;
  bool in_request = false;

  impl(asio::any_io_executor e, url o, client_options c, std::shared_ptr<tls_settings> t)
      : ex(e), origin(std::move(o)), opts(c), tls(std::move(t)), resolver(e) {}

  bool connected() const { return plain.has_value() || secure.has_value(); }
  tcp::socket& socket() { return secure ? beast::get_lowest_layer(*secure).socket() : plain->socket(); }

  void drop() {  // only when no operation is pending on the stream
    boost::system::error_code ec;
    if (connected()) socket().close(ec);
    plain.reset();
    secure.reset();
  }

  std::string where() const { return origin.authority(); }

  // A failure without an answer; `limit_ms` is the deadline that applied to that stage.
  client_error transport_error(const char* stage, const boost::system::error_code& ec, std::int64_t limit_ms) {
    if (ec == beast::error::timeout)
      return make_error(client_errc::timeout,
                        std::string(stage) + " " + where() + " timed out (" + std::to_string(limit_ms) + " ms)");
    return make_error(client_errc::unreachable, std::string(stage) + " " + where() + " failed: " + ec.message());
  }

  asio::awaitable<std::optional<client_error>> connect() {
    ++connections;
    asio::steady_timer guard(ex);  // the resolver has no deadline of its own
    guard.expires_after(std::chrono::milliseconds(opts.connect_timeout_ms));
    guard.async_wait([r = &resolver](boost::system::error_code ec) {
      if (!ec) r->cancel();
    });
    const std::string port = std::to_string(origin.port);
    auto resolve = resolver.async_resolve(origin.host, port, use_tuple);
    auto [rec, results] = co_await std::move(resolve);
    guard.cancel();
    if (rec == asio::error::operation_aborted)
      co_return make_error(client_errc::timeout, "resolving " + origin.host + " timed out");
    if (rec) co_return make_error(client_errc::unreachable, "cannot resolve " + origin.host + ": " + rec.message());

    if (!origin.tls()) {
      plain.emplace(ex);
      plain->expires_after(std::chrono::milliseconds(opts.connect_timeout_ms));
      auto op = plain->async_connect(results, use_tuple);
      auto [cec, ep] = co_await std::move(op);
      if (cec) {
        drop();
        co_return transport_error("connecting to", cec, opts.connect_timeout_ms);
      }
      co_return std::nullopt;
    }

    secure.emplace(ex, tls->ctx);
    if (!is_ip_literal(origin.host)) SSL_set_tlsext_host_name(secure->native_handle(), origin.host.c_str());  // SNI
    secure->set_verify_mode(ssl::verify_peer);
    secure->set_verify_callback(ssl::host_name_verification(origin.host));
    auto& lowest = beast::get_lowest_layer(*secure);
    lowest.expires_after(std::chrono::milliseconds(opts.connect_timeout_ms));
    auto op = lowest.async_connect(results, use_tuple);
    auto [cec, ep] = co_await std::move(op);
    if (cec) {
      drop();
      co_return transport_error("connecting to", cec, opts.connect_timeout_ms);
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
      if (timed_out) co_return transport_error("TLS handshake with", hec, opts.connect_timeout_ms);
      co_return make_error(client_errc::tls, "TLS handshake with " + where() + " failed: " + why);
    }
    co_return std::nullopt;
  }

  template <class Stream>
  asio::awaitable<exchange_result> exchange_on(Stream& s, bhttp::request<bhttp::string_body>& req,
                                               client_response& out) {
    beast::get_lowest_layer(s).expires_after(std::chrono::milliseconds(opts.timeout_ms));
    auto w = bhttp::async_write(s, req, use_tuple);
    auto [wec, wn] = co_await std::move(w);
    if (wec) co_return exchange_result{wec, exchange_result::sending};
    beast::flat_buffer buffer;
    bhttp::response_parser<bhttp::string_body> parser;
    parser.body_limit(opts.body_limit);
    auto r = bhttp::async_read(s, buffer, parser, use_tuple);
    auto [rec, rn] = co_await std::move(r);
    if (rec) co_return exchange_result{rec, parser.got_some() ? exchange_result::reading : exchange_result::waiting};
    auto res = parser.release();
    out.status = res.result_int();
    out.reason = std::string(res.reason());
    for (const auto& f : res) {
      std::string name(f.name_string());
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      out.headers.emplace_back(std::move(name), std::string(f.value()));
    }
    out.body = std::move(res.body());
    if (!res.keep_alive()) drop();
    co_return exchange_result{};
  }

  asio::awaitable<client_result> run(bhttp::request<bhttp::string_body>& req, bool idempotent) {
    for (int round = 0;; ++round) {
      const bool reused = connected() && socket().is_open() && clock::now() - last_used < reuse_window;
      if (connected() && !reused) drop();  // idle too long, or closed by cancel()
      if (!connected()) {
        auto c = connect();
        if (auto err = co_await std::move(c)) co_return *err;
      }
      client_response out;
      ++requests;
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
      client_error e = transport_error(stages[r.stage], ec, opts.timeout_ms);
      if (ec == bhttp::error::body_limit)
        e = make_error(client_errc::bad_response,
                       "the answer from " + where() + " is larger than " + std::to_string(opts.body_limit) + " bytes");
      e.may_have_applied = !idempotent;
      co_return e;
    }
  }
};

client_connection::client_connection(asio::any_io_executor ex, url origin, client_options opts,
                                     std::shared_ptr<tls_settings> tls)
    : p_(std::make_unique<impl>(ex, std::move(origin), opts, std::move(tls))) {}
client_connection::~client_connection() = default;

asio::awaitable<client_result> client_connection::request(client_request r) {
  const std::uint64_t gen = p_->generation;
  bhttp::request<bhttp::string_body> req;
  req.method_string(r.method);
  req.target(r.target);
  req.version(11);
  req.set(bhttp::field::host, p_->origin.authority());
  req.set(bhttp::field::user_agent, "pipehook/" PIPEHOOK_VERSION);
  for (const auto& [k, v] : r.headers) req.set(k, v);
  req.body() = std::move(r.body);
  req.prepare_payload();
  p_->in_request = true;
  auto op = p_->run(req, r.idempotent);
  client_result out = co_await std::move(op);
  p_->in_request = false;
  if (p_->generation != gen) co_return make_error(client_errc::cancelled, "cancelled");
  co_return out;
}

void client_connection::cancel() {
  ++p_->generation;
  p_->resolver.cancel();
  boost::system::error_code ec;
  if (p_->connected()) p_->socket().close(ec);  // pending operations complete with an error
}

bool client_connection::busy() const { return p_->in_request; }
std::uint64_t client_connection::connections_opened() const { return p_->connections; }
std::uint64_t client_connection::requests_sent() const { return p_->requests; }

}  // namespace pipehook::http
