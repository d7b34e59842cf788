// Backfill: what Pipedrive changed while its webhooks did not reach pipehook, recovered through
// GET /recents of the stateful fake Pipedrive — after a downtime, after the registrar found its
// webhook deleted, by hand (API and CLI), through a 429 and across a SIGTERM.
#include "fake_pipedrive.hpp"
#include "http_sink.hpp"
#include "pg_server.hpp"
#include "support.hpp"

#include "pipehook/admin/query.hpp"
#include "pipehook/core/time.hpp"
#include "pipehook/event/json.hpp"
#include "pipehook/pipedrive/backfill.hpp"
#include "pipehook/store/backfills.hpp"

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <csignal>
#include <ctime>
#include <sys/wait.h>

namespace pipehook {
namespace {

using test::fake_pipedrive;
namespace json = boost::json;

const std::string token = "backfill-token";

// Pipedrive's API time form ("2026-12-01 10:00:05", UTC) of a time.
std::string api_time(std::int64_t us) { return pipedrive::recents_timestamp(us); }

std::string record(std::int64_t id, const std::string& added, const std::string& updated, const std::string& title) {
  return R"({"id":)" + std::to_string(id) + R"(,"title":")" + title + R"(","add_time":")" + added + R"(","update_time":")" + updated +
         R"(","active_flag":true})";
}

config::config backfill_config(const test::temp_dir& dir, const fake_pipedrive& fake) {
  auto c = test::test_config(dir);
  c.pipedrive.api_base = fake.base_url();
  c.pipedrive.api_token = token;
  c.pipedrive.retry_base_ms = 20;
  c.pipedrive.fields_refresh_ms = 0;
  c.backfill.enabled = true;
  c.backfill.min_gap_ms = 1;
  c.backfill.heartbeat_ms = 100;
  c.backfill.objects = {"deal", "person"};
  return c;
}

json::array runs_of(unsigned short admin_port) {
  test::http_client admin(admin_port);
  return json::parse(admin.request("GET", "/api/v1/backfills").body).at("backfills").as_array();
}

// The run with `id` once it has ended (done, capped, failed), or null after 20 s.
json::object finished_run(unsigned short admin_port, std::int64_t id) {
  json::object out;
  test::wait_for(
      [&] {
        test::http_client admin(admin_port);
        auto r = admin.request("GET", "/api/v1/backfills/" + std::to_string(id));
        if (r.status != 200) return false;
        auto o = json::parse(r.body).as_object();
        const std::string state(o.at("state").as_string());
        if (state != "done" && state != "capped" && state != "failed") return false;
        out = std::move(o);
        return true;
      },
      std::chrono::seconds(20));
  return out;
}

std::vector<json::object> recovered_events(unsigned short admin_port) {
  test::http_client admin(admin_port);
  std::vector<json::object> out;
  const json::value doc = json::parse(admin.request("GET", "/api/v1/events?limit=1000&order=asc").body);
  for (const auto& e : doc.at("events").as_array())
    if (e.at("source_action").as_string() == "backfill") out.push_back(e.as_object());
  return out;
}

// ---- the pieces ----------------------------------------------------------------------------------

