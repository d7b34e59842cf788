// The registrar: planning rules (pure), the client and reconcile against a stateful fake of
// Pipedrive's API over real sockets (HTTP and HTTPS), the `pipehook webhooks` CLI, and `serve`
// registering its own webhooks.
#include "fake_pipedrive.hpp"
#include "pg_server.hpp"
#include "registrar_support.hpp"
#include "pipehook/core/run_blocking.hpp"
#include "pipehook/pipedrive/client.hpp"
#include "pipehook/pipedrive/registrar.hpp"
#include "pipehook/store/fields.hpp"
#include "pipehook/store/reader.hpp"
#include "support.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/json/parse.hpp>
#include <gtest/gtest.h>

#include <set>

namespace pipehook {
namespace {

namespace asio = boost::asio;
namespace pd = pipedrive;
using test::fake_pipedrive;
using test::fake_webhook;
using test::desired;
using test::existing;
using test::public_url;

const std::string token = "tok-0123456789abcdef";

// Runs one client coroutine to completion.
template <class T>
T run(asio::io_context& ioc, asio::awaitable<T> op) {
  return run_blocking(ioc, std::move(op));
}

config::pipedrive_config api_config(const std::string& base) {
  config::pipedrive_config c;
  c.api_base = base;
  c.api_token = token;
  c.connect_timeout_ms = 1'000;
  c.timeout_ms = 2'000;
  c.retry_base_ms = 20;
  c.retry_max_ms = 3'000;
  return c;
}

struct api_fixture {
  asio::io_context ioc;
  std::unique_ptr<pd::client> api;
  std::vector<std::string> reports;
  explicit api_fixture(const config::pipedrive_config& c) {
    auto made = pd::client::create(ioc.get_executor(), c);
    if (!made) throw std::runtime_error(made.error().message);
    api = std::move(*made);
  }
  pd::api_result<pd::sync_result> sync(pd::desired_state d, bool dry_run = false) {
    return run(ioc, pd::reconcile(*api, std::move(d), dry_run, [this](const std::string& l) { reports.push_back(l); }));
  }
};

// ---- the client and reconcile against the fake API -------------------------------------------------

TEST(registrar_api, whoami_and_the_request_pipedrive_sees) {
  fake_pipedrive fake(token);
  api_fixture f(api_config(fake.base_url()));
  auto me = run(f.ioc, f.api->whoami());
  ASSERT_TRUE(me) << me.error().message;
  EXPECT_EQ(me->id, fake_pipedrive::user_id);
  EXPECT_EQ(me->company_id, fake_pipedrive::company_id);
  EXPECT_EQ(me->company_domain, "example-ltd");
  EXPECT_TRUE(me->is_admin);
  auto reqs = fake.requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].target, "/v1/users/me");
  EXPECT_EQ(reqs[0].api_token, token);
}

TEST(registrar_api, oauth_tokens_go_in_a_bearer_header) {
  fake_pipedrive fake(token);
  auto c = api_config(fake.base_url());
  c.api_token.clear();
  c.oauth_token = token;
  api_fixture f(c);
  ASSERT_TRUE(run(f.ioc, f.api->whoami()));
  EXPECT_EQ(fake.requests()[0].authorization, "Bearer " + token);
  EXPECT_EQ(fake.requests()[0].api_token, "");
}

TEST(registrar_api, reconcile_from_empty_then_a_second_run_changes_nothing) {
  fake_pipedrive fake(token);
  api_fixture f(api_config(fake.base_url()));
  auto first = f.sync(desired({{"*", "deal"}, {"change", "person"}, {"delete", "lead"}}));
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_EQ(first->created.size(), 3u);
  auto hooks = fake.webhooks();
  ASSERT_EQ(hooks.size(), 3u);
  for (const auto& w : hooks) {
    EXPECT_EQ(w.subscription_url, public_url);
    EXPECT_EQ(w.version, "2.0");
    EXPECT_EQ(w.name, "pipehook");
    EXPECT_EQ(w.http_auth_user, test::test_user);
    EXPECT_EQ(w.http_auth_password, test::test_password);
  }
  const auto posts = fake.count("POST");
  auto second = f.sync(desired({{"*", "deal"}, {"change", "person"}, {"delete", "lead"}}));
  ASSERT_TRUE(second) << second.error().message;
  EXPECT_TRUE(second->created.empty());
  EXPECT_EQ(second->planned.keep.size(), 3u);
  EXPECT_EQ(fake.count("POST"), posts);
  EXPECT_EQ(fake.count("DELETE"), 0u);
  EXPECT_EQ(fake.webhooks().size(), 3u);
  EXPECT_EQ(second->managed.size(), 3u);
  // One kept-alive connection served the whole first run.
  EXPECT_LE(f.api->stats().connections, 2u);
}

