// The operators' side of the event log: field diffs of v1 and v2 bodies, the admin API over real
// sockets (every endpoint and filter, cursors while events arrive, NDJSON export, quarantine
// re-parse, the token rules, bad parameters), retention with ingest running, and the CLI's
// timeline / stats / export / purge.
#include "http_sink.hpp"
#include "pipehook/admin/query.hpp"
#include "pipehook/core/time.hpp"
#include "pipehook/event/diff.hpp"
#include "pipehook/event/json.hpp"
#include "pipehook/store/event_log.hpp"
#include "pipehook/store/outbox.hpp"
#include "pipehook/store/reader.hpp"
#include "pg_server.hpp"
#include "pipehook/store/backfills.hpp"
#include "pipehook/store/fields.hpp"
#include "support.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <gtest/gtest.h>

#include <filesystem>
#include <csignal>
#include <sys/wait.h>
#include <future>
#include <random>
#include <set>
#include <sstream>

namespace pipehook {
namespace {

using namespace std::chrono_literals;
namespace json = boost::json;

const std::string good_auth = test::basic_auth(test::test_user, test::test_password);

using test::v1;
using test::v2;

std::map<std::string, const event::field_change*> by_field(const std::vector<event::field_change>& v) {
  std::map<std::string, const event::field_change*> out;
  for (const auto& c : v) out[c.field] = &c;
  return out;
}

// ---- diffs ---------------------------------------------------------------------------------------

TEST(diff, v2_change_lists_the_fields_in_previous_with_custom_fields_one_by_one) {
  const auto changes = event::diff_body(test::samples().at("v2-change-deal.json"), 2);
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].field, "custom_fields.3d0fa3429dfa2d3dec265b4fc5dc8258ab66cdf3");
  EXPECT_EQ(changes[0].before, "null");
  ASSERT_TRUE(changes[0].after);
  EXPECT_NE(changes[0].after->find("\"value\":\"Tallinn, Estonia\""), std::string::npos);

  const auto c = event::diff_body(v2("e", "deal", "1", "change", R"({"id":1,"value":200,"stage_id":3,"title":"T"})",
                                     R"({"value":100,"stage_id":2})"), 2);
  auto m = by_field(c);
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(m["value"]->before, "100");
  EXPECT_EQ(m["value"]->after, "200");
  EXPECT_EQ(m["stage_id"]->after, "3");
}

TEST(diff, v2_delete_lists_every_field_as_removed_and_create_as_added) {
  const auto del = event::diff_body(test::samples().at("v2-delete-note.json"), 2);
  auto m = by_field(del);
  ASSERT_TRUE(m.count("content"));
  EXPECT_EQ(m["content"]->before, "\"Deal note (updated)\"");
  EXPECT_FALSE(m["content"]->after);
  EXPECT_EQ(del.size(), 14u);

  const auto add = event::diff_body(v2("e", "deal", "1", "create", R"({"id":1,"title":"New"})", "null"), 2);
  ASSERT_EQ(add.size(), 2u);
  EXPECT_FALSE(add[1].before);
  EXPECT_EQ(add[1].field, "title");
  EXPECT_EQ(add[1].after, "\"New\"");
}

TEST(diff, v1_compares_whole_objects_and_keeps_only_what_changed_custom_fields_included) {
  const std::string hash = "0123456789abcdef0123456789abcdef01234567";
  const auto c = event::diff_body(
      v1("updated", "deal", "5", R"({"id":5,"title":"A","value":10,")" + hash + R"(":"gold","stage_id":2})",
         R"({"id":5,"title":"A","value":5,")" + hash + R"(":"silver","stage_id":2})", "1"),
      1);
  auto m = by_field(c);
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(m["value"]->before, "5");
  EXPECT_EQ(m["value"]->after, "10");
  EXPECT_EQ(m[hash]->before, "\"silver\"");
  EXPECT_EQ(m[hash]->after, "\"gold\"");

  const auto del = event::diff_body(v1("deleted", "deal", "5", "null", R"({"id":5,"title":"A"})", "2"), 1);
  ASSERT_EQ(del.size(), 2u);
  for (const auto& d : del) EXPECT_FALSE(d.after) << d.field;

  EXPECT_TRUE(event::changes_match(test::samples().at("v2-change-deal.json"), 2, "CUSTOM"));
  EXPECT_FALSE(event::changes_match(test::samples().at("v2-change-deal.json"), 2, "stage"));
  EXPECT_TRUE(event::diff_body("not json", 2).empty());
}

TEST(event_json, the_fast_ndjson_writer_gives_the_same_bytes_as_boost_json) {
  event::stored_event e;
  e.id = 42;
  e.ev.event_key = "k\"\\\n\t\x01\x1f/é";
  e.ev.entity = "deal";
  e.ev.action = e.ev.source_action = "change";
  e.ev.entity_id = "7";
  e.ev.user_id = "tab\there";
  e.ev.change_source = "\b\f\r";
  e.ev.occurred_at_us = 1714557600123456;
  e.ev.received_at_us = 1714557601000000;
  e.ev.is_bulk = true;
  std::string fast;
  event::append_json(fast, e);
  EXPECT_EQ(fast, json::serialize(event::to_json(e)));
  e.ev.is_bulk = false;
  e.ev.user_id.clear();
  fast.clear();
  event::append_json(fast, e);
  EXPECT_EQ(fast, json::serialize(event::to_json(e)));
}

// Pages with a time range come from per-hour id orders merged (reader::list): checked against a
// brute-force answer on events whose occurred_at is out of id order (late deliveries), with other
// filters, both orders, several page sizes and cursor paging through to the end.
struct time_range_pages : ::testing::TestWithParam<store::location::kind> {};