TEST(backfill_unit, a_recovered_event_says_what_it_is_and_keeps_the_record_as_its_body) {
  pipedrive::recent_record r{"deal", "42", R"({"id":42,"title":"x"})", "2026-11-30 10:00:05", "2026-11-30 09:00:00"};
  const std::int64_t since = *parse_iso8601_us("2026-11-30T09:30:00.250Z");
  auto ev = pipedrive::recovered_event(r, since, {"77", "acme.pipedrive.com"}, 5);
  ASSERT_TRUE(ev);
  EXPECT_EQ(ev->action, "change");  // added before the window
  EXPECT_EQ(ev->source_action, "backfill");
  EXPECT_EQ(ev->change_source, "backfill");
  EXPECT_TRUE(event::recovered(*ev));
  EXPECT_EQ(ev->version, 1);
  EXPECT_EQ(ev->entity, "deal");
  EXPECT_EQ(ev->entity_id, "42");
  EXPECT_EQ(format_rfc3339_us(ev->occurred_at_us), "2026-11-30T10:00:05Z");
  EXPECT_EQ(ev->body, r.data);
  EXPECT_EQ(ev->company_id, "77");
  EXPECT_EQ(event::record_url(*ev), "https://acme.pipedrive.com/deal/42");
  EXPECT_EQ(ev->event_key.size(), 32u);
  // Added inside the window (whole seconds: 09:30:00 counts for a window from 09:30:00.250): a create.
  r.add_time = "2026-11-30 09:30:00";
  EXPECT_EQ(pipedrive::recovered_event(r, since, {}, 5)->action, "create");
  // The key depends on the record and its update time only: the same change read twice is one event.
  EXPECT_EQ(pipedrive::recovered_event(r, since, {}, 9)->event_key, ev->event_key);
  r.update_time = "2026-11-30 10:00:06";
  EXPECT_NE(pipedrive::recovered_event(r, since, {}, 5)->event_key, ev->event_key);
  r.update_time = "";
  EXPECT_FALSE(pipedrive::recovered_event(r, since, {}, 5)) << "no update time: nothing to date it by";
  EXPECT_EQ(pipedrive::recents_timestamp(since), "2026-11-30 09:30:00");
}

TEST(backfill_unit, the_default_objects_follow_the_registrar_and_a_request_is_checked) {
  config::config c;
  EXPECT_EQ(pipedrive::default_backfill_objects(c).size(), 10u);  // no registrar: everything /recents lists
  c.registrar.webhooks = {{"*", "deal"}, {"change", "person"}, {"delete", "note"}, {"*", "lead"}};
  EXPECT_EQ(pipedrive::default_backfill_objects(c), (std::vector<std::string>{"deal", "person"}));
  c.backfill.objects = {"organization"};
  EXPECT_EQ(pipedrive::default_backfill_objects(c), (std::vector<std::string>{"organization"}));

  auto ok = admin::parse_backfill_request({{"since", "2h"}, {"objects", "deal, person,deal"}, {"dry_run", "true"}});
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ(ok->objects, (std::vector<std::string>{"deal", "person"}));
  EXPECT_TRUE(ok->dry_run);
  EXPECT_NEAR(static_cast<double>(ok->until_us - ok->since_us), 2 * 3600e6, 5e6);
  for (const auto& [p, message] : std::vector<std::pair<admin::params, std::string>>{
           {{}, "since: is required"},
           {{{"since", "soon"}}, "since: \"soon\" is not a time"},
           {{{"since", "2h"}, {"objects", "lead"}}, "objects: \"lead\" is not an object Pipedrive's /recents lists"},
           {{{"since", "1h"}, {"until", "2h"}}, "since: is not before until"},
           {{{"since", "1h"}, {"until", "2099-01-01"}}, "until: is in the future"},
           {{{"since", "1h"}, {"dry_run", "maybe"}}, "dry_run: must be true or false"},
           {{{"since", "1h"}, {"window", "x"}}, "window: unknown parameter"}}) {
    auto r = admin::parse_backfill_request(p);
    ASSERT_FALSE(r) << message;
    EXPECT_NE(r.error().message.find(message), std::string::npos) << r.error().message;
  }
}

// ---- serve ---------------------------------------------------------------------------------------

struct backfill_serve : ::testing::TestWithParam<store::location::kind> {};

