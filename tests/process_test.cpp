// The pipehook binary as users run it: signals, SIGKILL under load, and the CLI.
#include "http_sink.hpp"
#include "pipehook/store/outbox.hpp"
#include "pipehook/store/reader.hpp"
#include "pg_server.hpp"
#include "support.hpp"

#include <boost/json/parse.hpp>
#include <gtest/gtest.h>

#include <atomic>
#include <csignal>
#include <map>
#include <mutex>
#include <set>
#include <sstream>

namespace pipehook {
namespace {

using namespace std::chrono_literals;

const std::string good_auth = test::basic_auth(test::test_user, test::test_password);

// A config file for the daemon; `store` is its [store] section (the SQLite file in `dir` by default).
std::string write_config(const test::temp_dir& dir, const std::string& extra = "", std::string store = "") {
  const std::string path = dir.file("pipehook.toml");
  if (store.empty()) store = "[store]\npath = \"" + dir.file("events.db") + "\"\n";
  test::write_file(path, "[admin]\nlisten = \"127.0.0.1:0\"\n[server]\nlisten = \"127.0.0.1:0\"\n" + extra + "[auth]\npassword = \"" + test::test_password +
                             "\"\n" + store);
  return path;
}

// The process tests that touch the event log, on both backends.
struct process_backend : ::testing::TestWithParam<store::location::kind> {
  test::temp_dir dir;
  config::config c = test::test_config(dir);
  process_backend() { test::use_backend(c, GetParam()); }
  std::string config_file(const std::string& extra = "") { return write_config(dir, extra, test::store_toml(c)); }
  store::location where() const { return test::location_of(c); }
};

TEST(process, a_hanging_handler_does_not_hold_up_shutdown_and_its_delivery_waits_for_the_next_run) {
  std::atomic<bool> release{false};
  test::http_test_server sink([&](const test::recorded_request&) {
    for (int i = 0; i < 300 && !release; ++i) std::this_thread::sleep_for(100ms);  // hangs until released
    return test::canned_response{200, "{}", {}, "application/json"};
  });
  test::temp_dir dir;
  const std::string path = dir.file("pipehook.toml");
  test::write_file(path, "[admin]\nlisten = \"127.0.0.1:0\"\n[server]\nlisten = \"127.0.0.1:0\"\nshutdown_timeout = \"1s\"\n[auth]\npassword = \"" +
                             test::test_password + "\"\n[store]\npath = \"" + dir.file("events.db") +
                             "\"\n[[handlers]]\nname = \"slow\"\ntype = \"http\"\ntimeout = \"60s\"\nurl = \"http://127.0.0.1:" +
                             std::to_string(sink.port()) + "/\"\n");
  test::daemon_process d(path, dir.file("log"));
  test::http_client client(d.port());
  ASSERT_EQ(client.post(test::v2_body("hang-1"), good_auth).status, 200u);
  ASSERT_TRUE(test::wait_for([&] { return sink.request_count() == 1; }, 10s));
  const auto t0 = std::chrono::steady_clock::now();
  d.signal(SIGTERM);
  EXPECT_EQ(d.wait(10s), 0) << test::read_file(dir.file("log"));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 4s);  // shutdown_timeout, then the delivery is cancelled
  release = true;
  auto ob = store::outbox::open(dir.file("events.db"));
  ASSERT_TRUE(ob);
  auto counts = (*ob)->counts();
  ASSERT_TRUE(counts);
  ASSERT_EQ(counts->size(), 1u);
  EXPECT_EQ((*counts)[0].done, 0);
  EXPECT_EQ((*counts)[0].pending + (*counts)[0].retrying, 1);  // delivered again by the next run
}

TEST(process, sighup_reopens_a_json_log_reloads_credentials_and_names_what_needs_a_restart) {
  test::temp_dir dir;
  const std::string path = dir.file("pipehook.toml"), log = dir.file("pipehook.log");
  auto config_text = [&](const std::string& password, const std::string& path_setting) {
    return "[admin]\nlisten = \"127.0.0.1:0\"\n[server]\nlisten = \"127.0.0.1:0\"\npath = \"" + path_setting + "\"\n[auth]\npassword = \"" + password +
           "\"\n[store]\npath = \"" + dir.file("events.db") + "\"\n[log]\nformat = \"json\"\nfile = \"" + log + "\"\n";
  };
  test::write_file(path, config_text(test::test_password, "/webhooks/pipedrive"));
  test::daemon_process d(path, dir.file("stderr"), log);
  test::http_client client(d.port());
  ASSERT_EQ(client.post(test::v2_body("hup-1"), good_auth).status, 200u);

  // logrotate: move the file away, then SIGHUP; the new password and a new path in the file.
  std::filesystem::rename(log, log + ".1");
  test::write_file(path, config_text("rotated-password", "/hooks/new"));
  d.signal(SIGHUP);
  ASSERT_TRUE(test::wait_for([&] { return std::filesystem::exists(log) && test::read_file(log).find("SIGHUP") != std::string::npos; },
                             10s));
  EXPECT_EQ(client.post(test::v2_body("hup-2"), good_auth).status, 401u);
  EXPECT_EQ(client.post(test::v2_body("hup-3"), test::basic_auth(test::test_user, "rotated-password")).status, 200u);
  d.signal(SIGTERM);
  EXPECT_EQ(d.wait(10s), 0);

  // Every line of both files is one JSON object with time, level and msg.
  std::string all;
  for (const auto& f : {log + ".1", log}) {
    std::istringstream in(test::read_file(f));
    for (std::string line; std::getline(in, line);) {
      boost::system::error_code ec;
      auto v = boost::json::parse(line, ec);
      ASSERT_FALSE(ec) << f << ": " << line;
      ASSERT_TRUE(v.is_object());
      EXPECT_TRUE(v.as_object().contains("time") && v.as_object().contains("level") && v.as_object().contains("msg"));
      all += std::string(v.as_object().at("msg").as_string()) + "\n";
    }
  }
  EXPECT_NE(test::read_file(log + ".1").find("listening on"), std::string::npos);
  EXPECT_NE(all.find("SIGHUP: reloaded log (reopened), auth"), std::string::npos) << all;
  EXPECT_NE(all.find("SIGHUP: changed but applied only by a restart: server"), std::string::npos) << all;
}

TEST(process, sighup_reloads_handler_settings_and_refuses_what_needs_a_restart) {
  test::http_test_server first([](const test::recorded_request&) { return test::canned_response{200, "{}", {}}; });
  test::http_test_server second([](const test::recorded_request&) { return test::canned_response{200, "{}", {}}; });
  test::temp_dir dir;
  const std::string path = dir.file("pipehook.toml");
  auto config_text = [&](unsigned short port, const std::string& extra) {
    return "[admin]\nlisten = \"127.0.0.1:0\"\n[server]\nlisten = \"127.0.0.1:0\"\n[auth]\npassword = \"" + test::test_password +
           "\"\n[store]\npath = \"" + dir.file("events.db") + "\"\n[[handlers]]\nname = \"sink\"\ntype = \"http\"\nurl = \"http://127.0.0.1:" +
           std::to_string(port) + "/\"\n" + extra;
  };
  test::write_file(path, config_text(first.port(), ""));
  test::daemon_process d(path, dir.file("log"));
  test::http_client client(d.port());
  ASSERT_EQ(client.post(test::v2_body("reload-1"), good_auth).status, 200u);
  ASSERT_TRUE(test::wait_for([&] { return first.request_count() == 1; }, 10s));

  // A new URL and a new header: applied to the deliveries that follow.
  test::write_file(path, config_text(second.port(), "headers = { X-Reloaded = \"yes\" }\n"));
  d.signal(SIGHUP);
  ASSERT_TRUE(test::wait_for([&] { return test::read_file(dir.file("log")).find("SIGHUP: reloaded") != std::string::npos; }, 10s));
  ASSERT_EQ(client.post(test::v2_body("reload-2"), good_auth).status, 200u);
  ASSERT_TRUE(test::wait_for([&] { return second.request_count() == 1; }, 10s));
  EXPECT_EQ(second.requests()[0].header("x-reloaded"), "yes");
  EXPECT_EQ(first.request_count(), 1u);

  // A different match rule needs a restart: refused, the running handlers stay as they were.
  test::write_file(path, config_text(first.port(), "match = { entity = [\"person\"] }\n"));
  d.signal(SIGHUP);
  ASSERT_TRUE(test::wait_for([&] { return test::read_file(dir.file("log")).find("needs a restart") != std::string::npos; }, 10s));
  ASSERT_EQ(client.post(test::v2_body("reload-3"), good_auth).status, 200u);
  ASSERT_TRUE(test::wait_for([&] { return second.request_count() == 2; }, 10s));
  d.signal(SIGTERM);
  EXPECT_EQ(d.wait(10s), 0);
  const std::string log = test::read_file(dir.file("log"));
  EXPECT_NE(log.find("SIGHUP: reloaded log (reopened), auth, handlers (sink)"), std::string::npos) << log;
  EXPECT_NE(log.find("SIGHUP: not reloaded: handlers: handler sink: its name, type, order, match or ordered changed"),
            std::string::npos) << log;
}

TEST_P(process_backend, sigterm_finishes_the_request_in_flight_then_exits_0) {
  test::daemon_process d(config_file(), dir.file("log"));
  test::raw_socket s(d.port());
  const std::string body = test::v2_body("term-1");
  s.send("POST /webhooks/pipedrive HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: " + good_auth +
         "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body.substr(0, 30));
  ASSERT_TRUE(test::wait_for([&] { return test::metrics_show(d.admin_port(), "pipehook_http_connections{state=\"busy\"} 1"); }, 10s))
      << "the request never began";
  d.signal(SIGTERM);
  ASSERT_TRUE(test::wait_for([&] { return test::read_file(dir.file("log")).find("shutting down") != std::string::npos; }, 10s));
  s.send(body.substr(30));
  const std::string reply = s.read_until_close(10s);
  EXPECT_NE(reply.find("\"stored\""), std::string::npos) << reply;
  EXPECT_EQ(d.wait(10s), 0) << test::read_file(dir.file("log"));
  const std::string log = test::read_file(dir.file("log"));
  EXPECT_NE(log.find("received SIGTERM"), std::string::npos);
  EXPECT_NE(log.find("stopped"), std::string::npos);
  EXPECT_EQ(log.find(test::test_password), std::string::npos) << "a secret was logged";
  EXPECT_EQ(log.find(test::pg_server::password), std::string::npos) << "the database password was logged";
  auto rd = store::reader::open(where());
  ASSERT_TRUE(rd);
  EXPECT_EQ(*(*rd)->count_events(), 1);
}

// The promise that matters most: a 2xx means the event is on disk. Kill -9 under concurrent
// load, restart, and every acknowledged event is there exactly once.
TEST_P(process_backend, sigkill_under_load_loses_no_acknowledged_event) {
  const std::string cfg = config_file();
  std::mutex mu;
  std::set<std::string> acked;  // event ids answered 200 stored
  {
    test::daemon_process d(cfg, dir.file("log1"));
    std::atomic<bool> stop{false};
    std::vector<std::thread> clients;
    for (int t = 0; t < 6; ++t)
      clients.emplace_back([&, t] {
        for (int i = 0; !stop && i < 5000; ++i) {
          try {
            test::http_client c(d.port());
            for (; !stop && i < 5000; ++i) {
              const std::string id = "k-" + std::to_string(t) + "-" + std::to_string(i);
              auto r = c.post(test::v2_body(id, "deal", std::to_string(i)), good_auth);
              if (r.status == 200) {
                std::lock_guard lk(mu);
                acked.insert(id);
              }
            }
          } catch (const std::exception&) {
            return;  // the daemon is gone
          }
        }
      });
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (std::chrono::steady_clock::now() < deadline) {
      {
        std::lock_guard lk(mu);
        if (acked.size() >= 400) break;
      }
      std::this_thread::sleep_for(10ms);
    }
    d.signal(SIGKILL);
    EXPECT_EQ(d.wait(10s), 128 + SIGKILL);
    stop = true;
    for (auto& t : clients) t.join();
  }
  ASSERT_GE(acked.size(), 100u) << "too little load before the kill to mean anything";

  // After restart: each acknowledged event is in the log once, and sending it again is a duplicate.
  test::daemon_process d(cfg, dir.file("log2"));
  auto rd = std::move(*store::reader::open(where()));
  store::event_filter all;
  all.limit = 100000;
  auto rows = *rd->list(all, false);
  std::map<std::string, int> in_log;
  for (const auto& r : rows) ++in_log[r.ev.event_id];
  for (const auto& id : acked) {
    ASSERT_EQ(in_log[id], 1) << id << " was acknowledged but is not in the log exactly once";
  }
  test::http_client c(d.port());
  int checked = 0;
  for (const auto& id : acked) {
    if (++checked > 50) break;
    auto r = c.post(test::v2_body(id, "deal", id.substr(id.rfind('-') + 1)), good_auth);
    EXPECT_NE(r.body.find("\"duplicate\""), std::string::npos) << id << ": " << r.body;
  }
  d.signal(SIGTERM);
  EXPECT_EQ(d.wait(10s), 0);
}

TEST(process, a_bad_config_exits_2_naming_the_key) {
  test::temp_dir dir;
  test::write_file(dir.path / "bad.toml", "[server]\nlisen = \"127.0.0.1:1\"\n");
  auto r = test::run_cli({"--config", dir.file("bad.toml"), "serve"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("unknown key 'server.lisen'"), std::string::npos) << r.err;
  r = test::run_cli({"--config", dir.file("bad.toml"), "check-config"});
  EXPECT_EQ(r.exit_code, 2);
  r = test::run_cli({"serve"});  // no password anywhere
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("PIPEHOOK_AUTH_PASSWORD"), std::string::npos) << r.err;
  r = test::run_cli({"events", "list", "--limit", "0"});
  EXPECT_EQ(r.exit_code, 2);
  r = test::run_cli({"frobnicate"});
  EXPECT_EQ(r.exit_code, 2);
}

TEST(process, check_config_prints_the_effective_config_with_secrets_masked) {
  test::temp_dir dir;
  const std::string cfg = write_config(dir);
  auto r = test::run_cli({"--config", cfg, "check-config"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("listen = '127.0.0.1:0'"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find(test::test_password), std::string::npos);
  EXPECT_NE(r.out.find("********"), std::string::npos);
}

TEST_P(process_backend, events_list_and_show_read_the_log_while_the_daemon_runs) {
  const std::string cfg = config_file();
  test::daemon_process d(cfg, dir.file("log"));
  test::http_client c(d.port());
  for (const auto& [name, body] : test::samples()) ASSERT_EQ(c.post(body, good_auth).status, 200u) << name;
  ASSERT_EQ(c.post(test::samples().at("v2-change-deal.json"), good_auth).status, 200u);  // a duplicate

  auto r = test::run_cli({"--config", cfg, "events", "list", "--format", "ndjson"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), static_cast<long>(test::samples().size()));
  for (const char* field : {"\"id\":", "\"event_key\":", "\"version\":2", "\"entity\":", "\"action\":", "\"source_action\":",
                            "\"entity_id\":", "\"company_id\":", "\"user_id\":", "\"webhook_id\":", "\"occurred_at\":",
                            "\"received_at\":", "\"attempt\":", "\"change_source\":", "\"is_bulk\":", "\"correlation_id\":"})
    EXPECT_NE(r.out.find(field), std::string::npos) << field;

  r = test::run_cli({"--config", cfg, "events", "list", "--entity", "lead", "--format", "ndjson"});
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1);
  EXPECT_NE(r.out.find("b1810230-6c0d-11ed-9826-a53d0eb706a5"), std::string::npos);
  r = test::run_cli({"--config", cfg, "events", "list", "--action", "delete", "--format", "ndjson"});
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1);
  r = test::run_cli({"--config", cfg, "events", "list", "--since", "2026-01-01", "--format", "ndjson"});
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << "only the deal_product sample is from 2026";
  r = test::run_cli({"--config", cfg, "events", "list", "--until", "2022-11-24T15:30:00Z", "--entity-id", "8", "--format", "ndjson"});
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1);
  r = test::run_cli({"--config", cfg, "events", "list", "--since", "last tuesday"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--since"), std::string::npos);

  r = test::run_cli({"--config", cfg, "events", "list", "--entity", "deal"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("ENTITY_ID"), std::string::npos) << r.out;

  r = test::run_cli({"--config", cfg, "events", "list", "--entity", "deal", "--format", "ndjson"});
  const std::string id = r.out.substr(6, r.out.find(',') - 6);
  r = test::run_cli({"--config", cfg, "events", "show", id, "--format", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("\"deliveries\":2"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"body\":{\"data\":"), std::string::npos) << r.out;
  r = test::run_cli({"--config", cfg, "events", "show", "99999"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("no event with id 99999"), std::string::npos);
}

TEST(process, listing_without_a_log_says_so) {
  test::temp_dir dir;
  auto r = test::run_cli({"--config", write_config(dir), "events", "list"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("no event log at"), std::string::npos) << r.err;
}

// PostgreSQL stopped under load: meanwhile every webhook is answered 503 with Retry-After (none
// 2xx: nothing can commit) and /readyz says 503; once the server is back pipehook reconnects by
// itself, and every event acknowledged before, during or after is in the log exactly once.
TEST(postgres_outage, webhooks_get_503_while_the_database_is_down_and_pipehook_recovers_without_a_restart) {
  test::temp_dir dir;
  config::config c = test::test_config(dir);
  test::use_backend(c, store::location::kind::postgres);
  c.store.retry_after_s = 3;
  test::running_daemon d(c);
  auto& server = test::pg_server::shared();

  std::mutex mu;
  std::set<std::string> acked;
  std::map<unsigned, int> statuses;
  int without_retry_after = 0;
  std::atomic<bool> stop{false};
  std::vector<std::thread> clients;
  struct joiner {
    std::atomic<bool>& stop;
    std::vector<std::thread>& threads;
    ~joiner() {
      stop = true;
      for (auto& t : threads)
        if (t.joinable()) t.join();
    }
  } join_clients{stop, clients};
  for (int t = 0; t < 3; ++t)
    clients.emplace_back([&, t] {
      test::http_client client(d.port());
      // Bounded: at most 100k requests each, and a sender that is told 503 slows down (as
      // Pipedrive's retries do) instead of spending its budget in the outage.
      for (int i = 0; !stop && i < 100000; ++i) {
        const std::string id = "o-" + std::to_string(t) + "-" + std::to_string(i);
        auto r = client.post(test::v2_body(id), good_auth);
        {
          std::lock_guard lk(mu);
          ++statuses[r.status];
          if (r.status == 200) acked.insert(id);
          if (r.status == 503 && r.headers["retry-after"] != "3") ++without_retry_after;
        }
        if (r.status == 503) std::this_thread::sleep_for(5ms);
      }
    });
  auto count = [&](unsigned status) {
    std::lock_guard lk(mu);
    return statuses[status];
  };
  ASSERT_TRUE(test::wait_for([&] { return count(200) >= 50; }, 20s)) << "no load before the outage";
  test::http_client probe(d.port());
  server.stop();
  const auto down_at = std::chrono::steady_clock::now();
  ASSERT_TRUE(test::wait_for([&] { return count(503) >= 20; }, 20s)) << "no 503 while the database was down";
  ASSERT_TRUE(test::wait_for([&] { return probe.request("GET", "/readyz").status == 503; }, 10s));
  // The outage lasts 5 s; the 2xx count must not move meanwhile (nothing can commit).
  const int ok_when_down = count(200);
  ASSERT_FALSE(test::wait_for([&] { return count(200) > ok_when_down; },
                              std::chrono::duration_cast<std::chrono::milliseconds>(down_at + 5s - std::chrono::steady_clock::now())))
      << "a webhook was acknowledged while the database was down";
  server.start();
  ASSERT_TRUE(test::wait_for([&] { return count(200) > ok_when_down + 50; }, 30s)) << "pipehook did not recover";
  EXPECT_EQ(probe.request("GET", "/readyz").status, 200u);
  stop = true;
  for (auto& t : clients) t.join();
  clients.clear();
  EXPECT_EQ(without_retry_after, 0) << "a 503 came without Retry-After";
  {
    std::lock_guard lk(mu);
    for (const auto& [status, n] : statuses) EXPECT_TRUE(status == 200 || status == 503) << n << " answers of " << status;
  }
  d.stop_and_wait();
  auto rd = store::reader::open(test::location_of(c));
  ASSERT_TRUE(rd) << rd.error().message;
  store::event_filter all;
  all.limit = 1'000'000;
  std::map<std::string, int> in_log;
  for (const auto& e : *(*rd)->list(all, false)) ++in_log[e.ev.event_id];
  for (const auto& id : acked) ASSERT_EQ(in_log[id], 1) << id << " was acknowledged but is not in the log exactly once";
}

// An acknowledged event survives a database crash only if COMMIT waits for the WAL: a server
// (here, the database) running with synchronous_commit = off is named in a warning at start-up.
TEST(postgres_outage, synchronous_commit_off_is_warned_about_at_start_up) {
  test::temp_dir dir;
  config::config c = test::test_config(dir);
  test::use_backend(c, store::location::kind::postgres);
  const std::string db = c.store.url.substr(c.store.url.rfind('/') + 1);
  test::pg_server::shared().query("postgres", "ALTER DATABASE " + db + " SET synchronous_commit = off");
  test::daemon_process d(write_config(dir, "", test::store_toml(c)), dir.file("log"));
  test::http_client client(d.port());
  ASSERT_EQ(client.post(test::v2_body("async-commit"), good_auth).status, 200u);
  d.signal(SIGTERM);
  EXPECT_EQ(d.wait(10s), 0);
  const std::string log = test::read_file(dir.file("log"));
  EXPECT_NE(log.find("synchronous_commit = off"), std::string::npos) << log;
  EXPECT_NE(log.find("may be lost if the server crashes"), std::string::npos) << log;
}

// Two replicas on one PostgreSQL log both ingest, and dedup is the database's: the same event
// posted to each (Pipedrive's retry landing on the other) is one row, `stored` then `duplicate`;
// what either acknowledged, the other's reader sees.
TEST(replicas, both_ingest_and_a_retry_on_the_other_replica_is_a_duplicate) {
  test::temp_dir dir;
  config::config c = test::test_config(dir);
  test::use_backend(c, store::location::kind::postgres);
  test::running_daemon a(c), b(c);
  test::http_client to_a(a.port()), to_b(b.port());
  auto first = to_a.post(test::v2_body("across-1"), good_auth);
  auto again = to_b.post(test::v2_body("across-1", "deal", "42", 2), good_auth);
  EXPECT_NE(first.body.find("\"stored\""), std::string::npos) << first.body;
  EXPECT_NE(again.body.find("\"duplicate\""), std::string::npos) << again.body;
  for (int i = 0; i < 20; ++i)
    ASSERT_EQ((i % 2 ? to_a : to_b).post(test::v2_body("alt-" + std::to_string(i)), good_auth).status, 200u);
  // The other replica's admin API shows the event the first stored, with both deliveries.
  const auto id = boost::json::parse(first.body).at("id").as_int64();
  test::http_client admin_b(b.admin_port());
  auto shown = admin_b.request("GET", "/api/v1/events/" + std::to_string(id));
  ASSERT_EQ(shown.status, 200u) << shown.body;
  EXPECT_EQ(boost::json::parse(shown.body).at("deliveries").as_int64(), 2);
  auto rd = store::reader::open(test::location_of(c));
  ASSERT_TRUE(rd);
  EXPECT_EQ(*(*rd)->count_events(), 21);
}

INSTANTIATE_TEST_SUITE_P(backends, process_backend, test::backends(), test::backend_name);

}  // namespace
}  // namespace pipehook