TEST_P(time_range_pages, match_a_brute_force_answer_with_late_deliveries) {
  test::temp_dir dir;
  config::config c = test::test_config(dir);
  test::use_backend(c, GetParam());
  const store::location path = test::location_of(c);
  std::mt19937 rng(12345);
  const std::int64_t t0 = 1'714'521'600'000'000;  // 2024-05-01T00:00:00Z
  struct row {
    std::int64_t id, occurred;
    std::string entity;
  };
  std::vector<row> all;
  {
    auto log = test::open_log(path);
    ASSERT_TRUE(log) << log.error().message;
    std::promise<void> done;
    std::atomic<int> left{3000};
    for (int i = 0; i < 3000; ++i) {
      event::event e;
      e.event_key = "t" + std::to_string(i);
      e.entity = (i % 3 == 0) ? "person" : "deal";
      e.action = e.source_action = "change";
      e.entity_id = std::to_string(i % 50);
      // Mostly in order, one in ten up to three days late.
      const std::int64_t base = t0 + static_cast<std::int64_t>(i) * 240'000'000;  // 4 min apart: ~8 days
      e.occurred_at_us = (rng() % 10 == 0) ? base - static_cast<std::int64_t>(rng() % 259'200) * 1'000'000 : base;
      e.received_at_us = base;
      e.body = "{}";
      all.push_back({i + 1, e.occurred_at_us, e.entity});
      (*log)->append(std::move(e), [&](store::append_result r) {
        EXPECT_TRUE(r);
        if (--left == 0) done.set_value();
      });
    }
    done.get_future().wait();
    (*log)->close();
  }
  auto rd = store::reader::open(path);
  ASSERT_TRUE(rd);
  for (int trial = 0; trial < 40; ++trial) {
    store::event_filter f;
    const std::int64_t a = t0 + static_cast<std::int64_t>(rng() % (9 * 24)) * 3'600'000'000 + static_cast<std::int64_t>(rng() % 3600) * 1'000'000;
    const std::int64_t b = a + static_cast<std::int64_t>(rng() % (72 * 3600)) * 1'000'000;
    if (trial % 5 != 1) f.since_us = a;
    if (trial % 5 != 2) f.until_us = b;
    if (trial % 4 == 3) f.entity = "person";
    f.ascending = trial % 2 == 1;
    f.limit = std::vector<int>{9, 50, 200, 25}[trial % 4];
    std::vector<std::int64_t> expected;
    for (const auto& r : all)
      if ((!f.since_us || r.occurred >= *f.since_us) && (!f.until_us || r.occurred < *f.until_us) &&
          (f.entity.empty() || r.entity == f.entity))
        expected.push_back(r.id);
    if (!f.ascending) std::reverse(expected.begin(), expected.end());
    std::vector<std::int64_t> got;
    for (int pages = 0; pages < 4000; ++pages) {
      auto page = (*rd)->list(f, false);
      ASSERT_TRUE(page) << page.error().message;
      for (const auto& e : *page) got.push_back(e.id);
      if (page->size() < static_cast<std::size_t>(f.limit)) break;
      (f.ascending ? f.after_id : f.before_id) = page->back().id;
    }
    ASSERT_EQ(got, expected) << "trial " << trial;
  }
}

// ---- the API -------------------------------------------------------------------------------------

template <class T, class U>
T or_else(const outcome<T>& r, U fallback) {
  return r ? *r : static_cast<T>(fallback);
}

json::value parse_json(const std::string& s) {
  boost::system::error_code ec;
  auto v = json::parse(s, ec);
  EXPECT_FALSE(ec) << s;
  return v;
}

std::vector<std::int64_t> ids_of(const json::value& page) {
  std::vector<std::int64_t> out;
  for (const auto& e : page.at("events").as_array()) out.push_back(e.at("id").as_int64());
  return out;
}

// Every admin test runs on both backends: the same requests, the same JSON.
struct admin_fixture : ::testing::TestWithParam<store::location::kind> {
  test::temp_dir dir;
  config::config cfg = test::test_config(dir);
  admin_fixture() { test::use_backend(cfg, GetParam()); }
  std::unique_ptr<test::running_daemon> d;
  std::unique_ptr<test::http_client> ingest, admin;

  void start() {
    d = std::make_unique<test::running_daemon>(cfg);
    ingest = std::make_unique<test::http_client>(d->port());
    admin = std::make_unique<test::http_client>(d->admin_port());
  }
  void post(const std::string& body, unsigned expected = 200) {
    ASSERT_EQ(ingest->post(body, good_auth).status, expected) << body;
  }
  test::http_reply get(const std::string& target, const std::map<std::string, std::string>& headers = {}) {
    return admin->request("GET", target, {}, headers);
  }
  json::value get_json(const std::string& target) {
    auto r = get(target);
    EXPECT_EQ(r.status, 200u) << target << ": " << r.body;
    return parse_json(r.body);
  }
  // A small varied log: 3 deals (ids 1,2,3), a person, a v1 deal; users 12/13; sources app/api.
  void seed() {
    post(v2("a1", "deal", "1", "create", R"({"id":1,"title":"One","value":10})", "null", "12", "app", "2024-05-01T10:00:00Z"));
    post(v2("a2", "deal", "1", "change", R"({"id":1,"title":"One","value":20,"stage_id":2})", R"({"value":10,"stage_id":1})",
            "13", "api", "2024-05-01T11:00:00Z"));
    post(v2("a3", "deal", "2", "create", R"({"id":2,"title":"Two"})", "null", "12", "app", "2024-05-02T10:00:00Z", "98"));
    post(v2("a4", "person", "7", "change", R"({"id":7,"name":"Ann","email":"a@x"})", R"({"email":"b@x"})", "12", "app",
            "2024-05-03T10:00:00Z", "99", "778"));
    post(v2("a5", "deal", "1", "delete", "null", R"({"id":1,"title":"One","value":20})", "12", "app", "2024-05-04T10:00:00Z"));
    post(v1("updated", "deal", "3", R"({"id":3,"value":9})", R"({"id":3,"value":8})", "1714600000000000"));
  }
};

TEST_P(admin_fixture, lists_events_newest_first_and_filters_by_every_parameter) {
  start();
  seed();
  auto all = get_json("/api/v1/events");
  EXPECT_EQ(ids_of(all), (std::vector<std::int64_t>{6, 5, 4, 3, 2, 1}));
  EXPECT_TRUE(all.at("next_cursor").is_null());
  const auto& first = all.at("events").as_array()[0].as_object();
  for (const char* key : {"id", "event_key", "version", "entity", "action", "entity_id", "company_id", "user_id",
                          "webhook_id", "occurred_at", "received_at", "change_source"})
    EXPECT_TRUE(first.contains(key)) << key;

  struct row {
    std::string query;
    std::vector<std::int64_t> ids;
  };
  for (const row& r : std::vector<row>{
           {"entity=deal", {6, 5, 3, 2, 1}},
           {"entity=deal&entity_id=1", {5, 2, 1}},
           {"action=delete", {5}},
           {"action=create&entity=deal", {3, 1}},
           {"company_id=778", {4}},
           {"user_id=13", {2}},
           {"webhook_id=98", {3}},
           {"change_source=api", {2}},
           {"since=2024-05-02&until=2024-05-04", {4, 3}},
           {"q=stage", {2}},
           {"q=EMAIL", {4}},
           {"q=value&entity=deal", {6, 5, 2, 1}},
           {"order=asc&entity=person", {4}},
           {"order=asc&limit=2", {1, 2}},
           {"entity=lead", {}},
       }) {
    SCOPED_TRACE(r.query);
    EXPECT_EQ(ids_of(get_json("/api/v1/events?" + r.query)), r.ids);
  }
  // The v1 event's time comes from timestamp_micro (2024-05-01T21:46:40Z).
  EXPECT_EQ(ids_of(get_json("/api/v1/events?since=2024-05-01T21:00:00Z&until=2024-05-01T22:00:00Z")),
            (std::vector<std::int64_t>{6}));
  // Percent-encoding and '+' in the query.
  EXPECT_EQ(ids_of(get_json("/api/v1/events?since=2024-05-01T10%3A30%3A00Z&until=2024-05-01T11:30:00Z")),
            (std::vector<std::int64_t>{2}));
}

TEST_P(admin_fixture, cursors_page_through_everything_once_even_while_events_arrive) {
  start();
  for (int i = 0; i < 25; ++i) post(test::v2_body("p" + std::to_string(i), "deal", std::to_string(i % 4)));
  for (const std::string order : {"desc", "asc"}) {
    SCOPED_TRACE(order);
    std::vector<std::int64_t> seen;
    std::string cursor;
    int pages = 0, arrived = 0;
    do {
      auto page = get_json("/api/v1/events?limit=7&order=" + order + (cursor.empty() ? "" : "&cursor=" + cursor));
      for (auto id : ids_of(page)) seen.push_back(id);
      cursor = page.at("next_cursor").is_null() ? "" : std::string(page.at("next_cursor").as_string());
      // New events arrive between pages: newest-first paging never shows them twice or skips old ones.
      if (order == "desc" && !cursor.empty()) post(test::v2_body(order + std::to_string(arrived++)));
      ++pages;
    } while (!cursor.empty() && pages < 20);
    std::set<std::int64_t> unique(seen.begin(), seen.end());
    EXPECT_EQ(unique.size(), seen.size()) << "an event was shown twice";
    EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end(), [&](auto a, auto b) { return order == "asc" ? a < b : a > b; }));
    if (order == "desc") {
      EXPECT_EQ(seen.size(), 25u);  // exactly the events that existed when paging began
      EXPECT_EQ(seen.back(), 1);
    } else {
      EXPECT_EQ(seen.size(), 25u + 3u);  // asc paging reaches the ones that arrived meanwhile
    }
  }
}

