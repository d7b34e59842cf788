// Dispatch: the rules (match filters, retry schedule, ordering), the outbox written with each new
// event, and the http handler against a real HTTP sink on loopback: bodies, headers, signatures,
// a sink that is down and comes back, 4xx to dead, a restart with deliveries pending, per-entity
// order, replay and retry from the CLI.
#include "http_sink.hpp"
#include "pipehook/core/codec.hpp"
#include "pipehook/core/time.hpp"
#include "pipehook/dispatch/handler.hpp"
#include "pipehook/dispatch/policy.hpp"
#include "pipehook/pipedrive/parse.hpp"
#include "pipehook/store/event_log.hpp"
#include "pipehook/store/outbox.hpp"
#include "pg_server.hpp"
#include "support.hpp"

#include <boost/json/parse.hpp>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <future>
#include <mutex>
#include <set>

namespace pipehook {
namespace {

using test::canned_response;
using test::http_test_server;
using test::recorded_request;

// ---- rules ---------------------------------------------------------------------------------------

TEST(dispatch_rules, glob_patterns) {
  struct row {
    const char* pattern;
    const char* text;
    bool match;
  };
  for (const row& r : std::vector<row>{{"deal", "deal", true},
                                       {"deal", "deal_product", false},
                                       {"deal*", "deal_product", true},
                                       {"*", "", true},
                                       {"*product", "deal_product", true},
                                       {"d*l*t", "deal_product", true},
                                       {"d*x", "deal", false},
                                       {"", "deal", false}}) {
    SCOPED_TRACE(std::string(r.pattern) + " ~ " + r.text);
    EXPECT_EQ(dispatch::glob_match(r.pattern, r.text), r.match);
  }
}

TEST(dispatch_rules, match_filters_need_every_listed_field) {
  event::event e;
  e.entity = "deal";
  e.action = "change";
  e.company_id = "77";
  config::match_config m;
  EXPECT_TRUE(dispatch::matches(m, e));  // nothing listed: everything
  m.entity = {"person", "deal*"};
  EXPECT_TRUE(dispatch::matches(m, e));
  m.action = {"create", "delete"};
  EXPECT_FALSE(dispatch::matches(m, e));
  m.action = {"*"};
  m.company_id = {"78"};
  EXPECT_FALSE(dispatch::matches(m, e));
  m.company_id = {"77"};
  EXPECT_TRUE(dispatch::matches(m, e));
}

// The bodies of a mixed stream for when_changed: entity id -> (body, goes to a handler with
// when_changed = ["stage_id", <custom field key>, "*created"]).
const std::string region_key = "5f0e1c2d3b4a59687766554433221100aabbccdd";
std::vector<std::pair<std::string, bool>> when_changed_stream() {
  const std::string region = R"({")" + region_key + R"(":{"type":"enum","id":7}})";
  return {
      {test::v2("w1", "deal", "1", "change", R"({"id":1,"stage_id":3,"title":"A"})", R"({"stage_id":2})"), true},
      {test::v2("w2", "deal", "2", "change", R"({"id":2,"stage_id":3,"title":"B2"})", R"({"title":"B"})"), false},
      {test::v2("w3", "deal", "3", "change", R"({"id":3,"custom_fields":)" + region + "}",
                R"({"custom_fields":{")" + region_key + R"(":{"type":"enum","id":6}}})"),
       true},
      {test::v2("w4", "deal", "4", "create", R"({"id":4,"stage_id":1})", "null"), true},
      {test::v2("w5", "deal", "5", "delete", "null", R"({"id":5,"stage_id":1})"), false},
      {test::v1("updated", "deal", "6", R"({"id":6,"stage_id":4,"value":10})", R"({"id":6,"stage_id":3,"value":10})",
                "1714557600000001"),
       true},
      {test::v1("updated", "deal", "7", R"({"id":7,"stage_id":4,"value":20})", R"({"id":7,"stage_id":4,"value":10})",
                "1714557600000002"),
       false},
      {test::v1("updated", "deal", "8", R"({"id":8,")" + region_key + R"(":"12"})",
                R"({"id":8,")" + region_key + R"(":"11"})", "1714557600000003"),
       true},
  };
}

// when_changed: a change passes when one of the fields it changed is listed (v2: the keys of
// `previous`, a custom field by its key; v1: the fields that differ between previous and current);
// a create only with "*created", a delete only with "*deleted".
TEST(dispatch_rules, when_changed_passes_the_changes_that_touch_a_listed_field) {
  const std::vector<std::string> fields{"stage_id", region_key, "*created"};
  for (const auto& [body, expected] : when_changed_stream()) {
    auto parsed = pipedrive::parse_webhook(body, 0);
    ASSERT_EQ(parsed.status, pipedrive::parse_status::event) << body;
    SCOPED_TRACE(parsed.ev.entity_id + " " + parsed.ev.action);
    EXPECT_EQ(dispatch::changed_match(fields, parsed.ev), expected);
    EXPECT_TRUE(dispatch::changed_match({}, parsed.ev));  // nothing listed: every event
  }
  auto deleted = pipedrive::parse_webhook(when_changed_stream()[4].first, 0);
  EXPECT_TRUE(dispatch::changed_match({"*deleted"}, deleted.ev));
  EXPECT_FALSE(dispatch::changed_match({"stage_id"}, deleted.ev));
  auto v2_custom = pipedrive::parse_webhook(when_changed_stream()[2].first, 0);
  EXPECT_TRUE(dispatch::changed_match({"custom_fields." + region_key}, v2_custom.ev));  // the full diff name works too
  // By name, with the cached field definitions (any case); without them a name matches nothing.
  dispatch::field_definitions defs;
  defs["deal"].emplace(region_key, store::field_definition{region_key, "Region", "enum", {}});
  EXPECT_FALSE(dispatch::changed_match({"Region"}, v2_custom.ev));
  EXPECT_TRUE(dispatch::changed_match({"region"}, v2_custom.ev, &defs));
  auto v1_custom = pipedrive::parse_webhook(when_changed_stream()[7].first, 0);
  EXPECT_TRUE(dispatch::changed_match({"REGION"}, v1_custom.ev, &defs));
  EXPECT_FALSE(dispatch::changed_match({"Segment"}, v1_custom.ev, &defs));
}

TEST(dispatch_rules, retry_schedule_with_jitter_and_the_last_step_repeating) {
  config::retry_config r;
  r.schedule_ms = {1'000, 5'000, 30'000};
  using std::chrono::milliseconds;
  EXPECT_EQ(dispatch::retry_delay(r, 1, 0.0), milliseconds(800));
  EXPECT_EQ(dispatch::retry_delay(r, 1, 0.5), milliseconds(1'000));
  EXPECT_LT(dispatch::retry_delay(r, 1, 0.999), milliseconds(1'200));
  EXPECT_EQ(dispatch::retry_delay(r, 2, 0.5), milliseconds(5'000));
  EXPECT_EQ(dispatch::retry_delay(r, 3, 0.5), milliseconds(30'000));
  EXPECT_EQ(dispatch::retry_delay(r, 9, 0.5), milliseconds(30'000));
}

TEST(dispatch_rules, dead_after_max_attempts_or_max_age_and_retry_after_is_honoured) {
  config::retry_config r;
  r.schedule_ms = {1'000};
  r.max_age_ms = 60'000;
  const std::int64_t t0 = 1'000'000'000'000;
  auto next = dispatch::decide_after_failure(r, 1, t0, t0 + 1'000'000, std::nullopt, 0.5);
  EXPECT_FALSE(next.dead);
  EXPECT_EQ(next.due_at_us, t0 + 2'000'000);
  next = dispatch::decide_after_failure(r, 1, t0, t0, std::chrono::milliseconds(30'000), 0.5);
  EXPECT_EQ(next.due_at_us, t0 + 30'000'000);  // the receiver asked for 30 s
  EXPECT_TRUE(dispatch::decide_after_failure(r, 5, t0, t0 + 60'000'000, std::nullopt, 0.5).dead);
  r.max_attempts = 3;
  EXPECT_FALSE(dispatch::decide_after_failure(r, 2, t0, t0, std::nullopt, 0.5).dead);
  EXPECT_TRUE(dispatch::decide_after_failure(r, 3, t0, t0, std::nullopt, 0.5).dead);
}

// ---- the outbox ----------------------------------------------------------------------------------

event::event make_event(const std::string& key, const std::string& entity, const std::string& id) {
  event::event e;
  e.event_key = key;
  e.entity = entity;
  e.action = "change";
  e.source_action = "change";
  e.entity_id = id;
  e.occurred_at_us = e.received_at_us = now_us();
  e.body = R"({"meta":{},"data":{"id":)" + id + "}}";
  return e;
}

store::append_result append_sync(store::event_log& log, event::event e) {
  std::promise<store::append_result> done;
  auto f = done.get_future();
  log.append(std::move(e), [&done](store::append_result r) { done.set_value(std::move(r)); });
  return f.get();
}

void update_sync(store::event_log& log, std::vector<store::delivery_update> u) {
  std::promise<void> done;
  log.update_deliveries(std::move(u), [&done](store::append_result) { done.set_value(); });
  done.get_future().get();
}

std::vector<std::string> due_entities(store::outbox& ob, const std::string& handler, bool ordered) {
  auto rows = ob.due(handler, now_us(), 100, ordered);
  EXPECT_TRUE(rows) << rows.error().message;
  std::vector<std::string> out;
  for (const auto& r : *rows) out.push_back(r.ev->ev.entity + "/" + r.ev->ev.entity_id + "#" + r.ev->ev.event_key);
  return out;
}

// The outbox's rows on both backends.
struct outbox : ::testing::TestWithParam<store::location::kind> {
  test::temp_dir dir;
  config::config c = test::test_config(dir);
  store::location where;
  outbox() {
    test::use_backend(c, GetParam());
    where = test::location_of(c);
  }
};

TEST_P(outbox, rows_commit_with_new_events_only_and_follow_the_router) {
  store::writer_options o;
  o.route = [](const event::event& e, std::vector<store::route>& out) {
    out.push_back({"all", false});
    if (e.entity == "deal") out.push_back({"deals", true});
  };
  auto log = test::open_log(where, o);
  ASSERT_TRUE(log);
  ASSERT_TRUE(append_sync(**log, make_event("k1", "deal", "1")));
  ASSERT_TRUE(append_sync(**log, make_event("k2", "person", "1")));
  auto dup = append_sync(**log, make_event("k1", "deal", "1"));
  ASSERT_TRUE(dup);
  EXPECT_EQ(dup->status, store::append_status::duplicate);
  auto ob = store::outbox::open(where);
  ASSERT_TRUE(ob) << ob.error().message;
  EXPECT_EQ(due_entities(**ob, "all", false).size(), 2u);  // the duplicate added nothing
  EXPECT_EQ(due_entities(**ob, "deals", true), std::vector<std::string>{"deal/1#k1"});
  auto counts = (*ob)->counts();
  ASSERT_TRUE(counts);
  ASSERT_EQ(counts->size(), 2u);
  (*log)->close();
}

TEST_P(outbox, ordered_rows_wait_for_their_entity_and_only_for_it) {
  store::writer_options o;
  o.route = [](const event::event&, std::vector<store::route>& out) { out.push_back({"h", true}); };
  auto log = test::open_log(where, o);
  ASSERT_TRUE(log);
  for (auto [key, entity, id] : {std::tuple{"a1", "deal", "1"}, std::tuple{"a2", "deal", "1"},
                                 std::tuple{"b1", "deal", "2"}, std::tuple{"c1", "person", "1"}})
    ASSERT_TRUE(append_sync(**log, make_event(key, entity, id)));
  auto ob = store::outbox::open(where);
  ASSERT_TRUE(ob);
  EXPECT_EQ(due_entities(**ob, "h", true), (std::vector<std::string>{"deal/1#a1", "deal/2#b1", "person/1#c1"}));
  EXPECT_EQ(due_entities(**ob, "h", false).size(), 4u);  // unordered: everything due

  auto rows = (*ob)->due("h", now_us(), 100, true);
  ASSERT_TRUE(rows);
  const std::int64_t a1 = (*rows)[0].id;
  // a1 fails and waits a minute: a2 (same deal) waits with it; the others do not.
  update_sync(**log, {{a1, store::delivery_state::pending, 1, now_us() + 60'000'000, "HTTP 503"}});
  EXPECT_EQ(due_entities(**ob, "h", true), (std::vector<std::string>{"deal/2#b1", "person/1#c1"}));
  // A minute later a1 is claimed again and delivered: a2 is next in line for deal 1.
  auto again = (*ob)->due("h", now_us() + 61'000'000, 100, true);
  ASSERT_TRUE(again);
  ASSERT_FALSE(again->empty());
  EXPECT_EQ((*again)[0].id, a1);
  update_sync(**log, {{a1, store::delivery_state::done, 2, now_us(), ""}});
  EXPECT_EQ(due_entities(**ob, "h", true), (std::vector<std::string>{"deal/1#a2", "deal/2#b1", "person/1#c1"}));
  auto counts = (*ob)->counts();
  ASSERT_TRUE(counts);
  EXPECT_EQ((*counts)[0].done, 1);
  EXPECT_EQ((*counts)[0].pending, 3);
  EXPECT_EQ((*counts)[0].last_error, "HTTP 503");
  (*log)->close();
}

TEST(outbox, a_version_1_event_log_is_upgraded_in_place_and_keeps_its_events) {
  test::temp_dir dir;
  const std::string path = dir.file("old.db");
  {  // the schema pipehook 0.1 (issue 2) wrote, with one event in it
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    const char* v1 = R"sql(
PRAGMA journal_mode=WAL;
CREATE TABLE events (id INTEGER PRIMARY KEY, event_key TEXT NOT NULL UNIQUE, version INTEGER NOT NULL,
  entity TEXT NOT NULL, action TEXT NOT NULL, source_action TEXT NOT NULL, entity_id TEXT, company_id TEXT,
  user_id TEXT, webhook_id TEXT, event_id TEXT, correlation_id TEXT, change_source TEXT, type TEXT, host TEXT,
  merged_to_id TEXT, merged_from_id TEXT, occurred_at INTEGER NOT NULL, received_at INTEGER NOT NULL,
  attempt INTEGER NOT NULL, is_bulk INTEGER NOT NULL, deliveries INTEGER NOT NULL DEFAULT 1,
  last_attempt INTEGER NOT NULL, last_received_at INTEGER NOT NULL, body TEXT NOT NULL);
CREATE TABLE quarantine (id INTEGER PRIMARY KEY, received_at INTEGER NOT NULL, reason TEXT NOT NULL,
  content_type TEXT, remote TEXT, body TEXT NOT NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;
INSERT INTO events (event_key, version, entity, action, source_action, entity_id, occurred_at, received_at,
  attempt, is_bulk, last_attempt, last_received_at, body)
  VALUES ('old-key', 2, 'deal', 'change', 'change', '7', 1, 1, 1, 0, 1, 1, '{}');
PRAGMA user_version = 1;
)sql";
    ASSERT_EQ(sqlite3_exec(db, v1, nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
    sqlite3_close(db);
  }
  ASSERT_FALSE(store::outbox::open(path));  // not yet: the daemon upgrades it
  store::sqlite_options o;
  o.path = path;
  o.route = [](const event::event&, std::vector<store::route>& out) { out.push_back({"h", false}); };
  auto log = store::open_sqlite_event_log(o);
  ASSERT_TRUE(log) << log.error().message;
  ASSERT_TRUE(append_sync(**log, make_event("new-key", "deal", "8")));
  auto rd = store::reader::open(path);
  ASSERT_TRUE(rd);
  auto events = (*rd)->list({}, false);
  ASSERT_TRUE(events);
  EXPECT_EQ(events->size(), 2u);
  auto ob = store::outbox::open(path);
  ASSERT_TRUE(ob) << ob.error().message;
  EXPECT_EQ(due_entities(**ob, "h", false), std::vector<std::string>{"deal/8#new-key"});  // old events are not sent
  (*log)->close();
}

// ---- the http handler against a real sink ----------------------------------------------------------

const std::string secret_b64 = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";  // base64 of the signing key

config::handler_config http_handler_config(const std::string& name, unsigned short port,
                                           const std::string& body = "original") {
  config::handler_config h = test::http_sink_handler(name, port);
  h.concurrency = 4;
  h.retry.schedule_ms = {100};
  h.settings["url"] = "http://127.0.0.1:" + std::to_string(port) + "/hooks/in?src=pipehook";
  h.settings["body"] = body;
  h.settings["signing_secret"] = "whsec_" + secret_b64;
  h.settings["timeout"] = std::string("2s");
  h.settings["headers"] = std::map<std::string, std::string>{{"Authorization", "Bearer ${PIPEHOOK_TEST_SINK_TOKEN}"}};
  return h;
}

std::string expected_signature(const recorded_request& r) {
  unsigned char key[64];
  const int key_len = EVP_DecodeBlock(key, reinterpret_cast<const unsigned char*>(secret_b64.data()),
                                      static_cast<int>(secret_b64.size()));
  const std::string content = r.header("webhook-id") + "." + r.header("webhook-timestamp") + "." + r.body;
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  HMAC(EVP_sha256(), key, key_len, reinterpret_cast<const unsigned char*>(content.data()), content.size(), mac, &mac_len);
  unsigned char b64[128];
  const int n = EVP_EncodeBlock(b64, mac, static_cast<int>(mac_len));
  return "v1," + std::string(reinterpret_cast<char*>(b64), static_cast<std::size_t>(n));
}

canned_response ok_response(const recorded_request&) { return {200, "{}", {}, "application/json"}; }

std::set<std::string> ids_delivered(const http_test_server& sink) {
  std::set<std::string> out;
  for (const auto& r : sink.requests()) out.insert(r.header("webhook-id"));
  return out;
}

// A daemon with the given handlers, and a client posting webhooks to it; on both backends.
struct dispatch_fixture : ::testing::TestWithParam<store::location::kind> {
  test::temp_dir dir;
  config::config c = test::test_config(dir);
  dispatch_fixture() { test::use_backend(c, GetParam()); }
  store::location where() const { return test::location_of(c); }
  std::unique_ptr<test::running_daemon> daemon;
  std::unique_ptr<test::http_client> client;

  void SetUp() override { ::setenv("PIPEHOOK_TEST_SINK_TOKEN", "sink-token", 1); }
  void start(std::vector<config::handler_config> handlers) {
    c.handlers = std::move(handlers);
    daemon = std::make_unique<test::running_daemon>(c);
    client = std::make_unique<test::http_client>(daemon->port());
  }
  unsigned post(const std::string& body) {
    return client->post(body, test::basic_auth(test::test_user, test::test_password)).status;
  }
  // A config file naming the same event log and handler, for the CLI.
  std::string cli_config(unsigned short sink_port) {
    const std::string path = dir.file("p.toml");
    test::write_file(path, test::store_toml(c) +
                               "[[handlers]]\nname = \"sink\"\ntype = \"http\"\nurl = \"http://127.0.0.1:" +
                               std::to_string(sink_port) + "/\"\n");
    return path;
  }
};

// handler.rate: 100 deliveries at rate = "20/s" with a burst of 5 take at least (100 - 5) / 20 =
// 4.75 s, and no stretch of time sees more than the burst plus the rate times its length. The
// sink answers at once and the concurrency (8) is not the limit.
TEST_P(dispatch_fixture, a_rate_spreads_deliveries_and_never_exceeds_its_burst) {
  std::mutex mu;
  std::vector<std::chrono::steady_clock::time_point> arrivals;
  http_test_server sink([&](const recorded_request&) {
    std::lock_guard lk(mu);
    arrivals.push_back(std::chrono::steady_clock::now());
    return canned_response{200, "{}", {}};
  });
  auto h = test::http_sink_handler("paced", sink.port());
  h.concurrency = 8;
  h.rate_per_s = 20;
  h.rate_text = "20/s";
  h.rate_burst = 5;
  start({h});
  for (int i = 0; i < 100; ++i) ASSERT_EQ(post(test::v2_body("rate-" + std::to_string(i), "deal", std::to_string(i))), 200u);
  ASSERT_TRUE(test::wait_for([&] { return sink.request_count() == 100; }, std::chrono::seconds(20)));
  std::lock_guard lk(mu);
  const double span = std::chrono::duration<double>(arrivals.back() - arrivals.front()).count();
  EXPECT_GE(span, 4.5) << "100 deliveries at 20/s with a burst of 5 came in " << span << " s";
  EXPECT_LT(span, 10.0) << "the rate held them back far longer than it should";
  for (std::size_t i = 0; i < arrivals.size(); ++i)
    for (std::size_t j = i; j < arrivals.size(); ++j) {
      const double t = std::chrono::duration<double>(arrivals[j] - arrivals[i]).count();
      // A bucket of 5 refilled at 20/s lets at most 5 + 20 t start in t; 1 of slack for the
      // time between a start and the sink's clock.
      ASSERT_LE(static_cast<double>(j - i + 1), 5 + 20 * t + 1) << "deliveries " << i << ".." << j << " within " << t << " s";
    }
  EXPECT_TRUE(test::metrics_show(daemon->admin_port(), "pipehook_handler_rate_per_second{handler=\"paced\"} 20"));
}

// The admin API's view of one handler (GET /api/v1/handlers).
boost::json::object handler_view(unsigned short admin_port, const std::string& name) {
  test::http_client admin(admin_port);
  const auto r = admin.request("GET", "/api/v1/handlers");
  if (r.status != 200) return {};
  const boost::json::value all = boost::json::parse(r.body);
  for (const auto& h : all.at("handlers").as_array())
    if (h.at("handler").as_string() == name) return h.as_object();
  return {};
}

std::string state_of(const boost::json::object& h) {
  return h.contains("state") ? std::string(h.at("state").as_string()) : std::string();
}

TEST_P(dispatch_fixture, a_failing_destination_pauses_its_handler_probes_it_and_resumes_when_it_recovers) {
  std::atomic<bool> failing{true};
  std::atomic<int> failed{0};
  http_test_server sink([&](const recorded_request&) {
    if (failing) {
      ++failed;
      return canned_response{503, "{\"error\":\"maintenance\"}", {}};
    }
    return canned_response{200, "{}", {}};
  });
  std::mutex mu;
  std::vector<recorded_request> notices;
  http_test_server alert_sink([&](const recorded_request& r) {
    std::lock_guard lk(mu);
    notices.push_back(r);
    return canned_response{204, "", {}};
  });
  c.alerts.url = "http://127.0.0.1:" + std::to_string(alert_sink.port()) + "/alerts";
  c.alerts.signing_secret = "whsec_" + secret_b64;
  auto h = test::http_sink_handler("flaky", sink.port());
  h.concurrency = 1;
  h.retry.schedule_ms = {50};  // without the breaker: 20 attempts a second
  h.pause_after = 3;
  h.pause_for_ms = 500;
  h.pause_max_ms = 2'000;
  start({h});
  for (int i = 0; i < 5; ++i) ASSERT_EQ(post(test::v2_body("cb-" + std::to_string(i), "deal", std::to_string(i))), 200u);

  // 3 failures pause it; each failed probe doubles the pause: 500 ms, 1 s, 2 s (the cap).
  ASSERT_TRUE(test::wait_for([&] { return state_of(handler_view(daemon->admin_port(), "flaky")) == "paused"; },
                             std::chrono::seconds(10)));
  EXPECT_TRUE(test::metrics_show(daemon->admin_port(), "pipehook_handler_paused{handler=\"flaky\",by=\"breaker\"} 1"));
  ASSERT_TRUE(test::wait_for([&] {
    const auto v = handler_view(daemon->admin_port(), "flaky");
    return state_of(v) == "paused" && test::metrics_show(daemon->admin_port(), "pipehook_handler_pauses_total{handler=\"flaky\"} 1") &&
           // 2 failed probes: the pause is at its cap now, the next probe 2 s away
           v.at("pause_ms").is_int64() && v.at("pause_ms").as_int64() == 2'000;
  }, std::chrono::seconds(10)));
  // Exactly the threshold and the probes reached the sink: nothing was hammered, nothing is dead.
  EXPECT_EQ(failed.load(), 5);
  EXPECT_EQ(test::counts_of(where()).dead, 0);

  failing = false;  // the destination is back: the next probe succeeds and every event goes out
  ASSERT_TRUE(test::wait_for([&] { return ids_delivered(sink).size() == 5 && test::counts_of(where()).done == 5; },
                             std::chrono::seconds(15)));
  EXPECT_EQ(state_of(handler_view(daemon->admin_port(), "flaky")), "active");
  EXPECT_TRUE(test::metrics_show(daemon->admin_port(), "pipehook_handler_paused{handler=\"flaky\",by=\"breaker\"} 0"));
  EXPECT_EQ(sink.request_count(), 10u);  // 5 failed + 5 delivered, none twice

  // Alerts: paused, then resumed; each signed per Standard Webhooks.
  ASSERT_TRUE(test::wait_for([&] {
    std::lock_guard lk(mu);
    return notices.size() >= 2;
  }, std::chrono::seconds(10)));
  std::lock_guard lk(mu);
  ASSERT_EQ(notices.size(), 2u);
  const auto first = boost::json::parse(notices[0].body).as_object();
  const auto second = boost::json::parse(notices[1].body).as_object();
  EXPECT_EQ(first.at("type").as_string(), "handler.paused");
  EXPECT_EQ(first.at("subject").as_string(), "flaky");
  EXPECT_NE(std::string(first.at("details").at("last_error").as_string()).find("503"), std::string::npos);
  EXPECT_EQ(second.at("type").as_string(), "handler.resumed");
  for (const auto& n : notices) {
    EXPECT_EQ(n.target, "/alerts");
    EXPECT_EQ(n.header("webhook-signature"), expected_signature(n));
    EXPECT_EQ(n.header("webhook-id"), std::string(boost::json::parse(n.body).at("id").as_string()));
  }
}

TEST_P(dispatch_fixture, handlers_pause_by_hand_holds_deliveries_until_resume) {
  http_test_server sink(ok_response);
  start({test::http_sink_handler("sink", sink.port())});
  const std::string cfg_path = cli_config(sink.port());
  ASSERT_EQ(post(test::v2_body("before", "deal", "1")), 200u);
  ASSERT_TRUE(test::wait_for([&] { return sink.request_count() == 1; }, std::chrono::seconds(10)));

  auto paused = test::run_cli({"--config", cfg_path, "handlers", "pause", "sink"});
  ASSERT_EQ(paused.exit_code, 0) << paused.err;
  // serve takes it up from the event log; the metric says so
  ASSERT_TRUE(test::wait_for([&] { return test::metrics_show(daemon->admin_port(), "pipehook_handler_paused{handler=\"sink\",by=\"hand\"} 1"); },
                             std::chrono::seconds(10)));
  for (int i = 0; i < 3; ++i) ASSERT_EQ(post(test::v2_body("held-" + std::to_string(i), "deal", std::to_string(i))), 200u);
  ASSERT_TRUE(test::wait_for([&] { return test::counts_of(where()).pending == 3; }, std::chrono::seconds(10)));
  // No probes for a pause by hand: a second goes by (ten polls of the outbox) without a delivery.
  EXPECT_FALSE(test::wait_for([&] { return sink.request_count() > 1; }, std::chrono::seconds(1)));
  auto status = test::run_cli({"--config", cfg_path, "handlers", "status", "--format", "json"});
  ASSERT_EQ(status.exit_code, 0) << status.err;
  const auto arr = boost::json::parse(status.out).as_array();
  ASSERT_EQ(arr.size(), 1u);
  EXPECT_EQ(arr[0].at("state").as_string(), "paused_by_hand");
  EXPECT_EQ(arr[0].at("state_changed_by").as_string(), "cli");
  EXPECT_EQ(arr[0].at("pending").as_int64(), 3);

  auto again = test::run_cli({"--config", cfg_path, "handlers", "pause", "sink"});
  EXPECT_EQ(again.exit_code, 0);
  EXPECT_NE(again.out.find("already paused"), std::string::npos) << again.out;
  auto unknown = test::run_cli({"--config", cfg_path, "handlers", "resume", "nope"});
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_NE(unknown.err.find("no handler named \"nope\""), std::string::npos) << unknown.err;

  auto resumed = test::run_cli({"--config", cfg_path, "handlers", "resume", "sink"});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  ASSERT_TRUE(test::wait_for([&] { return sink.request_count() == 4; }, std::chrono::seconds(10)));
  EXPECT_EQ(ids_delivered(sink).size(), 4u);

  // The admin API does the same (the page's buttons).
  test::http_client admin(daemon->admin_port());
  auto r = admin.request("POST", "/api/v1/handlers/sink/pause");
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(boost::json::parse(r.body).at("state").as_string(), "paused_by_hand");
  EXPECT_EQ(admin.request("POST", "/api/v1/handlers/nope/pause").status, 404u);
  EXPECT_EQ(admin.request("POST", "/api/v1/handlers/sink/stop").status, 404u);
  r = admin.request("POST", "/api/v1/handlers/sink/resume");
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(boost::json::parse(r.body).at("state").as_string(), "active");
}

// mTLS: a sink that requires a client certificate its CA signed gets the deliveries of a handler
// with client_cert/client_key, and refuses the handshake of one without (the rows stay pending).
TEST_P(dispatch_fixture, a_client_certificate_opens_a_sink_that_requires_one) {
  const auto server_cert = test::make_self_signed_localhost();
  const auto client_cert = test::make_self_signed_localhost();  // self-signed: it is its own CA
  http_test_server sink(ok_response, 0, server_cert, client_cert.cert_pem);
  test::write_file(dir.file("ca.pem"), server_cert.cert_pem);
  test::write_file(dir.file("client.pem"), client_cert.cert_pem);
  test::write_file(dir.file("client.key"), client_cert.key_pem);
  auto with = test::http_sink_handler("with_cert", sink.port());
  with.settings["url"] = "https://localhost:" + std::to_string(sink.port()) + "/in";
  with.settings["ca_file"] = dir.file("ca.pem");
  with.settings["client_cert"] = dir.file("client.pem");
  with.settings["client_key"] = dir.file("client.key");
  auto without = with;
  without.name = "without_cert";
  without.where = "handlers.without_cert";
  without.settings.erase("client_cert");
  without.settings.erase("client_key");
  without.pause_after = 0;
  start({with, without});
  for (int i = 0; i < 3; ++i) ASSERT_EQ(post(test::v2_body("mtls-" + std::to_string(i), "deal", std::to_string(i))), 200u);
  ASSERT_TRUE(test::wait_for([&] { return sink.request_count() == 3; }, std::chrono::seconds(10)));
  ASSERT_TRUE(test::wait_for([&] {
    const auto c = test::counts_of(where(), "without_cert");
    return c.retrying == 3 && !c.last_error.empty();
  }, std::chrono::seconds(10)));
  EXPECT_EQ(sink.request_count(), 3u);  // only the handler with the certificate got through

  // A key that is not the certificate's is a config error, named.
  auto wrong = with;
  test::write_file(dir.file("other.key"), test::make_self_signed_localhost().key_pem);
  wrong.settings["client_key"] = dir.file("other.key");
  auto built = dispatch::make_handler(wrong, boost::asio::system_executor());
  ASSERT_FALSE(built);
  EXPECT_NE(built.error().message.find("handlers.with_cert.client_key"), std::string::npos) << built.error().message;
  EXPECT_NE(built.error().message.find("private key of handlers.with_cert.client_cert: key values mismatch"), std::string::npos)
      << built.error().message;
}

// OAuth 2.0 client credentials against a loopback token endpoint: one token for many deliveries,
// a new one once it expires, and a new one when the destination answers 401.
TEST_P(dispatch_fixture, oauth2_client_credentials_fetch_reuse_and_refresh_the_token) {
  std::mutex mu;
  std::vector<recorded_request> token_requests;
  std::atomic<int> ttl{3600};
  http_test_server token_endpoint([&](const recorded_request& r) {
    std::lock_guard lk(mu);
    token_requests.push_back(r);
    return canned_response{200, "{\"access_token\":\"tok-" + std::to_string(token_requests.size()) +
                                    "\",\"token_type\":\"Bearer\",\"expires_in\":" + std::to_string(ttl.load()) + "}", {}};
  });
  std::set<std::string> revoked;  // under mu
  http_test_server sink([&](const recorded_request& r) {
    std::lock_guard lk(mu);
    const std::string auth = r.header("authorization");
    if (auth.rfind("Bearer tok-", 0) != 0 || revoked.count(auth.substr(7))) return canned_response{401, "{\"error\":\"invalid_token\"}", {}};
    return canned_response{200, "{}", {}};
  });
  ::setenv("PIPEHOOK_TEST_OAUTH_SECRET", "s3cr:t&", 1);
  auto h = test::http_sink_handler("api", sink.port());
  h.concurrency = 4;
  h.settings["oauth2_token_url"] = "http://127.0.0.1:" + std::to_string(token_endpoint.port()) + "/oauth/token";
  h.settings["oauth2_client_id"] = std::string("pipehook");
  h.settings["oauth2_client_secret"] = std::string("${PIPEHOOK_TEST_OAUTH_SECRET}");
  h.settings["oauth2_scope"] = std::string("events:write");
  start({h});
  for (int i = 0; i < 10; ++i) ASSERT_EQ(post(test::v2_body("oa-" + std::to_string(i), "deal", std::to_string(i))), 200u);
  ASSERT_TRUE(test::wait_for([&] { return test::counts_of(where()).done == 10; }, std::chrono::seconds(10)))
      << test::counts_of(where()).last_error;
  {
    std::lock_guard lk(mu);
    ASSERT_EQ(token_requests.size(), 1u) << "the token is shared by the deliveries";
    const auto& t = token_requests[0];
    EXPECT_EQ(t.method, "POST");
    EXPECT_EQ(t.target, "/oauth/token");
    EXPECT_EQ(t.header("content-type"), "application/x-www-form-urlencoded");
    EXPECT_EQ(t.body, "grant_type=client_credentials&scope=events%3Awrite");
    // RFC 6749 §2.3.1: id and secret form-encoded, then Basic
    EXPECT_EQ(t.header("authorization"), "Basic " + base64_encode("pipehook:s3cr%3At%26"));
  }
  for (const auto& r : sink.requests()) EXPECT_EQ(r.header("authorization"), "Bearer tok-1");

  // Revoked: the destination answers 401, the handler fetches a new token and delivers.
  {
    std::lock_guard lk(mu);
    revoked.insert("tok-1");
  }
  ttl = 1;  // the next token lives one second
  ASSERT_EQ(post(test::v2_body("oa-revoked")), 200u);
  ASSERT_TRUE(test::wait_for([&] { return test::counts_of(where()).done == 11; }, std::chrono::seconds(10)))
      << test::counts_of(where()).last_error;
  EXPECT_EQ(sink.requests().back().header("authorization"), "Bearer tok-2");
  EXPECT_EQ(test::counts_of(where()).retrying, 0);  // refreshed within the same attempt
  // Expired: a delivery after tok-2's second is over brings tok-3 (without a 401 first).
  const auto tok2_at = std::chrono::steady_clock::now();
  int n = 0;
  ASSERT_TRUE(test::wait_for([&] {
    if (std::chrono::steady_clock::now() - tok2_at < std::chrono::milliseconds(1200)) return false;
    EXPECT_EQ(post(test::v2_body("oa-expired-" + std::to_string(n++))), 200u);
    std::lock_guard lk(mu);
    return token_requests.size() == 3;
  }, std::chrono::seconds(10)));
  ASSERT_TRUE(test::wait_for([&] { return sink.requests().back().header("authorization") == "Bearer tok-3"; },
                             std::chrono::seconds(10)));
  for (const auto& r : sink.requests()) EXPECT_EQ(r.header("authorization").rfind("Bearer tok-", 0), 0u);  // each carried a token
}

TEST_P(dispatch_fixture, delivers_original_bodies_signed_with_the_event_key) {
  http_test_server sink(ok_response);
  start({http_handler_config("sink", sink.port())});
  const auto samples = test::samples();
  for (const auto& [name, body] : samples)
    ASSERT_EQ(post(body), 200u) << name;
  ASSERT_TRUE(test::wait_for([&] { return sink.request_count() >= samples.size(); }, std::chrono::seconds(10)));
  std::set<std::string> bodies;
  for (const auto& [name, body] : samples) bodies.insert(body);
  auto rd = store::reader::open(where());
  ASSERT_TRUE(rd);
  auto events = (*rd)->list({}, false);
  ASSERT_TRUE(events);
  std::set<std::string> keys;
  for (const auto& e : *events) keys.insert(e.ev.event_key);
  for (const auto& r : sink.requests()) {
    EXPECT_EQ(r.method, "POST");
    EXPECT_EQ(r.target, "/hooks/in?src=pipehook");
    EXPECT_EQ(bodies.count(r.body), 1u) << "not an original body: " << r.body.substr(0, 80);
    EXPECT_EQ(keys.count(r.header("webhook-id")), 1u);
    EXPECT_EQ(r.header("content-type"), "application/json");
    EXPECT_EQ(r.header("authorization"), "Bearer sink-token");  // from the environment
    EXPECT_FALSE(r.header("x-pipehook-entity").empty());
    EXPECT_FALSE(r.header("x-pipehook-action").empty());
    EXPECT_LE(std::abs(std::stoll(r.header("webhook-timestamp")) - now_us() / 1'000'000), 60);
    EXPECT_EQ(r.header("webhook-signature"), expected_signature(r));
  }
  EXPECT_EQ(ids_delivered(sink).size(), samples.size());
}

TEST_P(dispatch_fixture, the_envelope_carries_the_event_fields_and_the_object_state) {
  http_test_server sink(ok_response);
  start({http_handler_config("sink", sink.port(), "envelope")});
  ASSERT_EQ(post(test::samples().at("v2-change-deal.json")),
            200u);
  ASSERT_TRUE(test::wait_for([&] { return sink.request_count() == 1; }, std::chrono::seconds(10)));
  const auto r = sink.requests()[0];
  auto v = boost::json::parse(r.body).as_object();
  EXPECT_EQ(v.at("entity").as_string(), "deal");
  EXPECT_EQ(v.at("action").as_string(), "change");
  EXPECT_EQ(v.at("event_key").as_string(), r.header("webhook-id"));
  EXPECT_TRUE(v.at("data").is_object());
  EXPECT_TRUE(v.at("previous").is_object());
  EXPECT_EQ(r.header("webhook-signature"), expected_signature(r));
}

// A handler that throws (a bug) has failed that attempt: the row gets a retry verdict naming the
// exception, instead of staying in flight until a restart.
class throws_once final : public dispatch::handler {
 public:
  explicit throws_once(std::shared_ptr<std::atomic<int>> calls) : calls_(std::move(calls)) {}
  boost::asio::awaitable<dispatch::delivery_result> deliver(const event::stored_event&) override {
    if ((*calls_)++ == 0) throw std::runtime_error("a bug in the handler");
    co_return dispatch::delivery_result::ok();
  }

 private:
  std::shared_ptr<std::atomic<int>> calls_;
};

TEST_P(dispatch_fixture, an_exception_in_a_handler_is_a_failed_attempt_not_a_stuck_row) {
  auto calls = std::make_shared<std::atomic<int>>(0);
  dispatch::register_handler_type("throws_once", [calls](const config::handler_config&, dispatch::settings_reader&,
                                                         boost::asio::any_io_executor) -> outcome<std::unique_ptr<dispatch::handler>> {
    return std::unique_ptr<dispatch::handler>(new throws_once(calls));
  });
  config::handler_config h;
  h.name = "fragile";
  h.type = "throws_once";
  h.where = "handlers.fragile";
  h.retry.schedule_ms = {50};
  start({h});
  ASSERT_EQ(post(test::v2_body("thrown")), 200u);
  ASSERT_TRUE(test::wait_for([&] { return test::counts_of(where()).done == 1; }, std::chrono::seconds(10)))
      << "the row never got past the exception";
  EXPECT_EQ(calls->load(), 2);
  EXPECT_NE(test::counts_of(where()).last_error.find("the handler failed: a bug in the handler"), std::string::npos);
}

TEST_P(dispatch_fixture, a_sink_that_is_down_gets_every_event_once_it_is_back) {
  const unsigned short port = test::reserve_port();
  auto h = http_handler_config("sink", port);
  h.pause_after = 0;  // the outbox's retries alone (the breaker has tests of its own)
  start({h});
  for (int i = 0; i < 30; ++i) ASSERT_EQ(post(test::v2_body("evt-" + std::to_string(i), "deal", std::to_string(i % 5))), 200u);
  // Every event has failed at least once before the sink comes up.
  ASSERT_TRUE(test::wait_for([&] { return test::counts_of(where()).retrying == 30; }, std::chrono::seconds(10)));
  http_test_server sink(ok_response, port);
  ASSERT_TRUE(test::wait_for([&] { return ids_delivered(sink).size() == 30; }, std::chrono::seconds(15)))
      << ids_delivered(sink).size();
  daemon->stop_and_wait();
  auto ob = store::outbox::open(where());
  ASSERT_TRUE(ob);
  auto counts = (*ob)->counts();
  ASSERT_TRUE(counts);
  EXPECT_EQ((*counts)[0].done, 30);
  EXPECT_EQ((*counts)[0].pending + (*counts)[0].retrying + (*counts)[0].dead, 0);
  EXPECT_NE((*counts)[0].last_error.find("127.0.0.1:" + std::to_string(port)), std::string::npos);
}

TEST_P(dispatch_fixture, a_4xx_is_dead_with_the_reason_and_retry_brings_it_back) {
  std::atomic<bool> refuse{true};
  http_test_server sink([&](const recorded_request&) {
    if (refuse) return canned_response{422, R"({"error":"unknown entity"})", {}, "application/json"};
    return canned_response{204, "", {}, "application/json"};
  });
  start({http_handler_config("sink", sink.port())});
  ASSERT_EQ(post(test::v2_body("evt-1")), 200u);
  auto ob = store::outbox::open(where());
  ASSERT_TRUE(ob);
  auto dead = [&] {
    auto counts = (*ob)->counts();
    return counts && !counts->empty() && (*counts)[0].dead == 1;
  };
  ASSERT_TRUE(test::wait_for(dead, std::chrono::seconds(10)));
  auto counts = (*ob)->counts();
  EXPECT_NE((*counts)[0].last_error.find("HTTP 422"), std::string::npos) << (*counts)[0].last_error;
  EXPECT_NE((*counts)[0].last_error.find("unknown entity"), std::string::npos);
  EXPECT_EQ(sink.request_count(), 1u);  // a permanent failure is not retried

  refuse = false;
  const std::string cfg_path = cli_config(sink.port());
  auto retried = test::run_cli({"-c", cfg_path, "handlers", "retry", "--handler", "sink"});
  ASSERT_EQ(retried.exit_code, 0) << retried.err;
  EXPECT_NE(retried.out.find("moved 1 dead"), std::string::npos);
  ASSERT_TRUE(test::wait_for([&] { return sink.request_count() == 2; }, std::chrono::seconds(10)));
  auto status = test::run_cli({"-c", cfg_path, "handlers", "status"});
  EXPECT_EQ(status.exit_code, 0);
  EXPECT_NE(status.out.find("sink"), std::string::npos) << status.out;
}

// The first dead letter after a quiet period is an alert; the next ones within `quiet` are not.
TEST_P(dispatch_fixture, the_first_dead_letter_after_a_quiet_period_is_an_alert) {
  http_test_server sink([](const recorded_request&) { return canned_response{410, "{\"error\":\"gone\"}", {}}; });
  std::mutex mu;
  std::vector<std::string> notices;
  http_test_server alert_sink([&](const recorded_request& r) {
    std::lock_guard lk(mu);
    notices.push_back(r.body);
    return canned_response{200, "{}", {}};
  });
  c.alerts.url = "http://127.0.0.1:" + std::to_string(alert_sink.port()) + "/";
  c.alerts.quiet_ms = 3'600'000;
  start({test::http_sink_handler("gone", sink.port())});
  ASSERT_EQ(post(test::v2_body("dl-1", "deal", "1")), 200u);
  ASSERT_TRUE(test::wait_for([&] {
    std::lock_guard lk(mu);
    return notices.size() == 1;
  }, std::chrono::seconds(10)));
  for (int i = 2; i <= 3; ++i) ASSERT_EQ(post(test::v2_body("dl-" + std::to_string(i), "deal", std::to_string(i))), 200u);
  ASSERT_TRUE(test::wait_for([&] { return test::counts_of(where()).dead == 3; }, std::chrono::seconds(10)));
  // Within `quiet`, no more: a notice queued for them would arrive in milliseconds; a second goes by.
  EXPECT_FALSE(test::wait_for([&] {
    std::lock_guard lk(mu);
    return notices.size() > 1;
  }, std::chrono::seconds(1)));
  EXPECT_TRUE(test::metrics_show(daemon->admin_port(), "pipehook_alerts_total{result=\"sent\"} 1"));
  std::lock_guard lk(mu);
  ASSERT_EQ(notices.size(), 1u);
  const auto n = boost::json::parse(notices[0]);
  EXPECT_EQ(n.at("type").as_string(), "handler.dead_letter");
  EXPECT_EQ(n.at("subject").as_string(), "gone");
  EXPECT_EQ(n.at("details").at("entity_id").as_string(), "1");
  EXPECT_NE(std::string(n.at("details").at("last_error").as_string()).find("HTTP 410"), std::string::npos);
}

TEST_P(dispatch_fixture, server_errors_are_retried_after_the_retry_after_the_sink_asks_for) {
  std::atomic<int> calls{0};
  http_test_server sink([&](const recorded_request&) {
    if (calls++ == 0) return canned_response{503, "busy", {{"Retry-After", "1"}}, "text/plain"};
    return canned_response{200, "{}", {}, "application/json"};
  });
  start({http_handler_config("sink", sink.port())});
  ASSERT_EQ(post(test::v2_body("evt-1")), 200u);
  ASSERT_TRUE(test::wait_for([&] { return sink.request_count() == 2; }, std::chrono::seconds(10)));
  auto reqs = sink.requests();
  EXPECT_EQ(reqs[0].header("webhook-id"), reqs[1].header("webhook-id"));  // the same event, the same id
}

TEST_P(dispatch_fixture, deliveries_pending_at_shutdown_are_delivered_after_a_restart) {
  const unsigned short port = test::reserve_port();
  auto h = http_handler_config("sink", port);
  h.pause_after = 0;  // 20 failures would pause it (and the pause outlives the restart)
  start({h});
  for (int i = 0; i < 20; ++i) ASSERT_EQ(post(test::v2_body("evt-" + std::to_string(i))), 200u);
  client.reset();
  daemon.reset();  // stopped with every delivery pending: the sink was never up
  http_test_server sink(ok_response, port);
  test::running_daemon again(c);
  ASSERT_TRUE(test::wait_for([&] { return ids_delivered(sink).size() == 20; }, std::chrono::seconds(15)))
      << ids_delivered(sink).size();
}

TEST_P(dispatch_fixture, an_ordered_handler_keeps_each_entitys_order_while_others_pass) {
  std::atomic<int> first_of_deal_1{0};
  http_test_server sink([&](const recorded_request& r) {
    // The first attempt at deal 1's first event fails; everything else succeeds.
    if (r.header("x-pipehook-entity-id") == "1" && first_of_deal_1++ == 0)
      return canned_response{500, "hiccup", {}, "text/plain"};
    return canned_response{200, "{}", {}, "application/json"};
  });
  auto h = http_handler_config("sink", sink.port());
  h.ordered = true;
  h.retry.schedule_ms = {300};
  start({h});
  ASSERT_EQ(post(test::v2_body("d1-first", "deal", "1")), 200u);
  ASSERT_EQ(post(test::v2_body("d1-second", "deal", "1")), 200u);
  ASSERT_EQ(post(test::v2_body("d2-only", "deal", "2")), 200u);
  ASSERT_TRUE(test::wait_for([&] { return sink.request_count() == 4; }, std::chrono::seconds(10)));
  // All three settled: nothing more will be sent.
  ASSERT_TRUE(test::wait_for([&] { return test::counts_of(where()).done == 3; }, std::chrono::seconds(10)));
  auto reqs = sink.requests();
  ASSERT_EQ(reqs.size(), 4u);
  std::vector<std::string> deal1, all;
  for (const auto& r : reqs) {
    const std::string key = r.header("webhook-id");
    all.push_back(r.header("x-pipehook-entity-id"));
    if (r.header("x-pipehook-entity-id") == "1") deal1.push_back(key);
  }
  // deal 1: first (failed), first again, then second: never the second before the first succeeded.
  ASSERT_EQ(deal1.size(), 3u);
  EXPECT_EQ(deal1[0], deal1[1]);
  EXPECT_NE(deal1[1], deal1[2]);
  // deal 2 did not wait for deal 1's retry.
  EXPECT_EQ(std::find(all.begin(), all.end(), "2") - all.begin() < 3, true);
}

TEST_P(dispatch_fixture, replay_requeues_matching_events_for_a_handler) {
  http_test_server sink(ok_response);
  start({http_handler_config("sink", sink.port())});
  const std::string cfg_path = cli_config(sink.port());
  ASSERT_EQ(post(test::v2_body("p1", "person", "1")), 200u);
  ASSERT_EQ(post(test::v2_body("d1", "deal", "1")), 200u);
  ASSERT_EQ(post(test::v2_body("d2", "deal", "2")), 200u);
  ASSERT_TRUE(test::wait_for([&] { return sink.request_count() == 3; }, std::chrono::seconds(10)));
  auto replay = test::run_cli({"-c", cfg_path, "events", "replay", "--handler", "sink", "--entity", "deal"});
  ASSERT_EQ(replay.exit_code, 0) << replay.err;
  EXPECT_NE(replay.out.find("2 event(s) match"), std::string::npos) << replay.out;
  ASSERT_TRUE(test::wait_for([&] { return sink.request_count() == 5; }, std::chrono::seconds(10)));
  auto unknown = test::run_cli({"-c", cfg_path, "events", "replay", "--handler", "nope"});
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_NE(unknown.err.find("no handler named \"nope\""), std::string::npos);
}

// A handler with when_changed gets exactly the stage changes (and what else it lists) of a mixed v1
// and v2 stream; `events replay` picks the same events.
TEST_P(dispatch_fixture, when_changed_routes_only_the_changes_of_listed_fields_and_replay_agrees) {
  http_test_server sink(ok_response);
  auto h = http_handler_config("sink", sink.port());
  h.match.changed = {"stage_id", region_key, "*created"};
  start({h});
  std::set<std::string> expected;
  for (const auto& [body, goes] : when_changed_stream()) {
    auto reply = client->post(body, test::basic_auth(test::test_user, test::test_password));
    ASSERT_EQ(reply.status, 200u) << reply.body;
    if (goes) expected.insert(pipedrive::parse_webhook(body, 0).ev.entity_id);
  }
  ASSERT_TRUE(test::wait_for([&] { return sink.request_count() == expected.size(); }, std::chrono::seconds(10)));
  std::set<std::string> got;
  for (const auto& r : sink.requests()) got.insert(r.header("x-pipehook-entity-id"));
  EXPECT_EQ(got, expected);
  // Only the matching events have outbox rows: nothing else is waiting to go.
  auto ob = store::outbox::open(where());
  ASSERT_TRUE(ob);
  auto counts = (*ob)->counts();
  ASSERT_TRUE(counts);
  ASSERT_EQ(counts->size(), 1u);
  EXPECT_EQ((*counts)[0].done + (*counts)[0].pending + (*counts)[0].retrying, static_cast<std::int64_t>(expected.size()));

  const std::string cfg_path = dir.file("changed.toml");
  test::write_file(cfg_path, test::store_toml(c) + "[[handlers]]\nname = \"sink\"\ntype = \"http\"\nurl = \"http://127.0.0.1:" +
                                 std::to_string(sink.port()) + "/\"\nwhen_changed = [\"stage_id\", \"" + region_key +
                                 "\", \"*created\"]\n");
  auto replay = test::run_cli({"-c", cfg_path, "events", "replay", "--handler", "sink"});
  ASSERT_EQ(replay.exit_code, 0) << replay.err;
  EXPECT_NE(replay.out.find(std::to_string(expected.size()) + " event(s) match"), std::string::npos) << replay.out;
  ASSERT_TRUE(test::wait_for([&] { return sink.request_count() == 2 * expected.size(); }, std::chrono::seconds(10)));
  std::multiset<std::string> twice;
  for (const auto& r : sink.requests()) twice.insert(r.header("x-pipehook-entity-id"));
  for (const auto& id : expected) EXPECT_EQ(twice.count(id), 2u) << id;
}

TEST(dispatch_config, handler_settings_are_checked_by_their_type) {
  test::temp_dir dir;
  struct row {
    std::string text, message;
  };
  const std::vector<row> rows = {
      {"[[handlers]]\nname = \"a\"\ntype = \"carrier-pigeon\"", "handlers.a.type \"carrier-pigeon\" is not a handler type (known: http, log, nats, rabbitmq)"},
      {"[[handlers]]\nname = \"a\"\ntype = \"http\"", "handlers.a.url is required"},
      {"[[handlers]]\nname = \"a\"\ntype = \"http\"\nurl = \"http://x/\"\nurll = 1", "unknown key 'handlers.a.urll'"},
      {"[[handlers]]\nname = \"a\"\ntype = \"http\"\nurl = \"http://x/\"\nbody = \"xml\"", "handlers.a.body must be one of original, envelope"},
      {"[[handlers]]\nname = \"a\"\ntype = \"http\"\nurl = \"http://x/\"\nheaders = { X = \"${PIPEHOOK_TEST_UNSET_VAR}\" }",
       "PIPEHOOK_TEST_UNSET_VAR, which is not set"},
      {"[[handlers]]\nname = \"a\"\ntype = \"nats\"\nsubject = \"pd.{entiti}\"", "unknown placeholder"},
      {"[[handlers]]\nname = \"a\"\ntype = \"log\"\n[[handlers]]\nname = \"a\"\ntype = \"log\"", "used twice"},
      {"[[handlers]]\nname = \"a\"\ntype = \"log\"\nwhen_changed = [\"*updated\"]",
       "handlers.a.when_changed: \"*updated\" is not a field name (or \"*created\", \"*deleted\")"},
      {"[[handlers]]\nname = \"a\"\ntype = \"log\"\nwhen_changed = []", "handlers.a.when_changed must list at least one field"},
      {"[[handlers]]\nname = \"a b\"\ntype = \"log\"", "may hold only letters"},
      {"[[handlers]]\nname = \"a\"\ntype = \"log\"\nmatch.action = [\"update\"]", "is not create, change, delete or *"},
      {"[[handlers]]\nname = \"a\"\ntype = \"log\"\nretry.schedule = []", "non-empty list of durations"},
      {"[[handlers]]\nname = \"a\"\ntype = \"http\"\nurl = \"https://x/\"\nclient_cert = \"/nonexistent.pem\"",
       "handlers.a.client_cert and handlers.a.client_key go together"},
      {"[[handlers]]\nname = \"a\"\ntype = \"http\"\nurl = \"https://x/\"\nclient_cert = \"/nonexistent.pem\"\nclient_key = \"/k\"",
       "handlers.a.client_cert \"/nonexistent.pem\": cannot load it"},
      {"[[handlers]]\nname = \"a\"\ntype = \"http\"\nurl = \"https://x/\"\noauth2_token_url = \"https://idp/token\"",
       "handlers.a.oauth2_token_url needs handlers.a.oauth2_client_id"},
      {"[[handlers]]\nname = \"a\"\ntype = \"http\"\nurl = \"https://x/\"\noauth2_token_url = \"https://idp/token\"\n"
       "oauth2_client_id = \"c\"", "needs one of handlers.a.oauth2_client_secret"},
      {"[[handlers]]\nname = \"a\"\ntype = \"http\"\nurl = \"https://x/\"\noauth2_client_id = \"c\"",
       "the other oauth2_ keys need handlers.a.oauth2_token_url"},
      {"[[handlers]]\nname = \"a\"\ntype = \"http\"\nurl = \"https://x/\"\noauth2_token_url = \"https://idp/token\"\n"
       "oauth2_client_id = \"c\"\noauth2_client_secret = \"s\"\nheaders = { Authorization = \"Bearer x\" }",
       "both set the Authorization header"},
      {"[[handlers]]\nname = \"a\"\ntype = \"rabbitmq\"\nurl = \"http://broker/\"", "handlers.a.url must be like amqp://"},
      {"[[handlers]]\nname = \"a\"\ntype = \"rabbitmq\"\nrouting_key = \"{entity}.{verb}\"", "unknown placeholder"},
      {"[[handlers]]\nname = \"a\"\ntype = \"rabbitmq\"\nqueue = \"q\"", "handlers.a.queue needs handlers.a.declare = true"},
      {"[[handlers]]\nname = \"a\"\ntype = \"rabbitmq\"\nexchange_type = \"x\"", "handlers.a.exchange_type must be one of"},
      {"[[handlers]]\nname = \"a\"\ntype = \"rabbitmq\"\nca_file = \"/nonexistent/ca.pem\"",
       "handlers.a.ca_file: cannot read /nonexistent/ca.pem: No such file or directory"},
      {"[[handlers]]\nname = \"a\"\ntype = \"nats\"\ncredentials_file = \"/nonexistent/u.creds\"",
       "handlers.a.credentials_file: cannot read /nonexistent/u.creds"},
      {"[[handlers]]\nname = \"a\"\ntype = \"nats\"\nclient_key = \"/etc/hostname\"", "handlers.a.client_cert and handlers.a.client_key go together"},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.text);
    test::write_file(dir.file("h.toml"), r.text);
    auto res = test::run_cli({"-c", dir.file("h.toml"), "check-config"}, {{"PIPEHOOK_AUTH_PASSWORD", "x"}});
    EXPECT_EQ(res.exit_code, 2);
    EXPECT_NE(res.err.find(r.message), std::string::npos) << res.err;
  }
  test::write_file(dir.file("ok.toml"),
                   "[[handlers]]\nname = \"sink\"\ntype = \"http\"\nurl = \"https://sink.example.com/in\"\n"
                   "signing_secret = \"whsec_" + secret_b64 + "\"\nheaders = { Authorization = \"Bearer literal-secret\" }\n"
                   "ordered = true\nmatch.entity = [\"deal*\"]\nretry.schedule = [\"1s\", \"1m\"]\nretry.max_age = \"2h\"\n");
  auto ok = test::run_cli({"-c", dir.file("ok.toml"), "check-config"}, {{"PIPEHOOK_AUTH_PASSWORD", "x"}});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_EQ(ok.out.find("literal-secret"), std::string::npos) << ok.out;  // secrets masked
  EXPECT_EQ(ok.out.find(secret_b64), std::string::npos);
  EXPECT_NE(ok.out.find("[handlers.retry]\nmax_age = '2h'\nmax_attempts = 0\nschedule = [ '1s', '1m' ]"), std::string::npos) << ok.out;
}

INSTANTIATE_TEST_SUITE_P(backends, outbox, test::backends(), test::backend_name);
INSTANTIATE_TEST_SUITE_P(backends, dispatch_fixture, test::backends(), test::backend_name);

}  // namespace
}  // namespace pipehook
