// GET /metrics on the admin listener: parsed by the official Prometheus Python client's parser
// (a real parser, strict about the format), and its counters move as webhooks and deliveries happen.
#include "http_sink.hpp"
#include "support.hpp"

#include <boost/json/parse.hpp>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <csignal>
#include <filesystem>

namespace pipehook {
namespace {

using namespace std::chrono_literals;

// name{labels} -> value, as tests/metrics_parse.py reads the text.
std::map<std::string, double> scrape(test::http_client& admin, const test::temp_dir& dir, const std::string& token) {
  auto r = admin.request("GET", "/metrics", {}, {{"Authorization", "Bearer " + token}});
  EXPECT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(r.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8");
  test::write_file(dir.file("metrics.txt"), r.body);
  const int pid = test::spawn_process("/usr/bin/python3",
                                      {std::string(PIPEHOOK_SOURCE_DIR) + "/tests/metrics_parse.py", dir.file("metrics.txt")},
                                      {}, dir.file("parsed.json"), dir.file("parse.err"));
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << test::read_file(dir.file("parse.err")) << "\n" << r.body;
  std::map<std::string, double> out;
  boost::system::error_code ec;
  auto v = boost::json::parse(test::read_file(dir.file("parsed.json")), ec);
  if (ec || !v.is_object()) return out;
  for (const auto& [k, val] : v.as_object()) out[std::string(k)] = val.to_number<double>();
  return out;
}

TEST(metrics, parse_as_prometheus_text_and_move_with_requests_commits_and_deliveries) {
  if (::system("/usr/bin/python3 -c 'import prometheus_client' 2>/dev/null") != 0) {
    if (std::getenv("CI")) FAIL() << "python3-prometheus-client is missing (scripts/install-deps.sh)";
    GTEST_SKIP() << "python3-prometheus-client is missing: run scripts/install-deps.sh";
  }
  test::http_test_server sink([](const test::recorded_request&) { return test::canned_response{200, "{}", {}}; });
  test::temp_dir dir;
  config::config c = test::test_config(dir);
  c.admin.token = "metrics-token";
  c.handlers.push_back(test::http_sink_handler("sink", sink.port()));
  c.store.retention_max_bytes = 64LL * 1024 * 1024;
  test::running_daemon d(c);
  test::http_client ingest(d.port()), admin(d.admin_port());

  EXPECT_EQ(admin.request("GET", "/metrics").status, 401u);  // the token rules cover /metrics too
  auto before = scrape(admin, dir, "metrics-token");
  EXPECT_EQ(before["pipehook_build_info{version=\"" PIPEHOOK_VERSION "\"}"], 1);
  EXPECT_EQ(before["pipehook_registrar_state{state=\"disabled\"}"], 1);
  EXPECT_EQ(before["pipehook_ingest_duration_seconds_count"], 0);

  const std::string auth = test::basic_auth(test::test_user, test::test_password);
  for (int i = 0; i < 7; ++i) ASSERT_EQ(ingest.post(test::v2_body("m" + std::to_string(i)), auth).status, 200u);
  ASSERT_EQ(ingest.post(test::v2_body("m0"), auth).status, 200u);                      // a duplicate
  ASSERT_EQ(ingest.post(R"({"x":1})", auth).status, 202u);                             // quarantined
  ASSERT_EQ(ingest.post("{}", test::basic_auth("no", "body")).status, 401u);
  ASSERT_EQ(ingest.request("GET", "/healthz").status, 200u);
  ASSERT_EQ(ingest.request("GET", "/wp-login.php").status, 404u);
  ASSERT_TRUE(test::wait_for([&] { return sink.request_count() == 7; }, 10s));

  std::map<std::string, double> after;
  ASSERT_TRUE(test::wait_for(
      [&] {
        after = scrape(admin, dir, "metrics-token");
        // Counters are recorded just after each answer is written: wait until the last ones landed.
        return after["pipehook_handler_attempts_total{handler=\"sink\",result=\"done\"}"] == 7 &&
               after["pipehook_http_requests_total{route=\"other\",status=\"404\"}"] == 1 &&
               after["pipehook_ingest_duration_seconds_count"] == 10;
      },
      10s));
  EXPECT_EQ(after["pipehook_http_requests_total{route=\"webhook\",status=\"200\"}"], 8);
  EXPECT_EQ(after["pipehook_http_requests_total{route=\"webhook\",status=\"202\"}"], 1);
  EXPECT_EQ(after["pipehook_http_requests_total{route=\"webhook\",status=\"401\"}"], 1);
  EXPECT_EQ(after["pipehook_http_requests_total{route=\"healthz\",status=\"200\"}"], 1);
  EXPECT_EQ(after["pipehook_http_requests_total{route=\"other\",status=\"404\"}"], 1);  // never the raw path
  EXPECT_EQ(after["pipehook_duplicates_total"], 1);
  EXPECT_EQ(after["pipehook_quarantined_total"], 1);
  EXPECT_EQ(after["pipehook_webhook_outcomes_total{outcome=\"stored\"}"], 7);
  EXPECT_EQ(after["pipehook_ingest_duration_seconds_count"], 10);  // the webhook route's answered requests
  EXPECT_EQ(after["pipehook_ingest_duration_seconds_bucket{le=\"+Inf\"}"], 10);
  EXPECT_GE(after["pipehook_commit_batch_records_count"], 1);
  EXPECT_GE(after["pipehook_commit_batch_records_sum"], 9);  // events, the quarantined body, verdicts
  EXPECT_GE(after["pipehook_commit_duration_seconds_count"], 1);
  EXPECT_EQ(after["pipehook_handler_delivery_duration_seconds_count{handler=\"sink\"}"], 7);
  EXPECT_EQ(after["pipehook_handler_deliveries{handler=\"sink\",state=\"dead\"}"], 0);
  EXPECT_EQ(after["pipehook_write_queue_depth"], 0);
  // The event log's size against its budget (config/prometheus/: PipehookEventLogNearBudget).
  EXPECT_GT(after["pipehook_event_log_bytes"], 0);
  EXPECT_LT(after["pipehook_event_log_bytes"], 64.0 * 1024 * 1024);
  EXPECT_EQ(after["pipehook_event_log_budget_bytes"], 64.0 * 1024 * 1024);
  d.stop_and_wait();
}

}  // namespace
}  // namespace pipehook
