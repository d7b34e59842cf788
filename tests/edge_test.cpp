// The edge as an attacker meets it, over real sockets on 127.0.0.1: request framing (smuggling),
// connection exhaustion, the admin listener's Host and Origin checks, the container's proxy trust,
// the config checks, and readiness after a failed write. One test (or more) per point of the
// hardening issue; each fails on the code before it.
#include "pipehook/store/reader.hpp"
#include "support.hpp"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace pipehook {
namespace {

using namespace std::chrono_literals;

const std::string good_auth = test::basic_auth(test::test_user, test::test_password);

struct edge : test::daemon_fixture {
  // A webhook POST head with the test credentials, `extra` header lines (each ending in CRLF) and
  // the body framed by Content-Length unless `extra` frames it.
  static std::string webhook(const std::string& body, const std::string& extra = {}, const std::string& version = "1.1") {
    const bool framed = extra.find("Transfer-Encoding") != std::string::npos;
    return "POST /webhooks/pipedrive HTTP/" + version + "\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: " +
           good_auth + "\r\n" + extra + (framed ? "" : "Content-Length: " + std::to_string(body.size()) + "\r\n") + "\r\n" +
           body;
  }
};

// Everything the server sent until it closed; closed tells whether it did (within 5 s).
struct exchange {
  std::string reply;
  bool closed = false;
};
exchange send_all(unsigned short port, const std::string& bytes) {
  test::raw_socket s(port);
  s.send(bytes);
  exchange out;
  out.reply = s.read_until_close(5s);
  out.closed = s.saw_close();
  return out;
}

std::size_t answers(const std::string& reply) {
  std::size_t n = 0;
  for (auto at = reply.find("HTTP/1."); at != std::string::npos; at = reply.find("HTTP/1.", at + 1)) ++n;
  return n;
}

std::string chunked(const std::string& body) {
  char size[16];
  std::snprintf(size, sizeof size, "%zx", body.size());
  return std::string(size) + "\r\n" + body + "\r\n0\r\n\r\n";
}

// 1. A Transfer-Encoding whose last coding is not chunked cannot be framed: 400, the connection
// closed, and the bytes after the head (a smuggled request) never answered. A coding before
// chunked that pipehook does not implement: 501. On both listeners, for GET and POST.
TEST_F(edge, transfer_encoding_not_ending_in_chunked_is_refused_and_nothing_after_it_is_served) {
  start();
  struct kase {
    std::string te;
    unsigned status;
  };
  const kase cases[] = {{"chunked, identity", 400}, {"identity", 400}, {"gzip", 400},      {"chunked, chunked", 400},
                        {"chunked,", 400},          {"CHUNKED , gzip", 400}, {"gzip, chunked", 501}, {"deflate,chunked", 501},
                        {"gzip, chunked, chunked", 400}, {", chunked", 400}};
  const std::string smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
  for (const auto& k : cases) {
    SCOPED_TRACE(k.te);
    for (unsigned short p : {port(), daemon->admin_port()}) {
      const auto got = send_all(p, "GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: " + k.te + "\r\n\r\n" + smuggled);
      EXPECT_EQ(got.reply.rfind("HTTP/1.1 " + std::to_string(k.status), 0), 0u) << got.reply;
      EXPECT_NE(got.reply.find("Connection: close"), std::string::npos) << got.reply;
      EXPECT_EQ(answers(got.reply), 1u) << "the smuggled request was answered: " << got.reply;
      EXPECT_TRUE(got.closed);
    }
    const std::string body = test::v2_body("te-" + k.te);
    const auto post = send_all(port(), webhook(body, "Transfer-Encoding: " + k.te + "\r\n") + body + smuggled);
    EXPECT_EQ(post.reply.rfind("HTTP/1.1 " + std::to_string(k.status), 0), 0u) << post.reply;
    EXPECT_EQ(answers(post.reply), 1u) << post.reply;
  }
  // Transfer-Encoding beside Content-Length (the classic CL.TE smuggle): refused as well.
  const auto both = send_all(port(), "POST /webhooks/pipedrive HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\nContent-Length: 2\r\n\r\n{}" + smuggled);
  EXPECT_EQ(both.reply.rfind("HTTP/1.1 400", 0), 0u) << both.reply;
  EXPECT_EQ(answers(both.reply), 1u) << both.reply;
  // A Transfer-Encoding split over two header lines counts as one list.
  const auto split = send_all(port(), "GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n" + smuggled);
  EXPECT_EQ(split.reply.rfind("HTTP/1.1 400", 0), 0u) << split.reply;
  EXPECT_EQ(answers(split.reply), 1u) << split.reply;
  // Exactly chunked (any case, with white space) is fine.
  const std::string body = test::v2_body("te-ok");
  const auto ok = send_all(port(), webhook({}, "Transfer-Encoding:  Chunked \r\nConnection: close\r\n") + chunked(body));
  EXPECT_EQ(ok.reply.rfind("HTTP/1.1 200", 0), 0u) << ok.reply;
  daemon->stop_and_wait();
  EXPECT_EQ(stored_events(), 1);
}

// 2. HTTP/1.0 with Transfer-Encoding is faulty framing even when it parses: served, then closed.
TEST_F(edge, http_1_0_with_transfer_encoding_closes_after_the_response) {
  start();
  const std::string body = test::v2_body("http10");
  const auto got = send_all(port(), webhook({}, "Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n", "1.0") + chunked(body) +
                                        "GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  EXPECT_EQ(got.reply.rfind("HTTP/1.0 200", 0), 0u) << got.reply;
  EXPECT_NE(got.reply.find("\"stored\""), std::string::npos) << got.reply;
  EXPECT_EQ(answers(got.reply), 1u) << "the connection was kept: " << got.reply;
  EXPECT_TRUE(got.closed);
}

// 3. Lines ending in a bare LF are answered 400 at once, not left to hang until read_timeout.
TEST_F(edge, bare_lf_line_endings_are_400_at_once) {
  cfg.server.read_timeout_ms = 30'000;  // a hang would outlast the test's 5 s wait
  start();
  const std::string body = test::v2_body("bare-lf");
  char size[16];
  std::snprintf(size, sizeof size, "%zx", body.size());
  const auto t0 = std::chrono::steady_clock::now();
  const auto chunk_lf = send_all(port(), webhook({}, "Transfer-Encoding: chunked\r\n") + size + "\n" + body + "\n0\n\n");
  EXPECT_EQ(chunk_lf.reply.rfind("HTTP/1.1 400", 0), 0u) << chunk_lf.reply;
  EXPECT_NE(chunk_lf.reply.find("bare LF"), std::string::npos) << chunk_lf.reply;
  const auto trailer_lf = send_all(port(), webhook({}, "Transfer-Encoding: chunked\r\n") + size + "\r\n" + body + "\r\n0\r\nX-Trailer: 1\n\n");
  EXPECT_EQ(trailer_lf.reply.rfind("HTTP/1.1 400", 0), 0u) << trailer_lf.reply;
  const auto head_lf = send_all(port(), "GET /healthz HTTP/1.1\nHost: x\n\n");
  EXPECT_EQ(head_lf.reply.rfind("HTTP/1.1 400", 0), 0u) << head_lf.reply;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);
  daemon->stop_and_wait();
  EXPECT_EQ(stored_events(), 0);
}

// 4. Two Authorization headers: refused whichever comes first, on both listeners.
TEST_F(edge, two_authorization_headers_are_refused) {
  cfg.admin.token = "an-admin-token-of-some-length";
  start();
  const std::string body = test::v2_body("two-auth");
  const std::string bad = test::basic_auth(test::test_user, "wrong");
  for (const auto& pair : {good_auth + "\r\nAuthorization: " + bad, bad + "\r\nAuthorization: " + good_auth}) {
    const auto got = send_all(port(), "POST /webhooks/pipedrive HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: " +
                                          pair + "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
    EXPECT_EQ(got.reply.rfind("HTTP/1.1 400", 0), 0u) << got.reply;
    EXPECT_NE(got.reply.find("more than one Authorization header"), std::string::npos) << got.reply;
  }
  const auto admin = send_all(daemon->admin_port(), "GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
                                                    "an-admin-token-of-some-length\r\nAuthorization: Bearer nope\r\n\r\n");
  EXPECT_EQ(admin.reply.rfind("HTTP/1.1 400", 0), 0u) << admin.reply;
  daemon->stop_and_wait();
  EXPECT_EQ(stored_events(), 0);
}

// 5. A content coding pipehook would not undo: 415 naming it, before anything is parsed.
TEST_F(edge, content_encoding_other_than_identity_is_415) {
  start();
  const std::string body = test::v2_body("gzip-label");
  for (const std::string& coding : std::vector<std::string>{"gzip", "br", "identity, gzip"}) {
    const auto got = send_all(port(), webhook(body, "Content-Encoding: " + coding + "\r\n"));
    EXPECT_EQ(got.reply.rfind("HTTP/1.1 415", 0), 0u) << got.reply;
    EXPECT_NE(got.reply.find("Content-Encoding \\\"" + coding + "\\\""), std::string::npos) << got.reply;
    EXPECT_NE(got.reply.find("Accept-Encoding: identity"), std::string::npos) << got.reply;
  }
  const auto identity = send_all(port(), webhook(body, "Content-Encoding: identity\r\nConnection: close\r\n"));
  EXPECT_EQ(identity.reply.rfind("HTTP/1.1 200", 0), 0u) << identity.reply;
  daemon->stop_and_wait();
  EXPECT_EQ(stored_events(), 1);
}

// 6. Host: required once in HTTP/1.1; an absolute-form target is served as its path.
TEST_F(edge, host_is_required_once_and_absolute_form_targets_are_paths) {
  start();
  auto got = send_all(port(), "GET /healthz HTTP/1.1\r\n\r\n");
  EXPECT_EQ(got.reply.rfind("HTTP/1.1 400", 0), 0u) << got.reply;
  EXPECT_NE(got.reply.find("needs a Host header"), std::string::npos) << got.reply;
  got = send_all(port(), "GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
  EXPECT_EQ(got.reply.rfind("HTTP/1.1 400", 0), 0u) << got.reply;
  got = send_all(port(), "GET healthz HTTP/1.1\r\nHost: a\r\n\r\n");
  EXPECT_EQ(got.reply.rfind("HTTP/1.1 400", 0), 0u) << got.reply;
  got = send_all(port(), "GET /healthz HTTP/1.0\r\n\r\n");  // HTTP/1.0 needs no Host
  EXPECT_EQ(got.reply.rfind("HTTP/1.0 200", 0), 0u) << got.reply;

  const std::string body = test::v2_body("absolute-form");
  got = send_all(port(), "POST http://hooks.example.com/webhooks/pipedrive HTTP/1.1\r\nHost: hooks.example.com\r\n"
                         "Content-Type: application/json\r\nAuthorization: " + good_auth + "\r\nConnection: close\r\n"
                         "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
  EXPECT_EQ(got.reply.rfind("HTTP/1.1 200", 0), 0u) << got.reply;
  got = send_all(port(), "GET HTTP://hooks.example.com/readyz?x=1 HTTP/1.1\r\nHost: hooks.example.com\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(got.reply.rfind("HTTP/1.1 200", 0), 0u) << got.reply;
  daemon->stop_and_wait();
  EXPECT_EQ(stored_events(), 1);
}

// 7. Silent sockets cannot starve the server: a new connection must begin its request within
// read_timeout (not idle_timeout), and at the cap the longest-idle connection makes room.
TEST_F(edge, silent_sockets_at_the_cap_do_not_keep_a_webhook_out) {
  cfg.server.max_connections = 40;
  cfg.server.read_timeout_ms = 2'000;
  start();
  std::vector<std::unique_ptr<test::raw_socket>> silent;
  for (int i = 0; i < 60; ++i) silent.push_back(std::make_unique<test::raw_socket>(port()));
  const auto t0 = std::chrono::steady_clock::now();
  test::http_client c(port());
  const auto r = c.post(test::v2_body("past-the-silent"), good_auth);
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  EXPECT_EQ(r.status, 200u) << r.body;
  EXPECT_LT(took, 4s) << "2 x read_timeout";
  std::printf("[ measure  ] a webhook behind 60 silent sockets (cap 40, read_timeout 2 s) answered in %lld ms\n",
              static_cast<long long>(took.count()));
  // The oldest silent sockets were the ones closed, and counted: 61 connections over a cap of 40.
  EXPECT_TRUE(silent.front()->closed_by_peer(3s));
  test::http_client admin(daemon->admin_port());
  const std::string text = admin.request("GET", "/metrics").body;
  const auto at = text.find("\npipehook_http_connections_closed_at_cap_total ");
  ASSERT_NE(at, std::string::npos) << text;
  EXPECT_GE(std::stoi(text.substr(at + 47)), 21) << text.substr(at, 60);
}

TEST_F(edge, a_new_connection_gets_read_timeout_to_begin_and_a_kept_one_idle_timeout) {
  cfg.server.read_timeout_ms = 300;
  cfg.server.idle_timeout_ms = 60'000;
  start();
  test::raw_socket silent(port());
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(silent.closed_by_peer(5s));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
  // After a request, the connection may wait for the next one up to idle_timeout.
  test::raw_socket kept(port());
  kept.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(kept.read_some(5s).rfind("HTTP/1.1 200", 0), 0u);
  EXPECT_FALSE(kept.closed_by_peer(1s)) << "closed before idle_timeout";
}

TEST_F(edge, at_the_cap_with_every_connection_busy_new_clients_wait_for_a_slot) {
  cfg.server.max_connections = 2;
  start();
  const std::string body = test::v2_body("cap-busy");
  // Two connections in the middle of a request: not idle, so not closed for a newcomer.
  auto a = std::make_unique<test::raw_socket>(port());
  auto b = std::make_unique<test::raw_socket>(port());
  a->send(webhook(body).substr(0, 40));
  b->send(webhook(body).substr(0, 40));
  ASSERT_TRUE(test::wait_for([&] { return daemon->connections().busy == 2; }, 5s)) << "the requests never began";
  test::raw_socket third(port());  // completes in the kernel's backlog, not yet served
  third.send(webhook(body));
  EXPECT_EQ(third.read_some(300ms), "") << "served beyond the cap";
  a.reset();  // a slot frees
  const std::string reply = third.read_some(5s);
  EXPECT_NE(reply.find("\"stored\""), std::string::npos) << reply;
}

// 8. The admin listener answers only to its own names, and refuses cross-site state changes.
TEST_F(edge, admin_listener_refuses_other_hosts_and_cross_site_posts) {
  cfg.admin.allowed_hosts = {"admin.internal", ".ops.example"};
  start();
  const unsigned short ap = daemon->admin_port();
  const std::string self = "127.0.0.1:" + std::to_string(ap);
  auto get = [&](const std::string& host) {
    return send_all(ap, "GET /api/v1/stats HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n").reply;
  };
  for (const std::string& host : std::vector<std::string>{self, "localhost:" + std::to_string(ap), "LOCALHOST", "admin.internal:9000", "a.ops.example"})
    EXPECT_EQ(get(host).rfind("HTTP/1.1 200", 0), 0u) << host;
  for (const std::string& host : std::vector<std::string>{"evil.example", "evil.example:" + std::to_string(ap), "127.0.0.1.nip.io", "10.9.9.9",
                                 "ops.example", "admin.internal.evil"}) {
    const std::string reply = get(host);
    EXPECT_EQ(reply.rfind("HTTP/1.1 421", 0), 0u) << host << ": " << reply;
    EXPECT_NE(reply.find("admin.allowed_hosts"), std::string::npos) << reply;
  }
  // DNS rebinding against the page itself, and an absolute-form target naming another host.
  EXPECT_EQ(send_all(ap, "GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n").reply.rfind("HTTP/1.1 421", 0), 0u);
  EXPECT_EQ(send_all(ap, "GET http://evil.example/api/v1/stats HTTP/1.1\r\nHost: " + self + "\r\n\r\n").reply.rfind("HTTP/1.1 421", 0), 0u);

  auto post = [&](const std::string& extra) {
    return send_all(ap, "POST /api/v1/quarantine/1/reparse HTTP/1.1\r\nHost: " + self + "\r\n" + extra +
                            "Content-Length: 0\r\nConnection: close\r\n\r\n")
        .reply;
  };
  for (const std::string& extra : std::vector<std::string>{"Origin: http://evil.example\r\n", "Origin: null\r\n", "Sec-Fetch-Site: cross-site\r\n",
                                  "Sec-Fetch-Site: same-site\r\n", "Origin: http://localhost:" + std::to_string(ap) + "\r\n"}) {
    const std::string reply = post(extra);
    EXPECT_EQ(reply.rfind("HTTP/1.1 403", 0), 0u) << extra << reply;
    EXPECT_NE(reply.find("cross_site_request"), std::string::npos) << reply;
  }
  // Same origin (the web page), or no browser headers at all (curl, scripts): reaches the route,
  // which has no quarantined row 1 to re-parse.
  for (const std::string& extra : std::vector<std::string>{"Origin: http://" + self + "\r\nSec-Fetch-Site: same-origin\r\n", std::string()}) {
    const std::string reply = post(extra);
    EXPECT_EQ(reply.rfind("HTTP/1.1 404", 0), 0u) << extra << reply;
  }
}

// 9. The Bearer scheme is case-insensitive. (With a token, any Host reaches the token check: a
// rebinding page has no token; Prometheus in a container scrapes by service name.)
TEST_F(edge, admin_token_scheme_is_case_insensitive) {
  cfg.admin.token = "an-admin-token-of-some-length";
  start();
  const auto by_name = send_all(daemon->admin_port(), "GET /api/v1/stats HTTP/1.1\r\nHost: pipehook:8081\r\nAuthorization: Bearer "
                                                      "an-admin-token-of-some-length\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(by_name.reply.rfind("HTTP/1.1 200", 0), 0u) << by_name.reply;
  const auto no_token = send_all(daemon->admin_port(), "GET /api/v1/stats HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(no_token.reply.rfind("HTTP/1.1 401", 0), 0u) << no_token.reply;
  test::http_client c(daemon->admin_port());
  for (const std::string& scheme : std::vector<std::string>{"Bearer ", "bearer ", "BEARER   "})
    EXPECT_EQ(c.request("GET", "/api/v1/stats", {}, {{"Authorization", scheme + "an-admin-token-of-some-length"}}).status, 200u)
        << scheme;
  EXPECT_EQ(c.request("GET", "/api/v1/stats", {}, {{"Authorization", "bearer an-admin-token-of-some-lengtH"}}).status, 401u);
  EXPECT_EQ(c.request("GET", "/api/v1/stats", {}, {{"Authorization", "Basic an-admin-token-of-some-length"}}).status, 401u);
}

// 10. check-config refuses exactly what serve refuses, naming the right key; localhost is loopback.
TEST(edge_config, check_config_and_serve_agree_on_listen_addresses) {
  test::temp_dir dir;
  const std::map<std::string, std::string> env{{"PIPEHOOK_AUTH_PASSWORD", "a-password-long-enough"}};
  struct kase {
    std::string server, admin;  // the two listen values
    std::string names;          // what the error says; "" = valid
  };
  const kase cases[] = {
      {"127.0.0.1:0", "127.1:0", "admin.listen: \"127.1\" is not an IP address"},
      {"127.0.0.1:0", "example.com:0", "admin.listen: \"example.com\" is not an IP address"},
      {"localhost.localdomain:0", "127.0.0.1:0", "server.listen: \"localhost.localdomain\" is not an IP address"},
      {"[::1]:0", "127.0.0.1:0", ""},
      {"127.0.0.1:0", "localhost:0", ""},
      {"localhost:0", "[::1]:0", ""},
  };
  for (const auto& k : cases) {
    SCOPED_TRACE(k.server + " " + k.admin);
    test::write_file(dir.file("c.toml"), "[server]\nlisten = \"" + k.server + "\"\n[admin]\nlisten = \"" + k.admin +
                                             "\"\n[store]\npath = \"" + dir.file("events.db") + "\"\n");
    ::chmod(dir.file("c.toml").c_str(), 0600);
    const auto check = test::run_cli({"--config", dir.file("c.toml"), "check-config"}, env);
    if (k.names.empty()) {
      EXPECT_EQ(check.exit_code, 0) << check.err;
      auto cfg = config::load_config(dir.file("c.toml"), [&](const std::string& n) -> std::optional<std::string> {
        if (auto it = env.find(n); it != env.end()) return it->second;
        return std::nullopt;
      });
      ASSERT_TRUE(cfg) << cfg.error().message;
      test::running_daemon d(*cfg);  // serve takes it too
      EXPECT_NE(d.port(), 0);
      continue;
    }
    EXPECT_EQ(check.exit_code, 2);
    EXPECT_NE(check.err.find(k.names), std::string::npos) << check.err;
    const auto serve = test::run_cli({"--config", dir.file("c.toml"), "serve"}, env);
    EXPECT_EQ(serve.exit_code, 2);
    EXPECT_NE(serve.err.find(k.names), std::string::npos) << serve.err;
  }
  // localhost is shown as the loopback address serve binds.
  test::write_file(dir.file("c.toml"), "[admin]\nlisten = \"localhost:8089\"\n");
  EXPECT_NE(test::run_cli({"--config", dir.file("c.toml"), "check-config"}, env).out.find("127.0.0.1:8089"),
            std::string::npos);
}

// 11. Secrets in files others can read are warned about (check-config and serve's log), naming
// the file and its mode; a blank password is refused; a short one is warned about.
TEST(edge_config, secrets_readable_by_others_and_weak_passwords_are_called_out) {
  test::temp_dir dir;
  const std::string db = "[server]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"" + dir.file("events.db") + "\"\n[admin]\nenabled = false\n";
  test::write_file(dir.file("inline.toml"), "[auth]\npassword = \"an-inline-password-long\"\n" + db);
  ::chmod(dir.file("inline.toml").c_str(), 0644);
  auto r = test::run_cli({"--config", dir.file("inline.toml"), "check-config"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("warning: config file \"" + dir.file("inline.toml") + "\" holds secrets (auth.password)"), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("mode 0644"), std::string::npos) << r.err;
  ::chmod(dir.file("inline.toml").c_str(), 0600);
  r = test::run_cli({"--config", dir.file("inline.toml"), "check-config"});
  EXPECT_EQ(r.err.find("warning:"), std::string::npos) << r.err;

  // A secret file others can read; a file with no secret in it is fine at any mode.
  test::write_file(dir.file("password"), "a-file-password-long-enough\n");
  ::chmod(dir.file("password").c_str(), 0640);
  test::write_file(dir.file("file.toml"), "[auth]\npassword_file = \"" + dir.file("password") + "\"\n" + db);
  ::chmod(dir.file("file.toml").c_str(), 0644);
  r = test::run_cli({"--config", dir.file("file.toml"), "check-config"});
  EXPECT_NE(r.err.find("warning: auth.password_file: \"" + dir.file("password") + "\" holds a secret and is readable by group or others (mode 0640)"),
            std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("config file"), std::string::npos) << r.err;

  // serve logs the same at start-up.
  test::daemon_process d(dir.file("file.toml"), dir.file("serve.log"));
  EXPECT_NE(test::read_file(dir.file("serve.log")).find("auth.password_file: \"" + dir.file("password") + "\" holds a secret"),
            std::string::npos);
  d.signal(SIGTERM);
  EXPECT_EQ(d.wait(10s), 0);

  // Blank passwords are refused, short ones warned about.
  r = test::run_cli({"--config", dir.file("file.toml"), "check-config"}, {{"PIPEHOOK_AUTH_PASSWORD", "   "}});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("webhook password (PIPEHOOK_AUTH_PASSWORD) is only white space"), std::string::npos) << r.err;
  test::write_file(dir.file("blank.toml"), "[auth]\npassword = \" \t \"\n" + db);
  r = test::run_cli({"--config", dir.file("blank.toml"), "serve"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("only white space"), std::string::npos) << r.err;
  r = test::run_cli({"--config", dir.file("file.toml"), "check-config"}, {{"PIPEHOOK_AUTH_PASSWORD", "short-pw"}});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("warning: the webhook password (PIPEHOOK_AUTH_PASSWORD) is 8 characters long"), std::string::npos) << r.err;
}

// 12. The container's config trusts no proxy: a direct client cannot forge X-Forwarded-For past
// allow_from. PIPEHOOK_TRUSTED_PROXIES names the proxy (the compose file passes its network, which holds only nginx and pipehook).
TEST(edge_container, the_image_config_trusts_no_forwarded_header_unless_told) {
  test::temp_dir dir;
  std::map<std::string, std::string> env{{"PIPEHOOK_AUTH_PASSWORD", test::test_password}, {"PIPEHOOK_ADMIN_TOKEN", "tok"}};
  auto lookup = [&](const std::string& n) -> std::optional<std::string> {
    if (auto it = env.find(n); it != env.end()) return it->second;
    return std::nullopt;
  };
  const std::string image_config = std::string(PIPEHOOK_SOURCE_DIR) + "/docker/pipehook.toml";
  const std::string body = test::v2_body("forged");
  auto post = [&](const config::config& c) {
    test::running_daemon d(c);
    test::http_client client(d.port());
    return client.request("POST", "/webhooks/pipedrive", body,
                          {{"Content-Type", "application/json"}, {"Authorization", good_auth}, {"X-Forwarded-For", "203.0.113.5"}});
  };
  auto as_here = [&](config::config c) {  // the image's config, on this machine's loopback
    c.server.host = "127.0.0.1";
    c.server.port = 0;
    c.admin.enabled = false;
    c.store.path = dir.file("events.db");
    c.server.allow_from = {"203.0.113.0/24"};
    return c;
  };
  auto plain = config::load_config(image_config, lookup);
  ASSERT_TRUE(plain) << plain.error().message;
  EXPECT_TRUE(plain->server.trusted_proxies.empty());
  auto r = post(as_here(*plain));
  EXPECT_EQ(r.status, 403u) << r.body;
  EXPECT_NE(r.body.find("127.0.0.1"), std::string::npos) << r.body;

  env["PIPEHOOK_TRUSTED_PROXIES"] = "127.0.0.1, 172.31.250.10";
  auto told = config::load_config(image_config, lookup);
  ASSERT_TRUE(told) << told.error().message;
  EXPECT_EQ(told->server.trusted_proxies, (std::vector<std::string>{"127.0.0.1", "172.31.250.10"}));
  r = post(as_here(*told));
  EXPECT_EQ(r.status, 200u) << r.body;

  env["PIPEHOOK_TRUSTED_PROXIES"] = "10.0.0.0/33";
  auto bad = config::load_config(image_config, lookup);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("PIPEHOOK_TRUSTED_PROXIES"), std::string::npos) << bad.error().message;
}

// 13. /readyz follows the last write: when events fail for want of space, the probe writes as much
// as they did and fails too; once space is back it succeeds and so do events. A real full
// filesystem: a small tmpfs (mounting needs root, as CI runs).
TEST_F(edge, readiness_follows_the_last_write_on_a_full_disk) {
  const std::string mnt = dir.file("small");
  test::small_disk disk(mnt, "4m");
  if (!disk.mounted()) GTEST_SKIP() << "cannot mount a tmpfs here: " << disk.why();
  cfg.store.path = mnt + "/events.db";
  cfg.admin.enabled = false;
  start();
  test::http_client c(port());
  ASSERT_EQ(c.post(test::v2_body("before-full"), good_auth).status, 200u);
  ASSERT_EQ(c.request("GET", "/readyz").status, 200u);

  // Fill the filesystem, then give back 16 KiB: room for a small write, not for a 200 KB event.
  const std::string filler = mnt + "/filler";
  {
    const int fd = ::open(filler.c_str(), O_WRONLY | O_CREAT, 0600);
    ASSERT_GE(fd, 0);
    const std::string block(64 * 1024, 'x');
    while (::write(fd, block.data(), block.size()) > 0) {
    }
    ::close(fd);
  }
  const auto size = std::filesystem::file_size(filler);
  std::filesystem::resize_file(filler, size - 16 * 1024);

  std::string big = test::v2_body("too-big-for-the-disk");
  big.insert(big.find("\"title\""), "\"notes\":\"" + std::string(200 * 1024, 'n') + "\",");
  auto r = c.post(big, good_auth);
  ASSERT_EQ(r.status, 503u) << r.body;
  EXPECT_NE(r.body.find("store_full"), std::string::npos) << r.body;
  r = c.request("GET", "/readyz");
  EXPECT_EQ(r.status, 503u) << "ready while writes fail: " << r.body;
  EXPECT_NE(r.body.find("full"), std::string::npos) << r.body;

  std::filesystem::remove(filler);
  r = c.request("GET", "/readyz");
  EXPECT_EQ(r.status, 200u) << r.body;
  r = c.post(big, good_auth);
  EXPECT_EQ(r.status, 200u) << r.body;
  daemon->stop_and_wait();
  EXPECT_EQ(stored_events(), 2);
}

}  // namespace
}  // namespace pipehook