TEST_P(admin_fixture, ndjson_export_streams_every_matching_event_in_chunks) {
  start();
  for (int i = 0; i < 2100; ++i) post(test::v2_body("x" + std::to_string(i), i % 3 ? "deal" : "person", std::to_string(i)));
  auto r = get("/api/v1/events?format=ndjson&entity=deal&limit=5");  // limit is a page size; an export is everything
  ASSERT_EQ(r.status, 200u);
  EXPECT_EQ(r.headers["content-type"], "application/x-ndjson");
  EXPECT_EQ(r.headers["transfer-encoding"], "chunked");
  std::istringstream lines(r.body);
  std::int64_t count = 0, last = INT64_MAX;
  for (std::string line; std::getline(lines, line);) {
    auto v = parse_json(line);
    EXPECT_EQ(v.at("entity").as_string(), "deal");
    EXPECT_LT(v.at("id").as_int64(), last);
    last = v.at("id").as_int64();
    ++count;
  }
  EXPECT_EQ(count, 1400);
  // The connection is still good for the next request (the stream ended with its last chunk).
  EXPECT_EQ(get("/api/v1/events?limit=1").status, 200u);
  auto asc = get("/api/v1/events?format=ndjson&order=asc&entity=person");
  EXPECT_EQ(std::count(asc.body.begin(), asc.body.end(), '\n'), 700);
  EXPECT_EQ(asc.body.rfind("{\"id\":1,", 0), 0u);
}

TEST_P(admin_fixture, event_detail_timeline_stats_and_handlers) {
  start();
  seed();
  post(v2("a2", "deal", "1", "change", R"({"id":1,"title":"One","value":20,"stage_id":2})", R"({"value":10,"stage_id":1})",
          "13", "api", "2024-05-01T11:00:00Z"));  // Pipedrive's retry: a duplicate
  ASSERT_EQ(ingest->post(R"({"hello":"world"})", good_auth).status, 202u);      // quarantined
  ASSERT_EQ(ingest->post("{}", test::basic_auth("x", "y")).status, 401u);     // rejected

  auto detail = get_json("/api/v1/events/2");
  EXPECT_EQ(detail.at("entity_id").as_string(), "1");
  EXPECT_EQ(detail.at("deliveries").as_int64(), 2);
  EXPECT_EQ(detail.at("body").at("meta").at("id").as_string(), "a2");
  ASSERT_EQ(detail.at("changes").as_array().size(), 2u);

  auto tl = get_json("/api/v1/entities/deal/1/timeline");
  EXPECT_EQ(ids_of(tl), (std::vector<std::int64_t>{1, 2, 5}));
  const auto& entries = tl.at("events").as_array();
  EXPECT_EQ(entries[0].at("changes").as_array().size(), 3u);  // create: id, title, value added
  const auto& change = entries[1].at("changes").as_array();
  ASSERT_EQ(change.size(), 2u);
  EXPECT_EQ(change[0].at("field").as_string(), "stage_id");
  EXPECT_EQ(change[0].at("kind").as_string(), "changed");
  EXPECT_EQ(change[0].at("before").as_int64(), 1);
  EXPECT_EQ(change[0].at("after").as_int64(), 2);
  for (const auto& c : entries[2].at("changes").as_array()) EXPECT_EQ(c.at("kind").as_string(), "removed");
  auto tl_page = get_json("/api/v1/entities/deal/1/timeline?limit=2");
  EXPECT_EQ(ids_of(tl_page), (std::vector<std::int64_t>{1, 2}));
  EXPECT_EQ(ids_of(get_json("/api/v1/entities/deal/1/timeline?cursor=" +
                            std::string(tl_page.at("next_cursor").as_string()))),
            (std::vector<std::int64_t>{5}));
  auto v1_tl = get_json("/api/v1/entities/deal/3/timeline");
  ASSERT_EQ(v1_tl.at("events").as_array()[0].at("changes").as_array().size(), 1u);  // only value changed

  auto stats = get_json("/api/v1/stats?since=1h");
  EXPECT_EQ(stats.at("events").as_int64(), 6);
  EXPECT_EQ(stats.at("duplicates").as_int64(), 1);
  EXPECT_EQ(stats.at("quarantined").as_int64(), 1);
  bool found = false;
  for (const auto& r : stats.at("by_entity_action").as_array())
    if (r.at("entity") == "deal" && r.at("action") == "change") {
      EXPECT_EQ(r.at("events").as_int64(), 2);  // the v2 change and the v1 update
      EXPECT_EQ(r.at("duplicates").as_int64(), 1);
      found = true;
    }
  EXPECT_TRUE(found);
  ASSERT_EQ(stats.at("per_hour").as_array().size(), 1u);
  EXPECT_EQ(stats.at("per_hour").as_array()[0].at("events").as_int64(), 6);
  EXPECT_EQ(stats.at("rejected_since_start").at("unauthorized").as_int64(), 1);
  EXPECT_EQ(stats.at("rejected_since_start").at("quarantined").as_int64(), 1);
  EXPECT_TRUE(stats.at("handlers").as_array().empty());
  EXPECT_EQ(get_json("/api/v1/stats?since=2000-01-01&until=2000-01-02").at("events").as_int64(), 0);
  EXPECT_TRUE(get_json("/api/v1/handlers").at("handlers").as_array().empty());

  auto page = get("/");
  EXPECT_EQ(page.status, 200u);
  EXPECT_NE(page.body.find("<title>pipehook"), std::string::npos);
  EXPECT_EQ(get("/app.js").headers["content-type"], "text/javascript; charset=utf-8");
}