TEST(registrar_api, reconcile_from_partial_creates_only_the_missing) {
  fake_pipedrive fake(token);
  fake.add_webhook({.id = 7, .event_action = "change", .event_object = "deal", .subscription_url = public_url,
                    .http_auth_user = test::test_user});
  fake.add_webhook({.id = 8, .event_action = "*", .event_object = "*", .subscription_url = "https://elsewhere/h"});
  api_fixture f(api_config(fake.base_url()));
  auto r = f.sync(desired({{"change", "deal"}, {"create", "deal"}}));
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(r->created.size(), 1u);
  EXPECT_EQ(r->created[0].event_action, "create");
  EXPECT_EQ(fake.count("POST"), 1u);
  EXPECT_EQ(fake.webhooks().size(), 3u);  // someone else's webhook is untouched
  EXPECT_EQ(std::set<std::int64_t>(r->managed.begin(), r->managed.end()).count(7), 1u);
}

TEST(registrar_api, prune_deletes_our_webhooks_that_are_no_longer_configured) {
  fake_pipedrive fake(token);
  fake.add_webhook({.id = 3, .event_action = "delete", .event_object = "person", .subscription_url = public_url,
                    .http_auth_user = test::test_user});
  fake.add_webhook({.id = 4, .event_action = "delete", .event_object = "person", .subscription_url = "https://x/other"});
  api_fixture f(api_config(fake.base_url()));
  auto dry = f.sync(desired({{"change", "deal"}}, true), true);
  ASSERT_TRUE(dry);
  EXPECT_EQ(fake.count("DELETE") + fake.count("POST"), 0u);  // a dry run writes nothing
  EXPECT_EQ(dry->planned.remove.size(), 1u);
  auto r = f.sync(desired({{"change", "deal"}}, true));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->deleted, std::vector<std::int64_t>{3});
  std::set<std::int64_t> ids;
  for (const auto& w : fake.webhooks()) ids.insert(w.id);
  EXPECT_EQ(ids.count(3), 0u);
  EXPECT_EQ(ids.count(4), 1u);
  EXPECT_EQ(ids.size(), 2u);
}

TEST(registrar_api, a_plan_over_the_limit_is_refused_before_any_write) {
  fake_pipedrive fake(token);
  for (int i = 0; i < 40; ++i)
    fake.add_webhook({.event_action = "change", .event_object = "deal", .subscription_url = "https://x/" + std::to_string(i)});
  api_fixture f(api_config(fake.base_url()));
  auto r = f.sync(desired({{"create", "deal"}}));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().kind, pd::api_errc::plan_refused);
  EXPECT_NE(r.error().message.find("allows 40"), std::string::npos);
  EXPECT_EQ(fake.count("POST"), 0u);
}

TEST(registrar_api, pipedrive_422_limit_reached_is_a_clear_error) {
  fake_pipedrive fake(token);
  fake.inject({.method = "POST", .status = 422,
               .body = R"({"success":false,"error":"Webhooks limit reached","error_info":"Please check developers.pipedrive.com","data":null,"additional_data":null})"});
  api_fixture f(api_config(fake.base_url()));
  auto r = f.sync(desired({{"create", "deal"}}));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().kind, pd::api_errc::limit_reached);
  EXPECT_EQ(r.error().status, 422u);
  EXPECT_NE(r.error().message.find("Webhooks limit reached"), std::string::npos);
  EXPECT_NE(r.error().message.find("40 webhooks"), std::string::npos);
  EXPECT_EQ(fake.count("POST"), 1u);  // not retried
}

TEST(registrar_api, a_bad_token_is_refused_without_retrying_or_leaking_it) {
  fake_pipedrive fake("the-right-token");
  api_fixture f(api_config(fake.base_url()));
  auto r = f.sync(desired({{"create", "deal"}}));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().kind, pd::api_errc::unauthorized);
  EXPECT_NE(r.error().message.find("unauthorized access"), std::string::npos);
  EXPECT_NE(r.error().message.find("PIPEDRIVE_API_TOKEN"), std::string::npos);
  EXPECT_EQ(r.error().message.find(token), std::string::npos);
  EXPECT_EQ(fake.requests().size(), 1u);
}

TEST(registrar_api, bad_request_errors_name_the_field) {
  fake_pipedrive fake(token);
  fake.inject({.method = "POST", .status = 400,
               .body = R"({"status":"error","success":false,"errors":{"subscription_url":["invalid or non-reachable URL"]}})"});
  api_fixture f(api_config(fake.base_url()));
  auto r = f.sync(desired({{"create", "deal"}}));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().kind, pd::api_errc::bad_request);
  EXPECT_NE(r.error().message.find("subscription_url: invalid or non-reachable URL"), std::string::npos);
  EXPECT_EQ(r.error().message.find(test::test_password), std::string::npos);
}

TEST(registrar_api, rate_limited_429_waits_for_the_reset_then_succeeds) {
  fake_pipedrive fake(token);
  fake.inject({.method = "GET", .path = "/webhooks", .status = 429, .headers = {{"x-ratelimit-reset", "1"}}});
  api_fixture f(api_config(fake.base_url()));
  const auto t0 = std::chrono::steady_clock::now();
  auto r = run(f.ioc, f.api->list_webhooks());
  const auto waited = std::chrono::steady_clock::now() - t0;
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_GE(waited, std::chrono::milliseconds(950));  // the header said 1 s; retry_base is 20 ms
  EXPECT_EQ(f.api->stats().retries, 1u);
  EXPECT_EQ(fake.count("GET"), 2u);
}

