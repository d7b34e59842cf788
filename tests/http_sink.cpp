#include "http_sink.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <atomic>
#include <list>
#include <thread>

namespace pipehook::test {

namespace asio = boost::asio;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

self_signed make_self_signed_localhost() {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  X509* x = X509_new();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), 86400);
  X509_set_pubkey(x, key);
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
  X509_set_issuer_name(x, name);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, x, x, nullptr, nullptr, 0);
  for (auto [nid, value] : {std::pair{NID_subject_alt_name, "DNS:localhost"},
                            std::pair{NID_basic_constraints, "critical,CA:TRUE"}}) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
  }
  X509_sign(x, key, EVP_sha256());
  auto to_pem = [](auto write) {
    BIO* bio = BIO_new(BIO_s_mem());
    write(bio);
    char* data = nullptr;
    const long n = BIO_get_mem_data(bio, &data);
    std::string out(data, static_cast<std::size_t>(n));
    BIO_free(bio);
    return out;
  };
  self_signed s;
  s.cert_pem = to_pem([&](BIO* b) { PEM_write_bio_X509(b, x); });
  s.key_pem = to_pem([&](BIO* b) { PEM_write_bio_PrivateKey(b, key, nullptr, nullptr, 0, nullptr, nullptr); });
  X509_free(x);
  EVP_PKEY_free(key);
  return s;
}

struct http_test_server::impl {
  answer_fn answer;
  asio::io_context ioc;
  tcp::acceptor acceptor{ioc};
  std::optional<asio::ssl::context> tls;
  std::thread accept_thread;
  std::atomic<bool> stopping{false};
  mutable std::mutex mu;
  std::vector<recorded_request> log;
  std::list<std::shared_ptr<tcp::socket>> sockets;
  std::list<std::thread> workers;

  template <class Stream>
  void serve(Stream& stream) {
    boost::beast::flat_buffer buffer;
    for (;;) {
      bhttp::request<bhttp::string_body> req;
      boost::system::error_code ec;
      bhttp::read(stream, buffer, req, ec);
      if (ec) return;
      recorded_request r;
      r.method = std::string(req.method_string());
      r.target = std::string(req.target());
      r.body = req.body();
      for (const auto& f : req) {
        std::string name(f.name_string());
        for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        r.headers[name] = std::string(f.value());
      }
      {
        std::lock_guard lk(mu);
        log.push_back(r);
      }
      canned_response a = answer(r);
      bhttp::response<bhttp::string_body> res{static_cast<bhttp::status>(a.status), 11};
      res.set(bhttp::field::content_type, a.content_type);
      for (const auto& [k, v] : a.headers) res.set(k, v);
      res.body() = a.body;
      res.keep_alive(req.keep_alive());
      res.prepare_payload();
      bhttp::write(stream, res, ec);
      if (ec || !req.keep_alive() || stopping) return;
    }
  }

  void connection(std::shared_ptr<tcp::socket> sock) {
    if (!tls) {
      serve(*sock);
    } else {
      asio::ssl::stream<tcp::socket&> stream(*sock, *tls);
      boost::system::error_code ec;
      stream.handshake(asio::ssl::stream_base::server, ec);
      if (!ec) serve(stream);
    }
    boost::system::error_code ec;
    sock->shutdown(tcp::socket::shutdown_both, ec);
    sock->close(ec);
  }

  void accept_loop() {
    for (;;) {
      auto sock = std::make_shared<tcp::socket>(ioc);
      boost::system::error_code ec;
      acceptor.accept(*sock, ec);
      if (ec || stopping) return;
      std::lock_guard lk(mu);
      sockets.push_back(sock);
      workers.emplace_back([this, sock] { connection(sock); });
    }
  }
};

http_test_server::http_test_server(answer_fn answer, unsigned short port, std::optional<self_signed> cert,
                                   std::optional<std::string> client_ca)
    : p_(std::make_shared<impl>()) {
  p_->answer = std::move(answer);
  if (cert) {
    p_->tls.emplace(asio::ssl::context::tls_server);
    p_->tls->use_certificate_chain(asio::buffer(cert->cert_pem));
    p_->tls->use_private_key(asio::buffer(cert->key_pem), asio::ssl::context::pem);
    if (client_ca) {
      p_->tls->add_certificate_authority(asio::buffer(*client_ca));
      p_->tls->set_verify_mode(asio::ssl::verify_peer | asio::ssl::verify_fail_if_no_peer_cert);
    }
  }
  tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), port);
  p_->acceptor.open(ep.protocol());
  p_->acceptor.set_option(tcp::acceptor::reuse_address(true));
  p_->acceptor.bind(ep);
  p_->acceptor.listen();
  port_ = p_->acceptor.local_endpoint().port();
  p_->accept_thread = std::thread([p = p_] { p->accept_loop(); });
}

http_test_server::~http_test_server() { stop(); }

void http_test_server::stop() {
  if (p_->stopping.exchange(true)) return;
  boost::system::error_code ec;
  {  // unblock accept() with a connection of our own
    tcp::socket poke(p_->ioc);
    poke.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_), ec);
  }
  p_->accept_thread.join();
  p_->acceptor.close(ec);
  std::list<std::thread> workers;
  {
    std::lock_guard lk(p_->mu);
    for (auto& s : p_->sockets) s->shutdown(tcp::socket::shutdown_both, ec);
    workers.swap(p_->workers);
  }
  for (auto& t : workers) t.join();
}

std::vector<recorded_request> http_test_server::requests() const {
  std::lock_guard lk(p_->mu);
  return p_->log;
}

std::size_t http_test_server::request_count() const {
  std::lock_guard lk(p_->mu);
  return p_->log.size();
}

unsigned short reserve_port() {
  asio::io_context ioc;
  tcp::acceptor a(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  return a.local_endpoint().port();
}


}  // namespace pipehook::test