TEST_P(admin_fixture, quarantined_bodies_are_listed_and_reparsed_into_events) {
  start();
  ASSERT_EQ(ingest->post(R"({"not":"an event"})", good_auth).status, 202u);
  auto q = get_json("/api/v1/quarantine");
  ASSERT_EQ(q.at("quarantine").as_array().size(), 1u);
  const auto qid = q.at("quarantine").as_array()[0].at("id").as_int64();
  EXPECT_FALSE(q.at("quarantine").as_array()[0].at("reason").as_string().empty());
  EXPECT_EQ(get_json("/api/v1/quarantine/" + std::to_string(qid)).at("body").as_string(), R"({"not":"an event"})");
  auto still = admin->request("POST", "/api/v1/quarantine/" + std::to_string(qid) + "/reparse");
  EXPECT_EQ(still.status, 422u) << still.body;
  EXPECT_NE(still.body.find("still does not parse"), std::string::npos);

  // A body an older version quarantined but this one understands (written as that version would have).
  test::outside_sql(test::location_of(cfg), "INSERT INTO quarantine (received_at, reason, body) VALUES (1700000000000000, 'old', '" +
                                                test::v2_body("from-quarantine", "deal", "55") + "')");
  auto listed = get_json("/api/v1/quarantine?limit=1");
  const auto new_qid = listed.at("quarantine").as_array()[0].at("id").as_int64();
  ASSERT_FALSE(listed.at("next_cursor").is_null());
  EXPECT_EQ(get_json("/api/v1/quarantine?cursor=" + std::string(listed.at("next_cursor").as_string()))
                .at("quarantine").as_array()[0].at("id").as_int64(), qid);
  auto ok = admin->request("POST", "/api/v1/quarantine/" + std::to_string(new_qid) + "/reparse");
  ASSERT_EQ(ok.status, 200u) << ok.body;
  auto res = parse_json(ok.body);
  EXPECT_EQ(res.at("status").as_string(), "stored");
  auto ev = get_json("/api/v1/events/" + std::to_string(res.at("event_id").as_int64()));
  EXPECT_EQ(ev.at("entity_id").as_string(), "55");
  EXPECT_EQ(ev.at("received_at").as_string(), "2023-11-14T22:13:20Z");  // when it first arrived
  EXPECT_EQ(get("/api/v1/quarantine/" + std::to_string(new_qid)).status, 404u);  // left the quarantine
  EXPECT_EQ(admin->request("POST", "/api/v1/quarantine/" + std::to_string(new_qid) + "/reparse").status, 404u);
}

TEST_P(admin_fixture, bad_parameters_are_400s_that_name_the_parameter) {
  start();
  seed();
  struct row {
    std::string target;
    unsigned status;
    std::string mentions;
  };
  for (const row& r : std::vector<row>{
           {"/api/v1/events?limit=0", 400, "limit"},
           {"/api/v1/events?limit=abc", 400, "limit"},
           {"/api/v1/events?limit=1001", 400, "limit"},
           {"/api/v1/events?since=yesterday", 400, "since"},
           {"/api/v1/events?until=2024-13-45", 400, "until"},
           {"/api/v1/events?since=2024-05-02&until=2024-05-01", 400, "since"},
           {"/api/v1/events?action=update", 400, "action"},
           {"/api/v1/events?order=sideways", 400, "order"},
           {"/api/v1/events?format=xml", 400, "format"},
           {"/api/v1/events?cursor=garbage!", 400, "cursor"},
           {"/api/v1/events?entity=", 400, "entity"},
           {"/api/v1/events?colour=red", 400, "colour"},
           {"/api/v1/events?entity=deal&entity=person", 400, "more than once"},
           {"/api/v1/events?q=%zz", 400, "malformed query"},
           {"/api/v1/events/abc", 400, "id"},
           {"/api/v1/events/999", 404, "no event with id 999"},
           {"/api/v1/events/1/extra", 404, "no resource"},
           {"/api/v1/entities/deal/1", 404, "timeline"},
           {"/api/v1/entities/deal/1/timeline?entity=x", 400, "entity"},
           {"/api/v1/stats?since=soon", 400, "since"},
           {"/api/v1/stats?entity=deal", 400, "entity"},
           {"/api/v1/quarantine?limit=0", 400, "limit"},
           {"/api/v1/quarantine/77", 404, "77"},
           {"/api/v1/nothing", 404, "no resource"},
       }) {
    SCOPED_TRACE(r.target);
    auto reply = get(r.target);
    EXPECT_EQ(reply.status, r.status) << reply.body;
    auto v = parse_json(reply.body);
    EXPECT_NE(std::string(v.at("detail").as_string()).find(r.mentions), std::string::npos) << reply.body;
  }
  // A cursor of one order used with the other.
  auto page = get_json("/api/v1/events?limit=2");
  auto wrong = get("/api/v1/events?order=asc&cursor=" + std::string(page.at("next_cursor").as_string()));
  EXPECT_EQ(wrong.status, 400u);
  EXPECT_NE(wrong.body.find("other order"), std::string::npos);
  EXPECT_EQ(admin->request("DELETE", "/api/v1/events").status, 405u);
}