// pipehook stops; meanwhile 5 deals change and 2 persons are added in Pipedrive. The next start
// finds the gap by its heartbeat and recovers exactly those 7 changes, with the right actions and
// times, through the outbox (a handler with backfill = false gets none). A second backfill of the
// window stores nothing; a change the log already has by webhook is not stored again.
TEST_P(backfill_serve, a_downtime_is_recovered_once_with_the_right_actions_and_times) {
  fake_pipedrive fake(token);
  const std::string long_ago = "2026-01-01 00:00:00", earlier = "2026-06-01 12:00:00";
  for (int id = 1; id <= 6; ++id) fake.put_record("deal", id, record(id, long_ago, earlier, "Deal " + std::to_string(id)));
  test::temp_dir dir;
  auto c = backfill_config(dir, fake);
  test::use_backend(c, GetParam());
  test::http_test_server sink([](const test::recorded_request&) { return test::canned_response{200, "{}", {}}; });
  test::http_test_server quiet([](const test::recorded_request&) { return test::canned_response{200, "{}", {}}; });
  c.handlers.push_back(test::http_sink_handler("all", sink.port()));
  auto no_backfill = test::http_sink_handler("live-only", quiet.port());
  no_backfill.match.backfill = false;
  c.handlers.push_back(no_backfill);
  const std::string auth = test::basic_auth(test::test_user, test::test_password);

  auto first = std::make_unique<test::running_daemon>(c);
  {
    test::http_client client(first->port());
    ASSERT_EQ(client.post(test::v2("w1", "deal", "1", "change", R"({"id":1})", R"({"title":"x"})"), auth).status, 200u);
  }
  ASSERT_TRUE(test::wait_for([&] { return quiet.request_count() == 1; }, std::chrono::seconds(10)));
  EXPECT_TRUE(runs_of(first->admin_port()).empty()) << "a new log has no gap";
  first->stop_and_wait();
  first.reset();
  const std::int64_t stopped = now_us();

  // While pipehook is down.
  const std::string now_text = api_time(now_us());
  for (int id = 1; id <= 5; ++id) fake.put_record("deal", id, record(id, long_ago, now_text, "Deal " + std::to_string(id) + " v2"));
  fake.put_record("person", 10, record(10, now_text, now_text, "Ada"));
  fake.put_record("person", 11, record(11, now_text, now_text, "Grace"));
  fake.put_record("organization", 3, record(3, now_text, now_text, "not asked for"));

  test::running_daemon second(c);
  auto runs = runs_of(second.admin_port());
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].at("reason").as_string(), "downtime");
  auto run = finished_run(second.admin_port(), runs[0].at("id").as_int64());
  ASSERT_FALSE(run.empty()) << json::serialize(runs_of(second.admin_port()));
  EXPECT_EQ(run.at("state").as_string(), "done") << json::serialize(run);
  EXPECT_EQ(run.at("events_stored").as_int64(), 7) << json::serialize(run);
  EXPECT_EQ(run.at("records_read").as_int64(), 7);
  EXPECT_LE(*parse_iso8601_us(std::string(run.at("since").as_string())), stopped);
  EXPECT_EQ(run.at("api_calls").as_int64(), 3);  // users/me, deals, persons
  EXPECT_EQ(run.at("token_cost").as_int64(), 2 + 20 + 20);

  auto events = recovered_events(second.admin_port());
  ASSERT_EQ(events.size(), 7u);
  std::map<std::string, int> actions;
  for (const auto& e : events) {
    const std::string key = std::string(e.at("entity").as_string()) + ":" + std::string(e.at("action").as_string());
    ++actions[key];
    EXPECT_EQ(e.at("change_source").as_string(), "backfill");
    EXPECT_EQ(e.at("occurred_at").as_string(), format_rfc3339_us(*parse_iso8601_us(now_text)));
    EXPECT_EQ(e.at("company_id").as_string(), std::to_string(fake_pipedrive::company_id));
  }
  EXPECT_EQ(actions["deal:change"], 5);
  EXPECT_EQ(actions["person:create"], 2);
  EXPECT_EQ(events[0].at("url").as_string(), "https://example-ltd.pipedrive.com/" + std::string(events[0].at("entity").as_string()) +
                                                 "/" + std::string(events[0].at("entity_id").as_string()));
  test::http_client admin(second.admin_port());
  auto detail = json::parse(admin.request("GET", "/api/v1/events/" + std::to_string(events[0].at("id").as_int64())).body);
  EXPECT_NE(json::serialize(detail.at("body")).find("\"update_time\":\"" + now_text + "\""), std::string::npos) << detail;
  // Through the outbox, to the handler that takes them; none to the one that opted out.
  ASSERT_TRUE(test::wait_for([&] { return sink.request_count() == 8; }, std::chrono::seconds(10)));
  std::size_t records = 0;
  for (const auto& r : sink.requests()) records += r.body.find("\"update_time\":\"" + now_text + "\"") != std::string::npos;
  EXPECT_EQ(records, 7u);
  {
    test::http_client client(second.port());
    ASSERT_EQ(client.post(test::v2("w2", "deal", "9", "change", R"({"id":9})", R"({"title":"y"})"), auth).status, 200u);
  }
  ASSERT_TRUE(test::wait_for([&] { return quiet.request_count() == 2; }, std::chrono::seconds(10)));
  for (const auto& r : quiet.requests()) EXPECT_EQ(r.body.find("\"update_time\""), std::string::npos) << "a recovered event reached live-only";

  // The same window again, by hand: nothing new.
  auto again = admin.request("POST", "/api/v1/backfills",
                             R"({"since":")" + std::string(run.at("since").as_string()) + R"(","objects":["deal","person"]})",
                             {{"Content-Type", "application/json"}});
  ASSERT_EQ(again.status, 202u) << again.body;
  EXPECT_EQ(again.headers["location"], "/api/v1/backfills/" + std::to_string(json::parse(again.body).at("id").as_int64()));
  auto second_run = finished_run(second.admin_port(), json::parse(again.body).at("id").as_int64());
  EXPECT_EQ(second_run.at("state").as_string(), "done");
  EXPECT_EQ(second_run.at("events_stored").as_int64(), 0) << json::serialize(second_run);
  EXPECT_EQ(second_run.at("already_known").as_int64(), 7);
  EXPECT_EQ(second_run.at("reason").as_string(), "manual");

  // A change delivered by webhook, then listed by the API: one event.
  const std::int64_t t = now_us();
  const std::string webhook_time = format_rfc3339_us(t - t % 1000 + 123'000);  // ms, as Pipedrive sends
  {
    test::http_client client(second.port());
    ASSERT_EQ(client.post(test::v2("w3", "deal", "20", "change", R"({"id":20})", R"({"title":"z"})", "12", "app", webhook_time), auth)
                  .status,
              200u);
  }
  fake.put_record("deal", 20, record(20, long_ago, api_time(t), "Deal 20"));
  auto third = admin.request("POST", "/api/v1/backfills", R"({"since":"5m","objects":"deal"})", {{"Content-Type", "application/json"}});
  ASSERT_EQ(third.status, 202u) << third.body;
  auto third_run = finished_run(second.admin_port(), json::parse(third.body).at("id").as_int64());
  EXPECT_EQ(third_run.at("events_stored").as_int64(), 0) << json::serialize(third_run);
  EXPECT_EQ(recovered_events(second.admin_port()).size(), 7u);

  // Bad requests say what was wrong.
  auto bad = admin.request("POST", "/api/v1/backfills", R"({"since":"2h","objects":["lead"]})", {{"Content-Type", "application/json"}});
  EXPECT_EQ(bad.status, 400u);
  EXPECT_NE(bad.body.find("\\\"lead\\\" is not an object"), std::string::npos) << bad.body;
  EXPECT_EQ(admin.request("POST", "/api/v1/backfills", "since=2h", {{"Content-Type", "text/plain"}}).status, 415u);
  EXPECT_EQ(admin.request("GET", "/api/v1/backfills/999").status, 404u);
  EXPECT_EQ(admin.request("GET", "/api/v1/backfills?limit=0").status, 400u);

  // The CLI lists them.
  const std::string cfg_path = dir.file("cli.toml");
  test::write_file(cfg_path, test::store_toml(c));
  auto listed = test::run_cli({"-c", cfg_path, "backfill", "list"});
  EXPECT_EQ(listed.exit_code, 0) << listed.err;
  EXPECT_NE(listed.out.find("downtime"), std::string::npos) << listed.out;
  EXPECT_NE(listed.out.find("manual"), std::string::npos) << listed.out;
}