TEST(registrar_api, a_reset_beyond_retry_max_gives_up_and_says_so) {
  fake_pipedrive fake(token);
  fake.inject({.method = "GET", .status = 429, .headers = {{"x-ratelimit-reset", "3600"}}});
  api_fixture f(api_config(fake.base_url()));
  auto r = run(f.ioc, f.api->list_webhooks());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().kind, pd::api_errc::rate_limited);
  EXPECT_NE(r.error().message.find("3600 s"), std::string::npos);
}

TEST(registrar_api, server_errors_are_retried_then_succeed) {
  fake_pipedrive fake(token);
  fake.inject({.method = "GET", .path = "/webhooks", .status = 500});
  fake.inject({.method = "GET", .path = "/webhooks", .status = 503});
  api_fixture f(api_config(fake.base_url()));
  auto r = run(f.ioc, f.api->list_webhooks());
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(f.api->stats().retries, 2u);
}

TEST(registrar_api, server_errors_that_persist_end_in_a_clear_error) {
  fake_pipedrive fake(token);
  for (int i = 0; i < 4; ++i) fake.inject({.method = "GET", .status = 502});
  api_fixture f(api_config(fake.base_url()));
  auto r = run(f.ioc, f.api->whoami());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().kind, pd::api_errc::server_error);
  EXPECT_NE(r.error().message.find("after 4 attempts"), std::string::npos);
}

TEST(registrar_api, a_create_answered_500_is_never_blindly_repeated) {
  fake_pipedrive fake(token);
  // The first create is applied but answered 500; the second fails before applying.
  fake.inject({.method = "POST", .status = 500, .apply_then_fail = true});
  fake.inject({.method = "POST", .status = 500});
  api_fixture f(api_config(fake.base_url()));
  auto r = f.sync(desired({{"create", "deal"}, {"change", "deal"}}));
  ASSERT_TRUE(r) << r.error().message;
  auto hooks = fake.webhooks();
  ASSERT_EQ(hooks.size(), 2u);  // one each: no duplicate from the retry
  EXPECT_NE(hooks[0].event_action, hooks[1].event_action);
  EXPECT_EQ(r->managed.size(), 2u);
}

TEST(registrar_api, deleting_an_unknown_webhook_is_not_found) {
  fake_pipedrive fake(token);
  api_fixture f(api_config(fake.base_url()));
  auto r = run(f.ioc, f.api->delete_webhook(424242));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().kind, pd::api_errc::not_found);
  EXPECT_NE(r.error().message.find("id: not found"), std::string::npos);
}

TEST(registrar_api, a_slow_endpoint_hits_the_deadline) {
  fake_pipedrive fake(token);
  fake.inject({.method = "GET", .delay = std::chrono::milliseconds(1500)});
  fake.inject({.method = "GET", .delay = std::chrono::milliseconds(1500)});
  auto c = api_config(fake.base_url());
  c.timeout_ms = 300;
  c.max_attempts = 2;
  api_fixture f(c);
  const auto t0 = std::chrono::steady_clock::now();
  auto r = run(f.ioc, f.api->whoami());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().kind, pd::api_errc::timeout);
  EXPECT_NE(r.error().message.find("timed out (300 ms)"), std::string::npos);
  EXPECT_EQ(f.api->stats().requests, 2u);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(1400));
}

TEST(registrar_api, an_endpoint_that_refuses_tls_fails_fast_and_clearly) {
  fake_pipedrive plain(token);  // speaks HTTP where the client expects HTTPS
  api_fixture f(api_config("https://127.0.0.1:" + std::to_string(plain.port()) + "/v1"));
  auto r = run(f.ioc, f.api->whoami());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().kind, pd::api_errc::tls);
  EXPECT_NE(r.error().message.find("TLS handshake"), std::string::npos);
  EXPECT_EQ(f.api->stats().requests, 0u);  // nothing was sent in clear text, and no retry
}

TEST(registrar_api, tls_verifies_the_certificate_and_the_host_name) {
  const auto cert = test::make_self_signed_localhost();
  fake_pipedrive fake(token, "/api/v1", cert);
  {  // not signed by a trusted CA
    api_fixture f(api_config(fake.base_url("localhost")));
    auto r = run(f.ioc, f.api->whoami());
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().kind, pd::api_errc::tls);
    EXPECT_NE(r.error().message.find("certificate"), std::string::npos) << r.error().message;
  }
  test::temp_dir dir;
  test::write_file(dir.file("ca.pem"), cert.cert_pem);
  {  // trusted through pipedrive.ca_file, and the name matches
    auto c = api_config(fake.base_url("localhost"));
    c.ca_file = dir.file("ca.pem");
    api_fixture f(c);
    auto r = run(f.ioc, f.api->whoami());
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->id, fake_pipedrive::user_id);
  }
  {  // trusted, but issued for localhost, not 127.0.0.1
    auto c = api_config(fake.base_url("127.0.0.1"));
    c.ca_file = dir.file("ca.pem");
    api_fixture f(c);
    auto r = run(f.ioc, f.api->whoami());
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().kind, pd::api_errc::tls);
  }
}