TEST_P(admin_fixture, a_token_is_required_when_configured_but_not_for_the_page_itself) {
  cfg.admin.token = "admin-secret";
  start();
  seed();
  auto none = get("/api/v1/events");
  EXPECT_EQ(none.status, 401u);
  EXPECT_EQ(none.headers["www-authenticate"], "Bearer realm=\"pipehook-admin\"");
  EXPECT_EQ(get("/api/v1/events", {{"Authorization", "Bearer wrong"}}).status, 401u);
  EXPECT_EQ(get("/api/v1/events", {{"Authorization", "Basic YTpi"}}).status, 401u);
  EXPECT_EQ(get("/api/v1/stats", {{"Authorization", "Bearer admin-secret-and-more"}}).status, 401u);
  EXPECT_EQ(get("/api/v1/events", {{"Authorization", "Bearer admin-secret"}}).status, 200u);
  EXPECT_EQ(admin->request("POST", "/api/v1/quarantine/1/reparse").status, 401u);
  EXPECT_EQ(get("/").status, 200u);  // the page holds no data; it asks for the token
}

TEST(admin_config, beyond_loopback_the_admin_listener_needs_a_token) {
  const auto env = [](const std::string&) -> std::optional<std::string> { return std::nullopt; };
  auto open = config::parse_config("[auth]\npassword = \"p\"\n[admin]\nlisten = \"0.0.0.0:8081\"\n", "t.toml", env);
  ASSERT_TRUE(open) << open.error().message;
  auto refused = config::check_serve_ready(*open);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("admin token"), std::string::npos);
  auto with_token = config::parse_config("[auth]\npassword = \"p\"\n[admin]\nlisten = \"0.0.0.0:8081\"\n", "t.toml",
                                         [](const std::string& k) -> std::optional<std::string> {
                                           if (k == "PIPEHOOK_ADMIN_TOKEN") return std::string("t0k");
                                           return std::nullopt;
                                         });
  ASSERT_TRUE(with_token);
  EXPECT_TRUE(config::check_serve_ready(*with_token));
  EXPECT_NE(config::render_effective(*with_token).find("from PIPEHOOK_ADMIN_TOKEN"), std::string::npos);
  EXPECT_EQ(config::render_effective(*with_token).find("t0k"), std::string::npos);
  auto same = config::parse_config("[auth]\npassword = \"p\"\n[server]\nlisten = \"127.0.0.1:9000\"\n[admin]\nlisten = \"127.0.0.1:9000\"\n",
                                   "t.toml", env);
  ASSERT_TRUE(same);
  EXPECT_FALSE(config::check_serve_ready(*same));
  for (const auto& [text, message] : std::vector<std::pair<std::string, std::string>>{
           {"[admin]\nlisten = \"nowhere\"", "admin.listen must be"},
           {"[admin]\ncolour = 1", "unknown key 'admin.colour'"},
           {"[store.retention]\nmax_age = \"soon\"", "store.retention.max_age must be a duration"},
           {"[store.retention]\nmax_bytes = \"lots\"", "store.retention.max_bytes must be a size"},
           {"[store.retention]\nmax_bytes = 1000", "at least 1MB"},
           {"[store.retention]\nkeep = 1", "unknown key 'store.retention.keep'"},
       }) {
    auto r = config::parse_config(text, "t.toml", env);
    ASSERT_FALSE(r) << text;
    EXPECT_NE(r.error().message.find(message), std::string::npos) << r.error().message;
  }
  auto sized = config::parse_config("[store.retention]\nmax_bytes = \"2GiB\"\nmax_age = \"30d\"", "t.toml", env);
  ASSERT_TRUE(sized);
  EXPECT_EQ(sized->store.retention_max_bytes, 2ULL << 30);
  EXPECT_EQ(sized->store.retention_max_age_ms, 30LL * 86'400'000);
}