INSTANTIATE_TEST_SUITE_P(backends, backfill_serve, test::backends(), test::backend_name);

// Without a token nothing can be recovered, and the API says why.
TEST(backfill_serve_plain, without_a_token_a_backfill_is_refused_with_409) {
  test::temp_dir dir;
  test::running_daemon d(test::test_config(dir));
  test::http_client admin(d.admin_port());
  auto r = admin.request("POST", "/api/v1/backfills", R"({"since":"1h"})", {{"Content-Type", "application/json"}});
  EXPECT_EQ(r.status, 409u);
  EXPECT_NE(r.body.find("no Pipedrive token"), std::string::npos) << r.body;
  EXPECT_EQ(json::parse(admin.request("GET", "/api/v1/backfills").body).at("can_run").as_bool(), false);
}

// The registrar finds its webhook deleted at Pipedrive (as after 3 days of failed deliveries): it
// creates it again, and what that webhook did not deliver since its last delivery is backfilled.
TEST(backfill_serve_plain, the_registrar_finding_its_webhook_deleted_backfills_since_its_last_delivery) {
  fake_pipedrive fake(token);
  test::temp_dir dir;
  auto c = backfill_config(dir, fake);
  c.backfill.objects.clear();  // the registrar's objects: deal (*.deal) and person (change.person)
  c.registrar.enabled = true;
  c.registrar.subscription_url = "https://hooks.example.com/webhooks/pipedrive";
  c.registrar.webhooks = {{"*", "deal"}, {"change", "person"}};
  cli::daemon::tuning t{std::chrono::milliseconds(100), std::chrono::milliseconds(100)};
  t.registrar_resync = std::chrono::milliseconds(300);
  test::running_daemon d(c, t);
  ASSERT_TRUE(test::wait_for([&] { return fake.webhooks().size() == 2; }, std::chrono::seconds(10)));
  std::int64_t deal_hook = 0;
  for (const auto& w : fake.webhooks())
    if (w.event_object == "deal") deal_hook = w.id;
  // Its last delivery.
  test::http_client client(d.port());
  auto delivered = client.post(test::v2("d1", "deal", "5", "change", R"({"id":5})", R"({"title":"a"})", "12", "app",
                                        "2026-06-01T00:00:00.000Z", std::to_string(deal_hook)),
                               test::basic_auth(test::test_user, test::test_password));
  ASSERT_EQ(delivered.status, 200u) << delivered.body;
  test::http_client admin(d.admin_port());
  const auto stored = json::parse(admin.request("GET", "/api/v1/events/" + std::to_string(json::parse(delivered.body).at("id").as_int64())).body);
  const std::string last_delivery(stored.at("received_at").as_string());
  // Then Pipedrive deletes it, and a deal changes that nobody is told about.
  const std::string changed = api_time(now_us());
  fake.put_record("deal", 30, record(30, "2026-01-01 00:00:00", changed, "Deal 30"));
  fake.put_record("person", 31, record(31, changed, changed, "not this webhook's"));
  fake.remove_webhook(deal_hook);
  ASSERT_TRUE(test::wait_for([&] { return runs_of(d.admin_port()).size() == 1; }, std::chrono::seconds(10)));
  auto run = finished_run(d.admin_port(), runs_of(d.admin_port())[0].at("id").as_int64());
  ASSERT_FALSE(run.empty());
  EXPECT_EQ(run.at("reason").as_string(), "webhook");
  EXPECT_EQ(run.at("since").as_string(), last_delivery);
  EXPECT_EQ(run.at("objects").as_array(), (json::array{"deal"}));
  EXPECT_NE(run.at("detail").as_string().find("#" + std::to_string(deal_hook)), std::string::npos) << json::serialize(run);
  EXPECT_EQ(run.at("events_stored").as_int64(), 1) << json::serialize(run);
  auto events = recovered_events(d.admin_port());
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].at("entity_id").as_string(), "30");
  EXPECT_TRUE(test::wait_for([&] { return fake.webhooks().size() == 2; }, std::chrono::seconds(10))) << "recreated";
  // Once: later reconciles with the webhook in place find no new gap.
  const auto gets = fake.count("GET");
  ASSERT_TRUE(test::wait_for([&] { return fake.count("GET") > gets + 4; }, std::chrono::seconds(10)));
  EXPECT_EQ(runs_of(d.admin_port()).size(), 1u);
}