TEST(registrar_api, an_unreachable_api_is_retried_then_reported) {
  unsigned short port;
  {
    fake_pipedrive gone(token);
    port = gone.port();
  }
  auto c = api_config("http://127.0.0.1:" + std::to_string(port) + "/v1");
  c.max_attempts = 3;
  api_fixture f(c);
  auto r = run(f.ioc, f.api->whoami());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().kind, pd::api_errc::unreachable);
  EXPECT_TRUE(r.error().transient());
  EXPECT_EQ(f.api->stats().retries, 2u);
}

// ---- the CLI -------------------------------------------------------------------------------------

std::string cli_config(const test::temp_dir& dir, const fake_pipedrive& fake, const std::string& extra = "") {
  const std::string path = dir.file("pipehook.toml");
  test::write_file(path, "[auth]\nuser = \"" + test::test_user + "\"\n[pipedrive]\napi_base = \"" + fake.base_url() +
                             "\"\nretry_base = \"20ms\"\n[registrar]\nsubscription_url = \"" + public_url +
                             "\"\n[[registrar.webhooks]]\nevent_action = \"*\"\nevent_object = \"deal\"\n"
                             "[[registrar.webhooks]]\nevent_action = \"change\"\nevent_object = \"person\"\n" +
                             extra);
  return path;
}

std::map<std::string, std::string> cli_env(const std::string& tok = token) {
  return {{"PIPEDRIVE_API_TOKEN", tok}, {"PIPEHOOK_AUTH_PASSWORD", test::test_password}};
}

