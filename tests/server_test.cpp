// The real server and daemon wiring, in process, over real sockets on 127.0.0.1.
#include "pipehook/store/reader.hpp"
#include "support.hpp"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>

namespace pipehook {
namespace {

using namespace std::chrono_literals;

const std::string good_auth = test::basic_auth(test::test_user, test::test_password);

using server_fixture = test::daemon_fixture;

std::string error_of(const test::http_reply& r) {
  auto at = r.body.find("\"error\":\"");
  return at == std::string::npos ? "" : r.body.substr(at + 9, r.body.find('"', at + 9) - at - 9);
}

TEST_F(server_fixture, every_status_code_in_order_with_a_json_error) {
  cfg.server.max_body_bytes = 4096;
  start();
  test::http_client c(port());
  const std::map<std::string, std::string> json{{"Content-Type", "application/json"}, {"Authorization", good_auth}};

  auto r = c.request("POST", "/nope", "{}", json);
  EXPECT_EQ(r.status, 404u);
  EXPECT_EQ(error_of(r), "not_found");

  r = c.request("GET", "/webhooks/pipedrive");
  EXPECT_EQ(r.status, 405u);
  EXPECT_EQ(r.headers["allow"], "POST");

  // 413 comes before 401: an unauthenticated oversized body is still "too large".
  r = c.request("POST", "/webhooks/pipedrive", std::string(5000, ' '), {{"Content-Type", "application/json"}});
  EXPECT_EQ(r.status, 413u);
  EXPECT_NE(r.body.find("the limit is 4096"), std::string::npos) << r.body;

  r = c.post("{}", "");
  EXPECT_EQ(r.status, 401u);
  EXPECT_EQ(r.headers["www-authenticate"], "Basic realm=\"pipehook\", charset=\"UTF-8\"");
  r = c.post("{}", test::basic_auth(test::test_user, "wrong"));
  EXPECT_EQ(r.status, 401u);
  r = c.post("{}", test::basic_auth("someone", test::test_password));
  EXPECT_EQ(r.status, 401u);
  r = c.post("{}", "Bearer xyz");
  EXPECT_EQ(r.status, 401u);

  r = c.request("POST", "/webhooks/pipedrive", "{}", {{"Content-Type", "text/plain"}, {"Authorization", good_auth}});
  EXPECT_EQ(r.status, 415u);
  EXPECT_EQ(error_of(r), "unsupported_media_type");
  r = c.request("POST", "/webhooks/pipedrive", "{}", {{"Authorization", good_auth}});
  EXPECT_EQ(r.status, 415u);

  r = c.post("{\"meta\":", good_auth);
  EXPECT_EQ(r.status, 400u);
  EXPECT_EQ(error_of(r), "invalid_json");

  r = c.post(test::v2_body("s-1"), good_auth);
  EXPECT_EQ(r.status, 200u);
  EXPECT_NE(r.body.find("\"status\":\"stored\""), std::string::npos) << r.body;
  EXPECT_TRUE(r.keep_alive);

  r = c.post(test::v2_body("s-1"), good_auth);
  EXPECT_EQ(r.status, 200u);
  EXPECT_NE(r.body.find("\"status\":\"duplicate\""), std::string::npos) << r.body;

  r = c.post(test::v2_body("s-1", "deal", "42", 2), good_auth);  // Pipedrive's retry
  EXPECT_EQ(r.status, 200u);
  EXPECT_NE(r.body.find("\"status\":\"duplicate\""), std::string::npos) << r.body;

  r = c.post(R"({"meta":{"version":"9.0"}})", good_auth);
  EXPECT_EQ(r.status, 202u);
  EXPECT_NE(r.body.find("\"status\":\"quarantined\""), std::string::npos) << r.body;

  r = c.request("GET", "/healthz");
  EXPECT_EQ(r.status, 200u);
  r = c.request("GET", "/readyz");
  EXPECT_EQ(r.status, 200u);
  r = c.request("GET", "/readyz?verbose=1");
  EXPECT_EQ(r.status, 200u);

  daemon->stop_and_wait();
  EXPECT_EQ(stored_events(), 1);
  auto rd = std::move(*store::reader::open(cfg.store.path));
  EXPECT_EQ(*rd->count_quarantined(), 1);
  EXPECT_EQ(rd->list({}, false)->front().deliveries, 3);
}

TEST_F(server_fixture, every_sample_is_stored_through_the_server) {
  start();
  test::http_client c(port());
  for (const auto& [name, body] : test::samples()) {
    auto r = c.post(body, good_auth);
    EXPECT_EQ(r.status, 200u) << name << ": " << r.body;
  }
  daemon->stop_and_wait();
  EXPECT_EQ(stored_events(), static_cast<std::int64_t>(test::samples().size()));
}

TEST_F(server_fixture, chunked_bodies_over_the_limit_are_413) {
  cfg.server.max_body_bytes = 2048;
  start();
  test::raw_socket s(port());
  std::string req = "POST /webhooks/pipedrive HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: " +
                    good_auth + "\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 3; ++i) req += "400\r\n" + std::string(1024, ' ') + "\r\n";
  req += "0\r\n\r\n";
  s.send(req);
  const std::string reply = s.read_until_close(5s);
  EXPECT_EQ(reply.rfind("HTTP/1.1 413", 0), 0u) << reply;
}

// A proxy that streams bodies (nginx with proxy_request_buffering off) forwards them chunked, as
// the bytes arrive: the body is stored whole once the last chunk is in.
TEST_F(server_fixture, a_body_streamed_in_chunks_over_time_is_stored_whole) {
  start();
  test::raw_socket s(port());
  const std::string body = test::v2_body("streamed");
  s.send("POST /webhooks/pipedrive HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: " + good_auth +
         "\r\nTransfer-Encoding: chunked\r\n\r\n");
  for (std::size_t at = 0; at < body.size(); at += 100) {
    const std::string piece = body.substr(at, 100);
    char size[16];
    std::snprintf(size, sizeof size, "%zx", piece.size());
    s.send(std::string(size) + "\r\n" + piece + "\r\n");
    std::this_thread::sleep_for(30ms);
  }
  s.send("0\r\n\r\n");
  const std::string reply = s.read_some(5s);
  EXPECT_EQ(reply.rfind("HTTP/1.1 200", 0), 0u) << reply;
  auto rd = store::reader::open(cfg.store.path);
  auto ev = (*rd)->get(1);
  ASSERT_TRUE(ev);
  EXPECT_EQ(ev->ev.body, body);
}

TEST_F(server_fixture, head_requests_get_headers_and_no_body) {
  start();
  test::raw_socket s(port());
  // Two requests on one connection: a body after the first answer would corrupt the second.
  s.send("HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  const std::string both = s.read_until_close(5s);
  const auto second = both.find("HTTP/1.1 200", 1);
  ASSERT_NE(second, std::string::npos) << both;
  const std::string first = both.substr(0, second);
  EXPECT_NE(first.find("Content-Length: 15"), std::string::npos) << first;
  EXPECT_EQ(first.substr(first.size() - 4), "\r\n\r\n") << "HEAD answer carried a body: " << first;
  EXPECT_NE(both.substr(second).find("{\"status\":\"ok\"}"), std::string::npos);
}

TEST_F(server_fixture, a_malformed_chunked_body_is_400) {
  start();
  test::raw_socket s(port());
  s.send("POST /webhooks/pipedrive HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: " + good_auth +
         "\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n");
  const std::string reply = s.read_until_close(5s);
  EXPECT_EQ(reply.rfind("HTTP/1.1 400", 0), 0u) << reply;
  EXPECT_NE(reply.find("malformed HTTP body"), std::string::npos) << reply;
}

TEST_F(server_fixture, expect_100_continue_is_honoured) {
  start();
  test::raw_socket s(port());
  const std::string body = test::v2_body("continue-1");
  s.send("POST /webhooks/pipedrive HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: " + good_auth +
         "\r\nExpect: 100-continue\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n");
  const std::string interim = s.read_some(5s);
  EXPECT_EQ(interim.rfind("HTTP/1.1 100 Continue", 0), 0u) << interim;
  s.send(body);
  const std::string final_reply = s.read_some(5s);
  EXPECT_NE(final_reply.find("\"status\":\"stored\""), std::string::npos) << final_reply;
}

TEST_F(server_fixture, auth_disabled_explicitly_accepts_without_credentials) {
  cfg.auth.enabled = false;
  cfg.auth.password.clear();
  start();
  test::http_client c(port());
  EXPECT_EQ(c.post(test::v2_body("noauth"), "").status, 200u);
}

TEST_F(server_fixture, many_requests_on_one_keep_alive_connection) {
  start();
  test::http_client c(port());
  for (int i = 0; i < 300; ++i) {
    auto r = c.post(test::v2_body("ka-" + std::to_string(i)), good_auth);
    ASSERT_EQ(r.status, 200u) << r.body;
    ASSERT_TRUE(r.keep_alive);
  }
  daemon->stop_and_wait();
  EXPECT_EQ(stored_events(), 300);
}

TEST_F(server_fixture, concurrent_clients_are_all_committed) {
  start();
  constexpr int clients = 16, each = 40;
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < clients; ++t)
    threads.emplace_back([&, t] {
      test::http_client c(port());
      for (int i = 0; i < each; ++i)
        if (c.post(test::v2_body("cc-" + std::to_string(t) + "-" + std::to_string(i)), good_auth).status == 200) ++ok;
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), clients * each);
  daemon->stop_and_wait();
  EXPECT_EQ(stored_events(), clients * each);
}

TEST_F(server_fixture, a_locked_store_answers_503_with_retry_after_and_stores_nothing) {
  cfg.store.busy_timeout_ms = 100;
  cfg.store.retry_after_s = 7;
  start();
  test::http_client c(port());
  ASSERT_EQ(c.post(test::v2_body("pre-lock"), good_auth).status, 200u);
  sqlite3* other = nullptr;
  sqlite3_open(cfg.store.path.c_str(), &other);
  ASSERT_EQ(sqlite3_exec(other, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr), SQLITE_OK);
  auto r = c.post(test::v2_body("during-lock"), good_auth);
  EXPECT_EQ(r.status, 503u);
  EXPECT_EQ(r.headers["retry-after"], "7");
  EXPECT_EQ(error_of(r), "store_busy");
  EXPECT_EQ(c.request("GET", "/readyz").status, 503u);
  EXPECT_EQ(c.request("GET", "/healthz").status, 200u);
  sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(other);
  // Pipedrive's retry then succeeds, as a new event (the 503 stored nothing).
  r = c.post(test::v2_body("during-lock", "deal", "42", 2), good_auth);
  EXPECT_EQ(r.status, 200u);
  EXPECT_NE(r.body.find("\"stored\""), std::string::npos) << r.body;
}

TEST_F(server_fixture, a_stalled_client_is_cut_off_by_the_read_timeout) {
  cfg.server.read_timeout_ms = 300;
  start();
  test::raw_socket s(port());
  s.send("POST /webhooks/pipedrive HTTP/1.1\r\nHost: x\r\nContent-Len");  // and then nothing
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(s.closed_by_peer(5s));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);