// A run whose serve died (state "running") or stopped (interrupted) is resumed by the next serve
// from its saved position; one a `pipehook backfill` command holds is left to that command.
TEST(backfill_serve_plain, serve_resumes_the_runs_it_left_and_leaves_the_commands_alone) {
  fake_pipedrive fake(token);
  for (int id = 1; id <= 4; ++id) fake.put_record("deal", id, record(id, "2026-01-01 00:00:00", "2026-11-30 10:00:0" + std::to_string(id), "D"));
  test::temp_dir dir;
  auto c = backfill_config(dir, fake);
  c.backfill.enabled = false;  // no gap detection: only what is recorded
  c.backfill.page_size = 2;
  { test::running_daemon created(c); }
  auto book = store::backfill_store::open(test::location_of(c));
  ASSERT_TRUE(book);
  store::backfill_run died;
  died.reason = "downtime";
  died.detail = "a test";
  died.since_us = *parse_iso8601_us("2026-11-30T00:00:00Z");
  died.until_us = now_us();
  died.objects = {"deal"};
  died.state = "running";
  died.replica = "serve-that-died";
  died.next_start = 2;  // its first page was stored
  store::backfill_run held = died;
  held.replica = std::string(pipedrive::cli_replica_prefix) + "host-1";
  ASSERT_TRUE((*book)->create(died));
  ASSERT_TRUE((*book)->create(held));

  test::running_daemon d(c);
  auto run = finished_run(d.admin_port(), died.id);
  ASSERT_FALSE(run.empty());
  EXPECT_EQ(run.at("state").as_string(), "done");
  EXPECT_EQ(run.at("events_stored").as_int64(), 2) << "from its position: deals 3 and 4";
  EXPECT_EQ(run.at("replica").as_string().subview(0, 5), "test-") << "this serve runs it now";
  auto other = (*book)->get(held.id);
  ASSERT_TRUE(other && *other);
  EXPECT_EQ((*other)->state, "running") << "serve took a run a command holds";
}