TEST(admin_process, a_daemon_refuses_to_start_with_an_open_admin_listener_and_no_token) {
  test::temp_dir dir;
  test::write_file(dir.file("p.toml"), "[auth]\npassword = \"p\"\n[admin]\nlisten = \"0.0.0.0:0\"\n[store]\npath = \"" +
                                           dir.file("e.db") + "\"\n");
  auto r = test::run_cli({"--config", dir.file("p.toml"), "serve"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("admin token"), std::string::npos) << r.err;
}

// ---- retention -----------------------------------------------------------------------------------

// Writes `n` events received `age` ago straight through the event log (as if stored back then).
void write_old_events(const store::location& where, int n, std::chrono::hours age, const std::string& prefix,
                      const store::router& route = {}, const std::string& entity = "deal") {
  store::writer_options o;
  o.route = route;
  auto log = test::open_log(where, o);
  ASSERT_TRUE(log) << log.error().message;
  std::promise<void> all;
  std::atomic<int> left{n};
  for (int i = 0; i < n; ++i) {
    event::event e;
    e.event_key = prefix + std::to_string(i);
    e.entity = entity;
    e.action = "create";
    e.source_action = "create";
    e.entity_id = std::to_string(i);
    e.occurred_at_us = e.received_at_us = now_us() - std::chrono::duration_cast<std::chrono::microseconds>(age).count();
    e.body = test::v2_body(e.event_key, entity) + std::string(512, ' ');
    (*log)->append(std::move(e), [&](store::append_result r) {
      EXPECT_TRUE(r);
      if (--left == 0) all.set_value();
    });
  }
  all.get_future().wait();
  (*log)->close();
}

struct retention : ::testing::TestWithParam<store::location::kind> {};

TEST_P(retention, old_rows_go_in_the_background_pending_deliveries_stay_and_new_events_are_kept) {
  test::temp_dir dir;
  config::config c = test::test_config(dir);
  test::use_backend(c, GetParam());
  const store::location where = test::location_of(c);
  // A handler whose sink refuses everything for now: its deliveries stay pending.
  test::http_test_server sink([](const test::recorded_request&) { return test::canned_response{503, "", {{"Retry-After", "3600"}}}; });
  config::handler_config h = test::http_sink_handler("sink", sink.port());
  h.match.entity = {"person"};  // only the pending ones below go to it
  c.handlers.push_back(h);
  // 600 old deals (no handler), then 5 old persons for the handler.
  write_old_events(where, 600, std::chrono::hours(72), "old-");
  write_old_events(where, 5, std::chrono::hours(72), "old-person-",
                   [](const event::event&, std::vector<store::route>& out) { out.push_back({"sink", false}); }, "person");
  c.store.retention_max_age_ms = 24LL * 3600 * 1000;
  c.store.retention_interval_ms = 200;
  test::running_daemon d(c);
  test::http_client client(d.port());
  // Ingest keeps running while retention works.
  for (int i = 0; i < 50; ++i) ASSERT_EQ(client.post(test::v2_body("new-" + std::to_string(i)), good_auth).status, 200u);
  auto rd = store::reader::open(where);
  ASSERT_TRUE(rd);
  ASSERT_TRUE(test::wait_for([&] { return or_else((*rd)->count_events(), -1) == 55; }, 20s))
      << or_else((*rd)->count_events(), -1);
  store::event_filter f;
  f.entity = "person";
  EXPECT_EQ((*rd)->list(f, false)->size(), 5u);  // pending deliveries keep their events
  auto ob = store::outbox::open(where);
  auto counts = (*ob)->counts();
  ASSERT_EQ(counts->size(), 1u);
  EXPECT_EQ((*counts)[0].pending + (*counts)[0].retrying, 5);
  d.stop_and_wait();
}

// The budget bounds what the log holds. SQLite gives freed pages back, so its file stays within a
// small multiple of the budget; PostgreSQL keeps freed space for new rows, so there the bound is
// on the rows (store::reader::used_bytes).
TEST_P(retention, a_size_budget_keeps_the_log_from_growing_under_ingest) {
  test::temp_dir dir;
  config::config c = test::test_config(dir);
  test::use_backend(c, GetParam());
  const store::location where = test::location_of(c);
  c.store.retention_max_bytes = 1024 * 1024;
  c.store.retention_interval_ms = 100;
  test::running_daemon d(c);
  test::http_client client(d.port());
  // Bodies are stored compressed: a pad that does not compress (64 symbols: 6 bits a byte at best).
  std::mt19937 rng(7);
  std::string pad(1500, 'x');
  for (auto& ch : pad) ch = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[rng() % 64];
  std::int64_t peak = 0;
  for (int i = 0; i < 3000; ++i) {
    const std::string body = R"({"data":{"id":1,"note":")" + pad + R"("},"previous":null,"meta":{"action":"create","company_id":"1","entity_id":"1","entity":"deal","id":"s)" +
                             std::to_string(i) + R"(","timestamp":"2024-05-01T10:00:00Z","user_id":"1","version":"2.0","webhook_id":"1","attempt":1}})";
    ASSERT_EQ(client.post(body, good_auth).status, 200u);
    if (i % 500 == 499 && !where.is_postgres()) {
      // Retention has caught up with what was written so far: the file's size now is a peak.
      auto rd = store::reader::open(where);
      ASSERT_TRUE(rd);
      ASSERT_TRUE(test::wait_for([&] { return or_else((*rd)->used_bytes(), INT64_MAX) <= 1024 * 1024; }, 10s));
      peak = std::max<std::int64_t>(peak, static_cast<std::int64_t>(std::filesystem::file_size(where.path)));
    }
  }
  auto rd = store::reader::open(where);
  ASSERT_TRUE(rd);
  ASSERT_TRUE(test::wait_for([&] { return or_else((*rd)->used_bytes(), INT64_MAX) <= 1024 * 1024; }, 10s))
      << or_else((*rd)->used_bytes(), -1);
  // ~5 MB were written; the database file stays within a small multiple of the budget.
  if (!where.is_postgres()) {
    EXPECT_LT(peak, 3 * 1024 * 1024) << "the file kept growing";
  }
  const auto kept = or_else((*rd)->count_events(), 0);
  EXPECT_GT(kept, 300) << "the budget holds about 500 of these events; a whole batch must not be dropped at once";
  EXPECT_LT(kept, 3000) << "nothing was deleted";
  store::event_filter newest;
  newest.limit = 1;
  EXPECT_EQ((*rd)->list(newest, false)->at(0).ev.event_id, "s2999");
  d.stop_and_wait();
}

// The budget counts bytes on disk, bodies compressed: bodies that add up to three times the
// budget as received, but compress well, all stay.
TEST_P(retention, a_size_budget_counts_compressed_bytes) {
  test::temp_dir dir;
  config::config c = test::test_config(dir);
  test::use_backend(c, GetParam());
  const store::location where = test::location_of(c);
  c.store.retention_max_bytes = (where.is_postgres() ? 2 : 1) * 1024 * 1024;  // PostgreSQL keeps more per row
  c.store.retention_interval_ms = 100;
  test::running_daemon d(c);
  test::http_client client(d.port());
  const std::string pad(1500, 'x');
  std::int64_t raw = 0;
  int n = 0;
  while (raw < 3 * static_cast<std::int64_t>(c.store.retention_max_bytes)) {
    const std::string body = R"({"data":{"id":1,"note":")" + pad + R"("},"previous":null,"meta":{"action":"create","company_id":"1","entity_id":"1","entity":"deal","id":"c)" +
                             std::to_string(n++) + R"(","timestamp":"2024-05-01T10:00:00Z","user_id":"1","version":"2.0","webhook_id":"1","attempt":1}})";
    raw += static_cast<std::int64_t>(body.size());
    ASSERT_EQ(client.post(body, good_auth).status, 200u);
  }
  auto rd = store::reader::open(where);
  ASSERT_TRUE(rd);
  const auto used = or_else((*rd)->used_bytes(), INT64_MAX);
  EXPECT_LT(used, static_cast<std::int64_t>(c.store.retention_max_bytes)) << raw << " bytes received";
  // A whole retention pass after the last event: it finds the log within its budget.
  auto passes = [&] {
    test::http_client admin(d.admin_port());
    const std::string text = admin.request("GET", "/metrics").body;
    const auto at = text.find("\npipehook_retention_passes_total ");
    return at == std::string::npos ? -1 : std::stoll(text.substr(at + 33));
  };
  const auto before = passes();
  ASSERT_GE(before, 0) << "no pipehook_retention_passes_total in /metrics";
  ASSERT_TRUE(test::wait_for([&] { return passes() >= before + 2; }, 10s));
  EXPECT_EQ(or_else((*rd)->count_events(), 0), n) << "events were deleted though their compressed bytes fit the budget";
  d.stop_and_wait();
}

// ---- the web page in a real browser ----------------------------------------------------------