  test::raw_socket body_stall(port());
  body_stall.send("POST /webhooks/pipedrive HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: " +
                  good_auth + "\r\nContent-Length: 100\r\n\r\n{\"meta\":");
  EXPECT_TRUE(body_stall.closed_by_peer(5s));
}

TEST_F(server_fixture, an_idle_keep_alive_connection_is_closed) {
  cfg.server.idle_timeout_ms = 200;
  start();
  test::raw_socket s(port());
  s.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(s.read_some(5s).rfind("HTTP/1.1 200", 0), 0u);
  EXPECT_TRUE(s.closed_by_peer(5s));
}

TEST_F(server_fixture, malformed_http_gets_400_and_oversized_heads_431) {
  start();
  {
    test::raw_socket s(port());
    s.send("THIS IS NOT HTTP\r\n\r\n");
    EXPECT_EQ(s.read_until_close(5s).rfind("HTTP/1.1 400", 0), 0u);
  }
  {
    test::raw_socket s(port());
    s.send("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(20000, 'a') + "\r\n\r\n");
    EXPECT_EQ(s.read_until_close(5s).rfind("HTTP/1.1 431", 0), 0u);
  }
}

TEST_F(server_fixture, graceful_stop_finishes_the_request_in_flight) {
  start();
  test::raw_socket s(port());
  const std::string body = test::v2_body("in-flight");
  s.send("POST /webhooks/pipedrive HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: " + good_auth +
         "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body.substr(0, 20));
  ASSERT_TRUE(test::wait_for([&] { return daemon->connections().busy == 1; }, 5s)) << "the request never began";
  test::raw_socket idle(port());
  ASSERT_TRUE(test::wait_for([&] { return daemon->connections().open == 2; }, 5s));
  std::thread stopper([&] { daemon->stop_and_wait(); });
  EXPECT_TRUE(idle.closed_by_peer(5s)) << "idle connections close at once";
  s.send(body.substr(20));
  const std::string reply = s.read_until_close(5s);
  stopper.join();
  EXPECT_NE(reply.find("\"stored\""), std::string::npos) << reply;
  EXPECT_NE(reply.find("Connection: close"), std::string::npos) << reply;
  EXPECT_EQ(stored_events(), 1);
}

}  // namespace
}  // namespace pipehook