// ---- the CLI -------------------------------------------------------------------------------------

struct backfill_cli : ::testing::Test {
  fake_pipedrive fake{token};
  test::temp_dir dir;
  std::string cfg = dir.file("pipehook.toml");
  // Records changed inside the window; its start as RFC 3339 and as the API's since_timestamp.
  const std::string since = "2026-11-30T00:00:00Z", since_query = "2026-11-30%2000%3A00%3A00";
  std::map<std::string, std::string> env{{"PIPEDRIVE_API_TOKEN", token}};

  void SetUp() override {
    test::write_file(cfg, "[store]\npath = \"" + dir.file("events.db") + "\"\n[pipedrive]\napi_base = \"" + fake.base_url() +
                              "\"\nretry_base = \"20ms\"\nfields_refresh = 0\n[backfill]\npage_size = 2\n");
    for (int id = 1; id <= 5; ++id)
      fake.put_record("deal", id, record(id, "2026-01-01 00:00:00", "2026-11-30 10:00:0" + std::to_string(id), "D"));
    // The log exists once serve has run: create it.
    test::temp_dir unused;
    auto c = test::test_config(unused);
    c.store.path = dir.file("events.db");
    test::running_daemon d(c);
  }

  std::size_t page_requests(std::int64_t start) const {
    std::size_t n = 0;
    for (const auto& r : fake.requests())
      n += r.target == "/v1/recents?since_timestamp=" + since_query + "&items=deal&start=" + std::to_string(start) + "&limit=2";
    return n;
  }
};