TEST(web_page, filters_opens_an_event_shows_its_diff_and_timeline_and_updates_live) {
  const std::string node = "/usr/bin/node", chromium = "/usr/bin/chromium";
  const std::string playwright = std::string(PIPEHOOK_SOURCE_DIR) + "/.cache/playwright/node_modules/playwright-core";
  for (const auto& needed : {node, chromium, playwright}) {
    if (std::filesystem::exists(needed)) continue;
    if (std::getenv("CI")) FAIL() << needed << " is missing (scripts/install-deps.sh, scripts/install-npm-tools.sh)";
    GTEST_SKIP() << needed << " is missing: run scripts/install-deps.sh and scripts/install-npm-tools.sh";
  }
  test::http_test_server sink([](const test::recorded_request&) { return test::canned_response{200, "{}", {}}; });
  test::temp_dir dir;
  config::config c = test::test_config(dir);
  c.admin.token = "page-token";
  c.handlers.push_back(test::http_sink_handler("sink", sink.port()));
  test::running_daemon d(c);
  // Field names as the daemon caches them from Pipedrive (with a token): the diff shows the name.
  ASSERT_TRUE(store::save_fields(test::location_of(c), "deal", {{"stage_id", "Pipeline stage", "stage", {}}}, now_us()));
  {  // A backfill run as serve records one.
    auto book = store::backfill_store::open(test::location_of(c));
    ASSERT_TRUE(book);
    store::backfill_run run;
    run.reason = "downtime";
    run.detail = "pipehook was not receiving for 5 min";
    run.since_us = now_us() - 600'000'000;
    run.until_us = now_us() - 300'000'000;
    run.objects = {"deal", "person"};
    run.state = "done";
    run.records_read = run.events_stored = 3;
    run.api_calls = 3;
    run.token_cost = 42;
    ASSERT_TRUE((*book)->create(run));
  }
  test::http_client client(d.port());
  for (const auto& body :
       {v2("w1", "deal", "1", "create", R"({"id":1,"title":"One","value":10,"stage_id":1})", "null"),
        v2("w2", "deal", "1", "change", R"({"id":1,"title":"One","value":20,"stage_id":2})", R"({"value":10,"stage_id":1})"),
        v2("w3", "person", "7", "change", R"({"id":7,"name":"Ann"})", R"({"name":"An"})"),
        v2("w4", "deal", "2", "create", R"({"id":2,"title":"Two"})", "null"),
        v2("w5", "person", "8", "create", R"({"id":8,"name":"Bo"})", "null")})
    ASSERT_EQ(client.post(body, good_auth).status, 200u);
  ASSERT_EQ(client.post("{}", test::basic_auth("intruder", "x")).status, 401u);

  const std::filesystem::path artifacts = std::filesystem::path(PIPEHOOK_BUILD_DIR) / "test-artifacts";
  std::filesystem::create_directories(artifacts);
  const std::string shot = (artifacts / "admin-page.png").string();
  std::filesystem::remove(shot);
  const std::string port = std::to_string(d.port()), admin_port = std::to_string(d.admin_port());
  const int pid = test::spawn_process(
      node,
      {std::string(PIPEHOOK_SOURCE_DIR) + "/tests/web/page_test.cjs", "http://127.0.0.1:" + admin_port + "/",
       "http://127.0.0.1:" + port + "/webhooks/pipedrive", good_auth, "page-token", shot},
      {{"PLAYWRIGHT_CORE", playwright}, {"CHROMIUM", chromium}}, dir.file("out"), dir.file("err"));
  ASSERT_GT(pid, 0);
  int status = 0;
  const bool exited = test::wait_for([&] { return ::waitpid(pid, &status, WNOHANG) == pid; }, 90s);
  if (!exited) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
  }
  const std::string out = test::read_file(dir.file("out")), err = test::read_file(dir.file("err"));
  ASSERT_TRUE(exited) << "the browser test did not finish\n" << out << err;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << out << err;
  EXPECT_NE(out.find("ok - the diff shows stage_id 1 -> 2"), std::string::npos) << out << err;
  EXPECT_NE(out.find("ok - the detail links to the deal in Pipedrive"), std::string::npos) << out << err;
  EXPECT_NE(out.find("ok - the diff names the field as Pipedrive does"), std::string::npos) << out << err;
  EXPECT_NE(out.find("ok - a backfill run is listed"), std::string::npos) << out << err;
  EXPECT_TRUE(std::filesystem::exists(shot) && std::filesystem::file_size(shot) > 10'000) << "no screenshot at " << shot;
  d.stop_and_wait();
}

// ---- the CLI -------------------------------------------------------------------------------------

