// The webhook endpoint's logic without a socket or a database: the head checks in their order,
// the answers for every parse outcome and store result, and readiness following the last write,
// against a scripted event log.
#include "pipehook/core/codec.hpp"
#include "pipehook/core/run_blocking.hpp"
#include "pipehook/ingest/webhook.hpp"
#include "support.hpp"

#include <gtest/gtest.h>

#include <deque>

namespace pipehook {
namespace {

// An event log whose answers the test scripts: each write takes the next scripted failure, or
// succeeds (stored, or duplicate for a key seen before). Records what was written.
class scripted_log final : public store::event_log {
 public:
  std::deque<failure> failures;   // the next writes fail with these, in order
  std::vector<std::string> keys;  // event keys stored
  std::vector<std::size_t> probes;  // the room each probe asked for
  std::size_t quarantined = 0;

  void append(event::event ev, store::append_callback done) override {
    if (auto f = next_failure()) return done(*f);
    const bool dup = std::find(keys.begin(), keys.end(), ev.event_key) != keys.end();
    if (!dup) keys.push_back(ev.event_key);
    done(store::appended{dup ? store::append_status::duplicate : store::append_status::stored, static_cast<std::int64_t>(keys.size())});
  }
  void append(store::quarantined, store::append_callback done) override {
    if (auto f = next_failure()) return done(*f);
    done(store::appended{store::append_status::quarantined, static_cast<std::int64_t>(++quarantined)});
  }
  void probe(std::size_t room, store::append_callback done) override {
    probes.push_back(room);
    if (auto f = next_failure()) return done(*f);
    done(store::appended{store::append_status::probed, 0});
  }
  void update_deliveries(std::vector<store::delivery_update>, store::append_callback done) override { done(store::appended{}); }
  void append_reparsed(std::int64_t, event::event, store::append_callback done) override { done(store::appended{}); }
  void purge(std::int64_t, int, store::append_callback done) override { done(store::appended{}); }
  void compact(std::vector<store::compacted_body>, store::append_callback done) override { done(store::appended{}); }
  void close() override {}
  std::size_t queue_depth() const override { return 0; }

 private:
  std::optional<failure> next_failure() {
    if (failures.empty()) return std::nullopt;
    failure f = failures.front();
    failures.pop_front();
    return f;
  }
};

struct endpoint_fixture : ::testing::Test {
  boost::asio::io_context ioc;
  scripted_log log;
  ingest::options opt = [] {
    ingest::options o;
    o.user = test::test_user;
    o.password = test::test_password;
    o.retry_after_s = 7;
    return o;
  }();
  ingest::webhook_endpoint ep{opt, log};
  const std::string auth = test::basic_auth(test::test_user, test::test_password);