// A 429 in the middle of a run: the client waits as x-ratelimit-reset says and the run finishes.
TEST_F(backfill_cli, a_rate_limit_mid_run_is_waited_out_and_the_run_finishes) {
  fake.inject({.method = "GET",
               .path = "/recents?since_timestamp=" + since_query + "&items=deal&start=2&limit=2",
               .status = 429,
               .headers = {{"x-ratelimit-reset", "1"}}});
  const auto began = std::chrono::steady_clock::now();
  auto r = test::run_cli({"-c", cfg, "backfill", "--since", since, "--objects", "deal"}, env);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_GE(std::chrono::steady_clock::now() - began, std::chrono::milliseconds(900)) << "the reset was not waited for";
  const auto run = json::parse(r.out).as_object();
  EXPECT_EQ(run.at("state").as_string(), "done");
  EXPECT_EQ(run.at("events_stored").as_int64(), 5);
  EXPECT_EQ(page_requests(2), 2u);  // refused once, then read
  EXPECT_EQ(run.at("api_calls").as_int64(), 5);  // users/me, 3 pages, 1 retry
  EXPECT_EQ(run.at("token_cost").as_int64(), 2 + 3 * 20);
  EXPECT_NE(r.err.find("backfill #1: done"), std::string::npos) << r.err;  // the progress line

  // Dry run of the same window: everything is known now.
  auto dry = test::run_cli({"-c", cfg, "backfill", "--since", since, "--objects", "deal", "--dry-run"}, env);
  ASSERT_EQ(dry.exit_code, 0) << dry.err;
  EXPECT_EQ(json::parse(dry.out).at("events_stored").as_int64(), 0);
  EXPECT_EQ(json::parse(dry.out).at("already_known").as_int64(), 5);
  // Flags say what is wrong.
  auto no_since = test::run_cli({"-c", cfg, "backfill"}, env);
  EXPECT_EQ(no_since.exit_code, 2);
  EXPECT_NE(no_since.err.find("--since is required"), std::string::npos) << no_since.err;
  auto bad_object = test::run_cli({"-c", cfg, "backfill", "--since", "1h", "--objects", "deal_product"}, env);
  EXPECT_EQ(bad_object.exit_code, 2);
  EXPECT_NE(bad_object.err.find("--objects: \"deal_product\" is not an object"), std::string::npos) << bad_object.err;
  auto no_token = test::run_cli({"-c", cfg, "backfill", "--since", "1h"});
  EXPECT_EQ(no_token.exit_code, 2);
  auto shown = test::run_cli({"-c", cfg, "backfill", "show", "1"});
  EXPECT_EQ(shown.exit_code, 0) << shown.err;
  EXPECT_EQ(json::parse(shown.out).at("events_stored").as_int64(), 5);
}

// A page answered with x-ratelimit-remaining: 0 (the burst window used up): the next call waits
// for x-ratelimit-reset instead of earning a 429.
TEST_F(backfill_cli, an_exhausted_burst_window_is_waited_for_before_the_next_call) {
  fake.inject({.method = "GET",
               .path = "/recents?since_timestamp=" + since_query + "&items=deal&start=0&limit=2",
               .headers = {{"x-ratelimit-remaining", "0"}, {"x-ratelimit-reset", "1"}}});
  const auto began = std::chrono::steady_clock::now();
  auto r = test::run_cli({"-c", cfg, "backfill", "--since", since, "--objects", "deal"}, env);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_GE(std::chrono::steady_clock::now() - began, std::chrono::milliseconds(900)) << "the window was not waited for";
  EXPECT_EQ(json::parse(r.out).at("api_calls").as_int64(), 4) << "no 429, no retry";
  EXPECT_EQ(json::parse(r.out).at("events_stored").as_int64(), 5);
}