TEST_P(admin_fixture, cli_timeline_stats_export_and_list_formats_match_the_api) {
  start();
  seed();
  const std::string cfg_path = dir.file("p.toml");
  test::write_file(cfg_path, test::store_toml(cfg));
  auto list = test::run_cli({"--config", cfg_path, "events", "list", "--entity", "deal", "--limit", "2", "--format", "json"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  auto api_page = get_json("/api/v1/events?entity=deal&limit=2");
  EXPECT_EQ(parse_json(list.out), api_page);
  auto next = test::run_cli({"--config", cfg_path, "events", "list", "--entity", "deal", "--limit", "2", "--cursor",
                             std::string(api_page.at("next_cursor").as_string()), "--format", "ndjson"});
  EXPECT_EQ(std::count(next.out.begin(), next.out.end(), '\n'), 2);
  auto table = test::run_cli({"--config", cfg_path, "events", "list", "--q", "stage"});
  EXPECT_NE(table.out.find("ENTITY_ID"), std::string::npos);
  EXPECT_NE(table.out.find("ago"), std::string::npos);
  auto bad_limit = test::run_cli({"--config", cfg_path, "events", "list", "--limit", "0"});
  EXPECT_EQ(bad_limit.exit_code, 2);
  EXPECT_NE(bad_limit.err.find("--limit"), std::string::npos) << bad_limit.err;

  auto tl = test::run_cli({"--config", cfg_path, "events", "timeline", "deal", "1"});
  ASSERT_EQ(tl.exit_code, 0) << tl.err;
  EXPECT_NE(tl.out.find("stage_id"), std::string::npos) << tl.out;
  EXPECT_NE(tl.out.find("1 -> 2"), std::string::npos) << tl.out;
  auto tl_json = test::run_cli({"--config", cfg_path, "events", "timeline", "deal", "1", "--format", "json"});
  EXPECT_EQ(parse_json(tl_json.out).at("events"), get_json("/api/v1/entities/deal/1/timeline").at("events"));

  auto stats = test::run_cli({"--config", cfg_path, "events", "stats", "--format", "json"});
  ASSERT_EQ(stats.exit_code, 0) << stats.err;
  EXPECT_EQ(parse_json(stats.out).at("events").as_int64(), 6);
  auto stats_table = test::run_cli({"--config", cfg_path, "events", "stats"});
  EXPECT_NE(stats_table.out.find("6 events"), std::string::npos) << stats_table.out;
  EXPECT_NE(stats_table.out.find("#"), std::string::npos);

  auto exported = test::run_cli({"--config", cfg_path, "events", "export", "--entity", "deal"});
  ASSERT_EQ(exported.exit_code, 0);
  EXPECT_EQ(exported.out, get("/api/v1/events?entity=deal&format=ndjson").body);

  auto show = test::run_cli({"--config", cfg_path, "events", "show", "2", "--format", "json"});
  EXPECT_EQ(parse_json(show.out).at("changes"), get_json("/api/v1/events/2").at("changes"));
}

struct purge_cli : ::testing::TestWithParam<store::location::kind> {};

TEST_P(purge_cli, dry_run_counts_and_purge_deletes_only_settled_old_rows) {
  test::temp_dir dir;
  config::config c = test::test_config(dir);
  test::use_backend(c, GetParam());
  const store::location db = test::location_of(c);
  write_old_events(db, 30, std::chrono::hours(48), "old-");
  write_old_events(db, 10, std::chrono::hours(1), "new-");
  // Three old events still owed to a handler.
  test::outside_sql(db, "INSERT INTO deliveries (handler, event_id, state, due_at, created_at, updated_at) "
                        "SELECT 'x', id, 'pending', 0, 0, 0 FROM events WHERE id <= 3");
  test::outside_sql(db, "INSERT INTO deliveries (handler, event_id, state, due_at, created_at, updated_at) "
                        "SELECT 'x', id, 'done', 0, 0, 0 FROM events WHERE id BETWEEN 4 AND 6");
  test::write_file(dir.file("p.toml"), test::store_toml(c));
  auto dry = test::run_cli({"--config", dir.file("p.toml"), "events", "purge", "--before", "1d", "--dry-run"});
  ASSERT_EQ(dry.exit_code, 0) << dry.err;
  EXPECT_NE(dry.out.find("27 row(s)"), std::string::npos) << dry.out;
  auto rd = store::reader::open(db);
  EXPECT_EQ(or_else((*rd)->count_events(), 0), 40);
  auto real = test::run_cli({"--config", dir.file("p.toml"), "events", "purge", "--before", "1d"});
  ASSERT_EQ(real.exit_code, 0) << real.err;
  EXPECT_NE(real.out.find("deleted 27"), std::string::npos) << real.out;
  EXPECT_EQ(or_else((*rd)->count_events(), 0), 13);
  auto ob = store::outbox::open(db);
  auto counts = (*ob)->counts();
  ASSERT_EQ(counts->size(), 1u);
  EXPECT_EQ((*counts)[0].pending, 3);
  EXPECT_EQ((*counts)[0].done, 0);  // the done rows went with their events
  auto bad = test::run_cli({"--config", dir.file("p.toml"), "events", "purge", "--before", "whenever"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("--before"), std::string::npos) << bad.err;
}

// store.pool_size: queries run on worker threads, each with its own read connection, so one that
// waits (here on a lock another session holds on the events table) does not hold up the others;
// with a pool of one, the second waits for the first.
TEST(admin_pool, a_query_waiting_on_a_lock_does_not_hold_up_the_others) {
  for (const std::uint32_t pool : {2u, 1u}) {
    test::temp_dir dir;
    config::config c = test::test_config(dir);
    test::use_backend(c, store::location::kind::postgres);
    c.store.pool_size = pool;
    test::running_daemon d(c);
    test::http_client ingest(d.port());
    ASSERT_EQ(ingest.post(test::v2_body("pool-1"), good_auth).status, 200u);
    const std::string db = c.store.url.substr(c.store.url.rfind('/') + 1);
    // Each part of the daemon names its sessions, so an operator can tell them apart.
    const auto names = [&] {
      return test::pg_server::shared().query("postgres", "SELECT string_agg(DISTINCT application_name, ',' ORDER BY application_name) "
                                                         "FROM pg_stat_activity WHERE datname = '" + db + "' AND application_name "
                                                         "IN ('pipehook/admin', 'pipehook/presence', 'pipehook/writer')");
    };
    ASSERT_TRUE(test::wait_for([&] { return names() == "pipehook/admin,pipehook/presence,pipehook/writer"; }, 10s)) << names();
    PGconn* locker = test::pg_server::shared().connect(db);
    PQclear(PQexec(locker, "BEGIN"));
    PQclear(PQexec(locker, "LOCK TABLE events IN ACCESS EXCLUSIVE MODE"));
    std::atomic<unsigned> blocked_status{0};
    std::thread slow([&] {
      test::http_client admin(d.admin_port());
      blocked_status = admin.request("GET", "/api/v1/events?limit=5").status;
    });
    // The first query is waiting on the lock (PostgreSQL shows it), then the second is asked. Only
    // the admin API's sessions count: the daemon's compactor may be waiting on the same lock.
    ASSERT_TRUE(test::wait_for([&] {
      return test::pg_server::shared().query("postgres", "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                                         "AND application_name = 'pipehook/admin'") == "1";
    }, 10s));
    std::atomic<unsigned> other_status{0};
    std::thread other([&] {
      test::http_client admin(d.admin_port());
      other_status = admin.request("GET", "/api/v1/quarantine").status;
    });
    const bool answered = test::wait_for([&] { return other_status.load() != 0; }, pool > 1 ? 10s : 1s);
    if (pool > 1) EXPECT_TRUE(answered) << "the quarantine list waited for a query on another table";
    else EXPECT_FALSE(answered) << "with one worker the second query cannot run before the first";
    EXPECT_EQ(blocked_status.load(), 0u);
    PQclear(PQexec(locker, "ROLLBACK"));
    PQfinish(locker);
    slow.join();
    other.join();
    EXPECT_EQ(blocked_status.load(), 200u);
    EXPECT_EQ(other_status.load(), 200u);
    d.stop_and_wait();
  }
}

INSTANTIATE_TEST_SUITE_P(backends, time_range_pages, test::backends(), test::backend_name);
INSTANTIATE_TEST_SUITE_P(backends, admin_fixture, test::backends(), test::backend_name);
INSTANTIATE_TEST_SUITE_P(backends, retention, test::backends(), test::backend_name);
INSTANTIATE_TEST_SUITE_P(backends, purge_cli, test::backends(), test::backend_name);

}  // namespace
}  // namespace pipehook