  http::request_head head(std::string_view authorization, std::string_view content_type = "application/json") {
    http::request_head h;
    h.method = "POST";
    h.path = h.target = "/webhooks/pipedrive";
    h.authorization = authorization;
    h.content_type = content_type;
    h.client = "203.0.113.9";
    return h;
  }
  http::response post(std::string body) {
    body.reserve(body.size() + http::body_padding);
    return run_blocking(ioc, ep.handle(head(auth), std::move(body)));
  }
  http::response ready() { return run_blocking(ioc, ep.ready()); }
};

std::string header(const http::response& r, std::string_view name) {
  for (const auto& [k, v] : r.headers)
    if (k == name) return v;
  return {};
}

TEST_F(endpoint_fixture, the_head_is_checked_for_credentials_then_content_type) {
  EXPECT_FALSE(ep.check(head(auth)));
  EXPECT_FALSE(ep.check(head("basic " + auth.substr(6))));  // the scheme in any case
  EXPECT_FALSE(ep.check(head(auth, "application/json; charset=utf-8")));
  EXPECT_FALSE(ep.check(head(auth, "application/vnd.pipedrive+json")));
  for (const std::string& bad : std::vector<std::string>{std::string(), test::basic_auth(test::test_user, "nope"), test::basic_auth("x", test::test_password),
                                "Basic " + base64_encode("no-colon"), std::string("Basic !!!!"), std::string("Bearer abc")}) {
    auto r = ep.check(head(bad, "text/plain"));  // credentials first: 401 even with a wrong type
    ASSERT_TRUE(r) << bad;
    EXPECT_EQ(r->status, 401u) << bad;
    EXPECT_EQ(header(*r, "WWW-Authenticate"), "Basic realm=\"pipehook\", charset=\"UTF-8\"");
  }
  auto r = ep.check(head(auth, "text/plain"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 415u);
  EXPECT_NE(r->body.find("text/plain"), std::string::npos);
}

TEST_F(endpoint_fixture, allow_from_comes_before_credentials) {
  opt.allow_from = {*parse_cidr("198.51.100.0/24", "test")};
  ingest::webhook_endpoint limited(opt, log);
  auto r = limited.check(head(auth));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 403u);
  EXPECT_NE(r->body.find("203.0.113.9"), std::string::npos);
}

TEST_F(endpoint_fixture, every_parse_outcome_and_store_result_has_its_answer) {
  const std::string body = test::v2_body("unit-1");
  auto r = post(body);
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(r.body, R"({"status":"stored","id":1})");
  r = post(test::v2_body("unit-1", "deal", "42", 2));  // Pipedrive's retry of the same event
  EXPECT_EQ(r.body, R"({"status":"duplicate","id":1})");
  r = post(R"({"meta":)");
  EXPECT_EQ(r.status, 400u);
  EXPECT_EQ(r.outcome, "invalid_json");
  r = post(R"({"meta":{"version":"9.0"}})");
  EXPECT_EQ(r.status, 202u);
  EXPECT_NE(r.body.find("\"quarantined\""), std::string::npos);

  for (auto [code, tag] : {std::pair{errc::store_full, "store_full"}, {errc::store_busy, "store_busy"}, {errc::queue_full, "queue_full"},
                           {errc::store_closed, "shutting_down"}, {errc::store_io, "store_unavailable"}}) {
    log.failures.push_back(make_failure(code, "scripted"));
    r = post(test::v2_body(std::string("unit-") + tag));
    EXPECT_EQ(r.status, 503u) << tag;
    EXPECT_EQ(r.outcome, tag);
    EXPECT_EQ(header(r, "Retry-After"), "7");
  }
  EXPECT_EQ(log.keys.size(), 1u);  // nothing answered 503 was stored
}

TEST_F(endpoint_fixture, readiness_probes_with_the_room_the_last_failed_write_needed) {
  EXPECT_EQ(ready().status, 200u);
  EXPECT_EQ(log.probes.back(), 0u);

  std::string big = test::v2_body("big");
  big.insert(big.find("\"title\""), "\"notes\":\"" + std::string(50'000, 'n') + "\",");
  log.failures.push_back(make_failure(errc::store_full, "database or disk is full"));
  EXPECT_EQ(post(big).status, 503u);

  log.failures.push_back(make_failure(errc::store_full, "database or disk is full"));  // still no room
  auto r = ready();
  EXPECT_EQ(r.status, 503u);
  EXPECT_NE(r.body.find("database or disk is full"), std::string::npos) << r.body;
  EXPECT_EQ(log.probes.back(), big.size());

  EXPECT_EQ(ready().status, 200u);  // room again: the probe of that size commits
  EXPECT_EQ(log.probes.back(), big.size());
  EXPECT_EQ(ready().status, 200u);  // and readiness is back to the small probe
  EXPECT_EQ(log.probes.back(), 0u);

  // A full queue is load, not a broken log: readiness does not follow it.
  log.failures.push_back(make_failure(errc::queue_full, "queue full"));
  EXPECT_EQ(post(big).status, 503u);
  EXPECT_EQ(ready().status, 200u);
  EXPECT_EQ(log.probes.back(), 0u);

  ep.set_draining();
  EXPECT_EQ(ready().status, 503u);
}

}  // namespace
}  // namespace pipehook