// SIGTERM in the middle of a run: it stops as "interrupted" with its position saved, and
// --resume carries on from there (the first page is not read again, no event is stored twice).
TEST_F(backfill_cli, a_run_interrupted_by_sigterm_resumes_from_its_position) {
  fake.inject({.method = "GET",
               .path = "/recents?since_timestamp=" + since_query + "&items=deal&start=2&limit=2",
               .delay = std::chrono::milliseconds(3'000)});
  const std::string out = dir.file("out.txt"), err = dir.file("err.txt");
  const int pid = test::spawn_process(PIPEHOOK_BINARY, {"-c", cfg, "backfill", "--since", since, "--objects", "deal"}, env, out, err);
  ASSERT_GT(pid, 0);
  ASSERT_TRUE(test::wait_for([&] { return page_requests(2) == 1; }, std::chrono::seconds(10)));
  ::kill(pid, SIGTERM);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
  EXPECT_NE(test::read_file(err).find("--resume 1"), std::string::npos) << test::read_file(err);
  auto interrupted = json::parse(test::read_file(out)).as_object();
  EXPECT_EQ(interrupted.at("state").as_string(), "interrupted");
  EXPECT_EQ(interrupted.at("events_stored").as_int64(), 2);
  EXPECT_EQ(interrupted.at("position").at("start").as_int64(), 2);

  auto resumed = test::run_cli({"-c", cfg, "backfill", "--resume", "1"}, env);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  const auto run = json::parse(resumed.out).as_object();
  EXPECT_EQ(run.at("state").as_string(), "done");
  EXPECT_EQ(run.at("events_stored").as_int64(), 5);
  EXPECT_EQ(run.at("already_known").as_int64(), 0);
  EXPECT_EQ(page_requests(0), 1u) << "the saved page was read again";
  auto done_again = test::run_cli({"-c", cfg, "backfill", "--resume", "1"}, env);
  EXPECT_EQ(done_again.exit_code, 2);
  EXPECT_NE(done_again.err.find("is done: nothing to resume"), std::string::npos) << done_again.err;
  auto events = test::run_cli({"-c", cfg, "events", "list", "--format", "json", "--limit", "100"});
  EXPECT_EQ(test::count_in(events.out, "\"source_action\":\"backfill\""), 5u) << events.out;
}

// backfill.max_calls caps a run; it ends "capped" with its position, and --resume goes on.
TEST_F(backfill_cli, a_run_stops_at_max_calls_and_resume_goes_on) {
  test::write_file(cfg, test::read_file(cfg) + "max_calls = 2\n");
  auto capped = test::run_cli({"-c", cfg, "backfill", "--since", since, "--objects", "deal"}, env);
  EXPECT_EQ(capped.exit_code, 1);
  EXPECT_NE(capped.err.find("backfill.max_calls (2) reached"), std::string::npos) << capped.err;
  EXPECT_EQ(json::parse(capped.out).at("events_stored").as_int64(), 2);
  // Each go gets max_calls: users/me and one page.
  auto more = test::run_cli({"-c", cfg, "backfill", "--resume", "1"}, env);
  EXPECT_EQ(more.exit_code, 1);
  EXPECT_EQ(json::parse(more.out).at("events_stored").as_int64(), 4) << more.out;
  EXPECT_EQ(json::parse(more.out).at("state").as_string(), "capped");
  auto last = test::run_cli({"-c", cfg, "backfill", "--resume", "1"}, env);
  EXPECT_EQ(last.exit_code, 0) << last.err;
  EXPECT_EQ(json::parse(last.out).at("events_stored").as_int64(), 5) << last.out;
}

}  // namespace
}  // namespace pipehook