TEST(webhooks_cli, whoami_list_sync_delete) {
  fake_pipedrive fake(token);
  test::temp_dir dir;
  const auto cfg = cli_config(dir, fake);

  auto who = test::run_cli({"-c", cfg, "webhooks", "whoami"}, cli_env());
  ASSERT_EQ(who.exit_code, 0) << who.err;
  EXPECT_NE(who.out.find("1001 Test Admin"), std::string::npos) << who.out;
  EXPECT_NE(who.out.find("example-ltd.pipedrive.com"), std::string::npos);

  auto dry = test::run_cli({"-c", cfg, "webhooks", "sync", "--dry-run"}, cli_env());
  ASSERT_EQ(dry.exit_code, 0) << dry.err;
  EXPECT_NE(dry.out.find("create  *.deal v2.0 -> " + public_url), std::string::npos) << dry.out;
  EXPECT_NE(dry.out.find("nothing was changed"), std::string::npos);
  EXPECT_EQ(fake.count("POST"), 0u);

  auto sync = test::run_cli({"-c", cfg, "webhooks", "sync"}, cli_env());
  ASSERT_EQ(sync.exit_code, 0) << sync.err;
  EXPECT_NE(sync.out.find("created webhook #1 *.deal"), std::string::npos) << sync.out;
  EXPECT_NE(sync.out.find("2 webhook(s) in place (2 created, 0 deleted)"), std::string::npos) << sync.out;
  EXPECT_EQ(sync.out.find(test::test_password), std::string::npos);

  auto again = test::run_cli({"-c", cfg, "webhooks", "sync"}, cli_env());
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_NE(again.out.find("nothing to change"), std::string::npos) << again.out;
  EXPECT_EQ(fake.count("POST"), 2u);

  auto table = test::run_cli({"-c", cfg, "webhooks", "list"}, cli_env());
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_NE(table.out.find("change.person"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("(pipehook)"), std::string::npos);
  auto json = test::run_cli({"-c", cfg, "webhooks", "list", "--format", "json"}, cli_env());
  ASSERT_EQ(json.exit_code, 0) << json.err;
  EXPECT_NE(json.out.find(R"("event":"*.deal")"), std::string::npos) << json.out;
  EXPECT_NE(json.out.find(R"("ours":true)"), std::string::npos);
  EXPECT_EQ(json.out.find("password"), std::string::npos);

  auto del = test::run_cli({"-c", cfg, "webhooks", "delete", "1"}, cli_env());
  ASSERT_EQ(del.exit_code, 0) << del.err;
  EXPECT_EQ(fake.webhooks().size(), 1u);
  auto gone = test::run_cli({"-c", cfg, "webhooks", "delete", "1"}, cli_env());
  EXPECT_EQ(gone.exit_code, 1);
  EXPECT_NE(gone.err.find("not found"), std::string::npos) << gone.err;
}

// An object pipehook does not know is warned about and sent; Pipedrive's 400 comes back naming the
// subscription it refused. v1's activityType (in Pipedrive's list of v1 webhooks) goes through.
TEST(webhooks_cli, an_unknown_object_is_sent_and_pipedrives_refusal_names_the_subscription) {
  fake_pipedrive fake(token);
  test::temp_dir dir;
  const std::string path = dir.file("objects.toml");
  auto write = [&](const std::string& version, const std::string& object) {
    test::write_file(path, "[auth]\nuser = \"" + test::test_user + "\"\n[pipedrive]\napi_base = \"" + fake.base_url() +
                               "\"\n[registrar]\nversion = \"" + version + "\"\nsubscription_url = \"" + public_url +
                               "\"\n[[registrar.webhooks]]\nevent_action = \"change\"\nevent_object = \"" + object + "\"\n");
  };
  write("2.0", "gizmo");
  auto refused = test::run_cli({"-c", path, "webhooks", "sync"}, cli_env());
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_NE(refused.err.find("warning: registrar.webhooks[0].event_object \"gizmo\" is not an object pipehook knows"),
            std::string::npos)
      << refused.err;
  EXPECT_NE(refused.err.find("creating the webhook change.gizmo (v2.0): "), std::string::npos) << refused.err;
  EXPECT_NE(refused.err.find("event_object"), std::string::npos) << refused.err;  // Pipedrive's own reason
  EXPECT_EQ(fake.count("POST"), 1u);  // it was sent

  write("1.0", "activityType");
  auto v1 = test::run_cli({"-c", path, "webhooks", "sync"}, cli_env());
  ASSERT_EQ(v1.exit_code, 0) << v1.err;
  EXPECT_EQ(v1.err.find("warning"), std::string::npos) << v1.err;
  EXPECT_NE(v1.out.find("change.activityType"), std::string::npos) << v1.out;
  ASSERT_EQ(fake.webhooks().size(), 1u);
  EXPECT_EQ(fake.webhooks()[0].event_object, "activityType");
}

// `webhooks fields`: an object's fields as Pipedrive lists them, page by page (start/limit with
// more_items_in_collection), custom fields with their 40-hex keys and option ids; leads use the deal
// fields; an object without fields is a usage error.
TEST(webhooks_cli, fields_lists_every_page_with_keys_names_and_options) {
  fake_pipedrive fake(token);
  std::vector<test::fake_field> deal_fields;
  for (int i = 0; i < 1200; ++i) deal_fields.push_back({"field_" + std::to_string(i), "Field " + std::to_string(i), "varchar"});
  deal_fields.push_back({"5f0e1c2d3b4a59687766554433221100aabbccdd", "Region", "enum", true, {{6, "EU"}, {7, "APAC"}}});
  fake.set_fields("deal", deal_fields);
  fake.set_fields("note", {{"content", "Content", "text"}});
  test::temp_dir dir;
  const auto cfg = cli_config(dir, fake);

  auto table = test::run_cli({"-c", cfg, "webhooks", "fields", "deal"}, cli_env());
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_NE(table.out.find("5f0e1c2d3b4a59687766554433221100aabbccdd"), std::string::npos) << table.out.substr(0, 500);
  EXPECT_NE(table.out.find("6=EU, 7=APAC"), std::string::npos);
  EXPECT_NE(table.out.find("field_1199"), std::string::npos);
  EXPECT_EQ(fake.count("GET"), 3u);  // 500 + 500 + 201

  auto json = test::run_cli({"-c", cfg, "webhooks", "fields", "lead", "--format", "json"}, cli_env());
  ASSERT_EQ(json.exit_code, 0) << json.err;
  const auto arr = boost::json::parse(json.out).as_array();
  ASSERT_EQ(arr.size(), 1201u);
  EXPECT_EQ(arr.back().at("name").as_string(), "Region");
  EXPECT_TRUE(arr.back().at("custom").as_bool());
  EXPECT_EQ(arr.back().at("options").as_array()[1].at("label").as_string(), "APAC");
  EXPECT_EQ(arr.back().at("options").as_array()[1].at("id").as_string(), "7");

  auto note = test::run_cli({"-c", cfg, "webhooks", "fields", "note"}, cli_env());
  ASSERT_EQ(note.exit_code, 0) << note.err;
  EXPECT_NE(note.out.find("content"), std::string::npos);
  const auto requests = fake.requests();
  EXPECT_EQ(requests.back().target, "/v1/noteFields");  // not paged in the spec

  auto stage = test::run_cli({"-c", cfg, "webhooks", "fields", "stage"}, cli_env());
  EXPECT_EQ(stage.exit_code, 2);
  EXPECT_NE(stage.err.find("has no fields in Pipedrive's API"), std::string::npos) << stage.err;
}

TEST(webhooks_cli, exit_codes_say_whose_fault_it_is) {
  fake_pipedrive fake(token);
  test::temp_dir dir;
  const auto cfg = cli_config(dir, fake);
  auto refused = test::run_cli({"-c", cfg, "webhooks", "list"}, cli_env("wrong-token"));
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_NE(refused.err.find("refused the token"), std::string::npos) << refused.err;
  EXPECT_EQ(refused.err.find("wrong-token"), std::string::npos);

  auto no_token = test::run_cli({"-c", cfg, "webhooks", "list"}, {});
  EXPECT_EQ(no_token.exit_code, 2);
  EXPECT_NE(no_token.err.find("PIPEDRIVE_API_TOKEN"), std::string::npos) << no_token.err;

  auto no_password = test::run_cli({"-c", cfg, "webhooks", "sync"}, {{"PIPEDRIVE_API_TOKEN", token}});
  EXPECT_EQ(no_password.exit_code, 2);
  EXPECT_NE(no_password.err.find("password"), std::string::npos) << no_password.err;

  auto bad_id = test::run_cli({"-c", cfg, "webhooks", "delete", "abc"}, cli_env());
  EXPECT_EQ(bad_id.exit_code, 2);
  EXPECT_EQ(fake.requests().size(), 1u);  // only the refused list reached the API
}

// ---- serve with the registrar --------------------------------------------------------------------

config::config registrar_daemon_config(const test::temp_dir& dir, const std::string& api_base) {
  auto c = test::test_config(dir);
  c.pipedrive = api_config(api_base);
  c.registrar.enabled = true;
  c.registrar.subscription_url = public_url;
  c.registrar.webhooks = {{"*", "deal"}, {"change", "person"}};
  c.registrar.delete_on_shutdown = true;
  return c;
}

TEST(serve_registrar, registers_at_start_up_accepts_deliveries_and_deletes_on_shutdown) {
  fake_pipedrive fake(token);
  test::temp_dir dir;
  test::running_daemon d(registrar_daemon_config(dir, fake.base_url()));
  ASSERT_TRUE(test::wait_for([&] { return fake.webhooks().size() == 2; }, std::chrono::seconds(10)));
  const auto hook = fake.webhooks()[0];
  // A delivery as Pipedrive would make it, with the credentials it was given.
  test::http_client client(d.port());
  auto reply = client.post(test::samples().at("v2-change-deal.json"),
                           test::basic_auth(hook.http_auth_user, hook.http_auth_password));
  EXPECT_EQ(reply.status, 200u) << reply.body;
  d.stop_and_wait();
  EXPECT_TRUE(fake.webhooks().empty());  // delete_on_shutdown
}

TEST(serve_registrar, serves_while_pipedrive_is_unreachable_and_registers_once_it_is_back) {
  unsigned short api_port;
  {
    fake_pipedrive probe(token);
    api_port = probe.port();
  }
  test::temp_dir dir;
  auto c = registrar_daemon_config(dir, "http://127.0.0.1:" + std::to_string(api_port) + "/v1");
  c.pipedrive.max_attempts = 1;
  test::http_test_server alerts([](const test::recorded_request&) { return test::canned_response{200, "{}", {}}; });
  c.alerts.url = "http://127.0.0.1:" + std::to_string(alerts.port()) + "/";
  test::running_daemon d(c);
  test::http_client client(d.port());
  EXPECT_EQ(client.request("GET", "/healthz").status, 200u);
  // The registrar has failed against the unreachable API and is waiting to try again.
  ASSERT_TRUE(test::wait_for([&] { return test::metrics_show(d.admin_port(), "pipehook_registrar_state{state=\"retrying\"} 1"); },
                             std::chrono::seconds(10)));
  // One alert says so (not one per retry).
  ASSERT_TRUE(test::wait_for([&] { return alerts.request_count() == 1; }, std::chrono::seconds(10)));
  const auto notice = boost::json::parse(alerts.requests().at(0).body);
  EXPECT_EQ(notice.at("type").as_string(), "registrar.failed");
  EXPECT_NE(std::string(notice.at("message").as_string()).find("127.0.0.1:" + std::to_string(api_port)), std::string::npos)
      << notice.at("message").as_string();
  EXPECT_EQ(notice.at("details").at("state").as_string(), "retrying");
  fake_pipedrive fake(token, "/v1", {}, api_port);
  EXPECT_TRUE(test::wait_for([&] { return fake.webhooks().size() == 2; }, std::chrono::seconds(15)));
  EXPECT_TRUE(test::metrics_show(d.admin_port(), "pipehook_alerts_total{result=\"sent\"} 1"));
  EXPECT_EQ(alerts.request_count(), 1u);
  auto reply = client.post(test::samples().at("v2-change-deal.json"), test::basic_auth(test::test_user, test::test_password));
  EXPECT_EQ(reply.status, 200u);
}

// Two replicas on one PostgreSQL log: one registers (an advisory lock decides), the other stands
// by; when the registering one stops, the other takes over within takeover_check and reconciles.
// The webhooks are created once and never twice. delete_on_shutdown deletes them only when the
// last replica stops: the first one's stop (a rolling restart) leaves them.
TEST(serve_registrar, replicas_on_one_database_register_once_and_the_standby_takes_over) {
  fake_pipedrive fake(token);
  test::temp_dir dir;
  auto c = registrar_daemon_config(dir, fake.base_url());
  test::use_backend(c, store::location::kind::postgres);
  c.registrar.delete_on_shutdown = true;
  c.registrar.takeover_check_ms = 200;
  auto first = std::make_unique<test::running_daemon>(c);
  ASSERT_TRUE(test::wait_for([&] { return fake.webhooks().size() == 2; }, std::chrono::seconds(10)));
  auto second = std::make_unique<test::running_daemon>(c);
  ASSERT_TRUE(test::wait_for([&] { return test::metrics_show(second->admin_port(), "pipehook_registrar_state{state=\"standby\"} 1"); },
                             std::chrono::seconds(10)));
  EXPECT_TRUE(test::metrics_show(first->admin_port(), "pipehook_registrar_state{state=\"ok\"} 1"));
  const std::size_t lists_before = fake.count("GET");
  EXPECT_EQ(fake.count("POST"), 2u);

  first->stop_and_wait();
  first.reset();
  EXPECT_EQ(fake.count("DELETE"), 0u) << "a replica deleted the webhooks while another still ran";
  EXPECT_EQ(fake.webhooks().size(), 2u);
  // The standby takes the role and reconciles: it reads what is there, creates nothing.
  ASSERT_TRUE(test::wait_for([&] { return test::metrics_show(second->admin_port(), "pipehook_registrar_state{state=\"ok\"} 1"); },
                             std::chrono::seconds(10)));
  EXPECT_GT(fake.count("GET"), lists_before);
  EXPECT_EQ(fake.count("POST"), 2u) << "a webhook was created twice";
  EXPECT_EQ(fake.webhooks().size(), 2u);
  // The last replica's stop deletes them.
  second->stop_and_wait();
  EXPECT_EQ(fake.count("DELETE"), 2u);
  EXPECT_TRUE(fake.webhooks().empty());
}

// Field names: with a token, serve caches Pipedrive's field definitions, and every diff shows a
// field's name beside its key and option labels beside the ids (v1 and v2, enum and set), in the
// API and the CLI. A custom field the cache does not know makes it fetch again at once.
struct serve_fields : ::testing::TestWithParam<store::location::kind> {};

TEST_P(serve_fields, names_and_option_labels_show_in_diffs_and_an_unknown_key_refreshes_them) {
  fake_pipedrive fake(token);
  const std::string region = "5f0e1c2d3b4a59687766554433221100aabbccdd", tags = "0123456789abcdef0123456789abcdef01234567",
                    segment = "feedfacefeedfacefeedfacefeedfacefeedface";
  std::vector<test::fake_field> deal_fields{{"stage_id", "Stage", "stage"},
                                            {region, "Region", "enum", true, {{6, "EU"}, {7, "APAC"}}},
                                            {tags, "Tags", "set", true, {{1, "Hot"}, {2, "Cold"}}}};
  fake.set_fields("deal", deal_fields);
  for (const char* o : {"person", "organization", "product", "activity", "note"}) fake.set_fields(o, {});
  test::temp_dir dir;
  auto c = test::test_config(dir);
  test::use_backend(c, GetParam());
  c.pipedrive = api_config(fake.base_url());
  // A handler that wants region changes, by the field's name in Pipedrive (any case).
  test::http_test_server sink([](const test::recorded_request&) { return test::canned_response{200, "{}", {}}; });
  auto h = test::http_sink_handler("regions", sink.port());
  h.match.changed = {"region"};
  c.handlers.push_back(h);
  test::running_daemon d(c);
  auto rd = store::reader::open(test::location_of(c));
  ASSERT_TRUE(rd);
  ASSERT_TRUE(test::wait_for([&] { auto f = (*rd)->fields("deal"); return f && f->size() == 3; }, std::chrono::seconds(10)));

  test::http_client client(d.port());
  const std::string auth = test::basic_auth(test::test_user, test::test_password);
  auto v2 = client.post(test::v2("f1", "deal", "1", "change",
                                 R"({"id":1,"stage_id":3,"custom_fields":{")" + region + R"(":{"type":"enum","id":7}}})",
                                 R"({"stage_id":2,"custom_fields":{")" + region + R"(":{"type":"enum","id":6}}})"),
                        auth);
  ASSERT_EQ(v2.status, 200u) << v2.body;
  auto v1 = client.post(test::v1("updated", "deal", "2", R"({"id":2,")" + tags + R"(":"1,2"})", R"({"id":2,")" + tags + R"(":"1"})",
                                 "1714557600000009"),
                        auth);
  ASSERT_EQ(v1.status, 200u) << v1.body;
  test::http_client admin(d.admin_port());
  auto changes_of = [&](const std::string& reply) {
    std::map<std::string, boost::json::object> out;
    const auto id = boost::json::parse(reply).at("id").as_int64();
    const auto body = admin.request("GET", "/api/v1/events/" + std::to_string(id)).body;
    const auto doc = boost::json::parse(body);
    for (const auto& ch : doc.at("changes").as_array()) out[std::string(ch.at("field").as_string())] = ch.as_object();
    return out;
  };
  auto two = changes_of(v2.body);
  ASSERT_TRUE(two.count("custom_fields." + region));
  EXPECT_EQ(two["custom_fields." + region].at("label").as_string(), "Region");
  EXPECT_EQ(two["custom_fields." + region].at("before_label").as_string(), "EU");
  EXPECT_EQ(two["custom_fields." + region].at("after_label").as_string(), "APAC");
  EXPECT_EQ(two["stage_id"].at("label").as_string(), "Stage");
  EXPECT_FALSE(two["stage_id"].contains("after_label"));  // no options: no labels
  auto one = changes_of(v1.body);
  ASSERT_TRUE(one.count(tags));
  EXPECT_EQ(one[tags].at("label").as_string(), "Tags");
  EXPECT_EQ(one[tags].at("before_label").as_string(), "Hot");
  EXPECT_EQ(one[tags].at("after_label").as_string(), "Hot, Cold");
  // The timeline and the CLI say the same.
  // `q` finds changes by the field's name too.
  auto by_name = admin.request("GET", "/api/v1/events?q=regi");
  const auto found = boost::json::parse(by_name.body).at("events").as_array();
  ASSERT_EQ(found.size(), 1u) << by_name.body;
  EXPECT_EQ(found[0].at("entity_id").as_string(), "1");
  EXPECT_EQ(boost::json::parse(admin.request("GET", "/api/v1/events?q=TAGS").body).at("events").as_array().size(), 1u);
  EXPECT_EQ(boost::json::parse(admin.request("GET", "/api/v1/events?q=nothing-named-so").body).at("events").as_array().size(), 0u);
  // Only the region change went to the handler that asked for it by name.
  ASSERT_TRUE(test::wait_for([&] { return sink.request_count() == 1; }, std::chrono::seconds(10)));
  EXPECT_EQ(sink.requests()[0].header("x-pipehook-entity-id"), "1");
  auto timeline = admin.request("GET", "/api/v1/entities/deal/1/timeline");
  EXPECT_NE(timeline.body.find(R"("label":"Region")"), std::string::npos) << timeline.body;
  const std::string cfg = dir.file("cli.toml");
  test::write_file(cfg, test::store_toml(c));
  const std::string id = std::to_string(boost::json::parse(v2.body).at("id").as_int64());
  auto shown = test::run_cli({"-c", cfg, "events", "show", id});
  EXPECT_NE(shown.out.find("custom_fields." + region + " (Region)"), std::string::npos) << shown.out;
  EXPECT_NE(shown.out.find("[EU -> APAC]"), std::string::npos) << shown.out;
  auto tl = test::run_cli({"-c", cfg, "events", "timeline", "deal", "2", "--format", "json"});
  EXPECT_NE(tl.out.find(R"("after_label":"Hot, Cold")"), std::string::npos) << tl.out;

  // A field added in Pipedrive since: its key is unknown, the page asks for a refresh, and the
  // name shows up without waiting for fields_refresh.
  deal_fields.push_back({segment, "Segment", "varchar", true});
  fake.set_fields("deal", deal_fields);
  auto v3 = client.post(test::v2("f3", "deal", "3", "change", R"({"id":3,"custom_fields":{")" + segment + R"(":"B2B"}})",
                                 R"({"custom_fields":{")" + segment + R"(":"B2C"}})"),
                        auth);
  ASSERT_EQ(v3.status, 200u);
  EXPECT_FALSE(changes_of(v3.body)["custom_fields." + segment].contains("label"));  // not cached yet
  ASSERT_TRUE(test::wait_for([&] { return changes_of(v3.body)["custom_fields." + segment].contains("label"); },
                             std::chrono::seconds(10)));
  EXPECT_EQ(changes_of(v3.body)["custom_fields." + segment].at("label").as_string(), "Segment");

  // A webhook about an object's field definitions makes the daemon fetch them at once.
  fake.set_fields("person", {{"e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0", "Shoe size", "double", true}});
  ASSERT_EQ(client.post(test::v2("f4", "personField", "9", "change", R"({"id":9,"name":"Shoe size"})", R"({"name":"Size"})"), auth)
                .status,
            200u);
  ASSERT_TRUE(test::wait_for([&] { auto f = (*rd)->fields("person"); return f && f->size() == 1; }, std::chrono::seconds(10)));
  for (const auto& [entity, object] : std::vector<std::pair<std::string, std::string>>{
           {"dealField", "deal"}, {"deal_fields", "deal"}, {"leadField", "deal"}, {"PersonFields", "person"},
           {"noteField", "note"}, {"deal", ""}, {"stageField", ""}, {"field", ""}})
    EXPECT_EQ(store::fields_object_of_definition(entity), object) << entity;
}

INSTANTIATE_TEST_SUITE_P(backends, serve_fields, test::backends(), test::backend_name);

TEST(serve_registrar, a_bad_registrar_config_stops_serve_with_a_usage_error) {
  test::temp_dir dir;
  auto c = registrar_daemon_config(dir, "http://127.0.0.1:9/v1");
  c.pipedrive.api_token.clear();
  auto d = cli::daemon::create(c);
  ASSERT_FALSE(d);
  EXPECT_NE(d.error().message.find("PIPEDRIVE_API_TOKEN"), std::string::npos);
}

}  // namespace
}  // namespace pipehook
