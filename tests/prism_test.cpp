// The requests pipehook sends to Pipedrive, validated against Pipedrive's official OpenAPI spec:
// Stoplight Prism serves tests/data/pipedrive/openapi-v1.yaml as a validating mock and the real
// `pipehook webhooks ...` commands run against it. Any request Prism flags fails the test; a
// deliberately invalid request at the end proves the check can fail.
#include "pg_server.hpp"
#include "support.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <gtest/gtest.h>

#include <csignal>
#include <cstdlib>
#include <sys/wait.h>

namespace pipehook {
namespace {

std::string prism_path() {
  if (const char* p = std::getenv("PIPEHOOK_PRISM")) return p;
  return PIPEHOOK_PRISM;
}

unsigned short free_port() {
  boost::asio::io_context ioc;
  boost::asio::ip::tcp::acceptor a(ioc, {boost::asio::ip::make_address("127.0.0.1"), 0});
  return a.local_endpoint().port();
}

// Prism as a child process in its own process group, its output in a log file.
class prism_process {
 public:
  prism_process(unsigned short port, const std::string& log) : log_(log) {
    pid_ = test::spawn_process(prism_path(), {"mock", "-h", "127.0.0.1", "-p", std::to_string(port), "--errors",
                                              PIPEHOOK_OPENAPI_SPEC},
                               {}, log, log + ".stderr", true);
  }
  ~prism_process() {
    if (pid_ <= 0) return;
    ::kill(-pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
  bool started() const { return pid_ > 0; }
  std::string log() const { return test::read_file(log_) + test::read_file(log_ + ".stderr"); }
  bool wait_listening(std::chrono::seconds timeout) const {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
      if (log().find("Prism is listening") != std::string::npos) return true;
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

 private:
  std::string log_;
  pid_t pid_ = -1;
};

// Prism marks each violation with "✖" in its log.
std::vector<std::string> violations(const std::string& log) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (pos < log.size()) {
    const auto end = log.find('\n', pos);
    const std::string line = log.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
    if (line.find("\xE2\x9C\x96") != std::string::npos) out.push_back(line);
    if (end == std::string::npos) break;
    pos = end + 1;
  }
  return out;
}

// Prism started for each test (skipped where it is not installed, except in CI).
class prism : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::access(prism_path().c_str(), X_OK) != 0) {
      if (std::getenv("CI")) FAIL() << "Prism is not installed at " << prism_path() << " (scripts/install-npm-tools.sh)";
      GTEST_SKIP() << "Prism is not installed: run scripts/install-npm-tools.sh";
    }
    server = std::make_unique<prism_process>(port, dir.file("prism.log"));
    ASSERT_TRUE(server->started());
    ASSERT_TRUE(server->wait_listening(std::chrono::seconds(120))) << server->log();
  }
  test::temp_dir dir;
  const unsigned short port = free_port();
  std::unique_ptr<prism_process> server;
};

// `webhooks fields` asks for every object's fields as the spec describes (start and limit where the
// endpoint pages). Only the requests are checked here: Prism's answers for these endpoints, from
// the spec's examples or generated, fail the spec's own response schema (Prism answers 500), so
// reading real answers, pages included, is tested against the fake (registrar_test.cpp).
TEST_F(prism, field_requests_follow_the_spec) {
  const std::string cfg = dir.file("pipehook.toml");
  test::write_file(cfg, "[pipedrive]\napi_base = \"http://127.0.0.1:" + std::to_string(port) + "\"\nmax_attempts = 1\n");
  const std::map<std::string, std::string> env{{"PIPEDRIVE_API_TOKEN", "api-token"}};
  for (const char* object : {"activity", "note", "deal", "person", "organization", "product"})
    (void)test::run_cli({"-c", cfg, "webhooks", "fields", object}, env);
  const std::string log = server->log();
  for (const std::string object : {"activity", "note", "deal", "person", "organization", "product"}) {
    SCOPED_TRACE(object);
    const auto received = log.find("get /" + object + "Fields \xE2\x84\xB9  info      Request received");
    ASSERT_NE(received, std::string::npos) << log;
    const auto verdict = log.find("[VALIDATOR]", received);
    ASSERT_NE(verdict, std::string::npos);
    const std::string passed = "[VALIDATOR] \xE2\x9C\x94  success   The request passed the validation rules";
    EXPECT_EQ(log.compare(verdict, passed.size(), passed), 0) << log.substr(verdict, 200);
  }
}

// `pipehook backfill` asks GET /users/me, then GET /recents per object with since_timestamp (UTC,
// whole seconds), items (one enum value), start and limit, as the spec describes them.
TEST_F(prism, backfill_requests_follow_the_spec) {
  auto c = test::test_config(dir);
  { test::running_daemon created(c); }  // the event log exists once serve has run
  const std::string cfg = dir.file("pipehook.toml");
  test::write_file(cfg, "[store]\npath = \"" + c.store.path + "\"\n[pipedrive]\napi_base = \"http://127.0.0.1:" + std::to_string(port) +
                            "\"\nmax_attempts = 1\n[backfill]\npage_size = 50\n");
  const std::map<std::string, std::string> env{{"PIPEDRIVE_API_TOKEN", "api-token"}};
  auto r = test::run_cli({"-c", cfg, "backfill", "--since", "2h", "--objects", "deal,person,activityType,user"}, env);
  EXPECT_EQ(r.exit_code, 0) << r.err << r.out;
  auto dry = test::run_cli({"-c", cfg, "backfill", "--since", "2026-11-30T10:00:00Z", "--dry-run"}, env);
  EXPECT_EQ(dry.exit_code, 0) << dry.err << dry.out;
  const std::string log = server->log();
  EXPECT_EQ(test::count_in(log, "get /recents"), 4u + 10u) << log;  // 4 objects, then the 10 /recents lists by default
  const std::string passed = "[VALIDATOR] \xE2\x9C\x94  success   The request passed the validation rules";
  EXPECT_EQ(test::count_in(log, passed), 2u + 4u + 10u) << log;  // users/me twice too
  EXPECT_TRUE(violations(log).empty()) << log;
}

TEST_F(prism, pipehook_requests_follow_the_official_openapi_spec) {
  prism_process& prism = *server;

  const std::string base = "http://127.0.0.1:" + std::to_string(port);  // Prism serves the spec's paths at its root
  const std::string webhooks =
      "[[registrar.webhooks]]\nevent_action = \"*\"\nevent_object = \"deal\"\n"
      "[[registrar.webhooks]]\nevent_action = \"change\"\nevent_object = \"person\"\n";
  const std::string cfg = dir.file("pipehook.toml");
  test::write_file(cfg, "[pipedrive]\napi_base = \"" + base + "\"\nmax_attempts = 1\n[registrar]\nsubscription_url = "
                        "\"https://hooks.example.com/webhooks/pipedrive\"\nuser_id = 1\n" + webhooks);
  const std::string oauth_cfg = dir.file("oauth.toml");
  test::write_file(oauth_cfg, "[pipedrive]\napi_base = \"" + base + "\"\noauth_token = \"oauth-token\"\nmax_attempts = 1\n");
  const std::map<std::string, std::string> env{{"PIPEDRIVE_API_TOKEN", "api-token"},
                                               {"PIPEHOOK_AUTH_PASSWORD", test::test_password}};

  struct step {
    std::vector<std::string> args;
    std::string expect;  // in stdout
  };
  const std::vector<step> steps = {
      {{"-c", cfg, "webhooks", "whoami"}, "company:"},
      {{"-c", oauth_cfg, "webhooks", "whoami"}, "company:"},
      {{"-c", cfg, "webhooks", "list"}, "Example webhook"},
      {{"-c", cfg, "webhooks", "list", "--format", "json"}, "\"id\":1"},
      {{"-c", cfg, "webhooks", "sync", "--dry-run"}, "create  *.deal v2.0"},
      {{"-c", cfg, "webhooks", "sync"}, "created webhook #1"},
      {{"-c", cfg, "webhooks", "sync", "--prune"}, "webhook(s) in place"},
      {{"-c", cfg, "webhooks", "delete", "1"}, "deleted webhook #1"},
  };
  for (const auto& s : steps) {
    std::string shown;
    for (const auto& a : s.args) shown += a + " ";
    SCOPED_TRACE(shown);
    auto r = test::run_cli(s.args, env);
    EXPECT_EQ(r.exit_code, 0) << r.err << r.out;
    EXPECT_NE(r.out.find(s.expect), std::string::npos) << r.out;
  }
  const std::string log = prism.log();
  const auto flagged = violations(log);
  EXPECT_TRUE(flagged.empty()) << "Prism flagged requests:\n" << log;
  for (const char* seen : {"get /users/me", "get /webhooks", "post /webhooks", "delete /webhooks/1"})
    EXPECT_NE(log.find(seen), std::string::npos) << seen << " never reached Prism";

  // The check itself: a request outside the spec is flagged.
  test::http_client raw(port);
  auto bad = raw.request("POST", "/webhooks", R"({"subscription_url":"https://h/x","event_action":"updated","event_object":"deal","name":"n"})",
                         {{"content-type", "application/json"}, {"x-api-token", "t"}});
  EXPECT_EQ(bad.status, 400u);
  EXPECT_EQ(violations(prism.log()).size(), flagged.size() + 2) << prism.log();  // Prism logs each violation twice
}


// Two `pipehook serve` replicas on one PostgreSQL log against Prism: only the replica holding the
// registrar's lock talks to Pipedrive (the standby sends nothing), and after it is killed the
// other's reconcile follows the spec too. Prism is stateless (every GET /webhooks answers the
// spec's example), so "created once" is the stateful fake's test (tests/replicas_test.cpp); here
// the point is who calls, and that every call is valid.
TEST_F(prism, replicas_register_from_one_replica_at_a_time_within_the_spec) {
  prism_process& prism = *server;
  config::config c = test::test_config(dir);
  test::use_backend(c, store::location::kind::postgres);
  auto config_for = [&](const std::string& id) {
    const std::string path = dir.file(id + ".toml");
    test::write_file(path, "[admin]\nlisten = \"127.0.0.1:0\"\n[server]\nlisten = \"127.0.0.1:0\"\nreplica_id = \"" + id +
                               "\"\n[auth]\npassword = \"" + test::test_password + "\"\n" + test::store_toml(c) +
                               "[pipedrive]\napi_base = \"http://127.0.0.1:" + std::to_string(port) +
                               "\"\napi_token = \"api-token\"\nmax_attempts = 1\nfields_refresh = 0\n[registrar]\nenabled = true\n"
                               "subscription_url = \"https://hooks.example.com/webhooks/pipedrive\"\nuser_id = 1\n"
                               "takeover_check = \"200ms\"\n[[registrar.webhooks]]\nevent_action = \"*\"\nevent_object = \"deal\"\n"
                               "[[registrar.webhooks]]\nevent_action = \"change\"\nevent_object = \"person\"\n");
    return path;
  };
  auto ok = [](unsigned short admin) { return test::metrics_show(admin, "pipehook_registrar_state{state=\"ok\"} 1"); };
  auto a = std::make_unique<test::daemon_process>(config_for("ra"), dir.file("a.log"));
  ASSERT_TRUE(test::wait_for([&] { return ok(a->admin_port()); }, std::chrono::seconds(30))) << test::read_file(dir.file("a.log"));
  test::daemon_process b(config_for("rb"), dir.file("b.log"));
  ASSERT_TRUE(test::wait_for([&] { return test::metrics_show(b.admin_port(), "pipehook_registrar_state{state=\"standby\"} 1"); },
                             std::chrono::seconds(30)));
  const std::string before = prism.log();
  EXPECT_EQ(test::count_in(before, "post /webhooks"), 2u) << before;  // the leader's two subscriptions, nobody else's
  const std::size_t lists = test::count_in(before, "get /webhooks");

  a->signal(SIGKILL);
  ASSERT_EQ(a->wait(std::chrono::seconds(10)), 128 + SIGKILL);
  a.reset();
  ASSERT_TRUE(test::wait_for([&] { return ok(b.admin_port()); }, std::chrono::seconds(30))) << test::read_file(dir.file("b.log"));
  const std::string after = prism.log();
  EXPECT_GT(test::count_in(after, "get /webhooks"), lists);  // the new leader reconciled
  EXPECT_TRUE(violations(after).empty()) << "Prism flagged requests:\n" << after;
}

}  // namespace
}  // namespace pipehook
