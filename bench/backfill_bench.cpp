// Backfill throughput against the stateful fake Pipedrive, with its baseline in the same run:
//   backfill:  `pipehook backfill` recovers BENCH_RECORDS (20000) changed deals through GET /recents
//              (pages of 500), stored through the writer and the outbox like any event;
//   baseline:  the same number of events as v2 webhooks POSTed to `pipehook serve` over
//              BENCH_CONNECTIONS (16) keep-alive connections (how Pipedrive's deliveries arrive).
// Prints events per second of each, their ratio, and the API calls and tokens per 1,000 recovered
// events. Loopback only; bounded by BENCH_RECORDS. Built by bench/backfill.sh.
#include "../tests/fake_pipedrive.hpp"
#include "../tests/support.hpp"

#include "pipehook/core/time.hpp"
#include "pipehook/pipedrive/backfill.hpp"

#include <boost/json.hpp>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <thread>

using namespace pipehook;

namespace {

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v ? std::atoi(v) : fallback;
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

int main() {
  const int records = env_int("BENCH_RECORDS", 20'000), connections = env_int("BENCH_CONNECTIONS", 16);
  const std::string token = "bench-token";
  test::fake_pipedrive fake(token);
  const std::int64_t now = now_us();
  for (int id = 1; id <= records; ++id) {
    // Changed within the last hour, a few per second; a realistic deal's size (~1 KB).
    const std::string t = pipedrive::recents_timestamp(now - (3'600'000'000LL * id / records));
    std::string data = R"({"id":)" + std::to_string(id) + R"(,"title":"Deal )" + std::to_string(id) +
                       R"(","value":1000,"currency":"EUR","add_time":"2026-01-01 00:00:00","update_time":")" + t +
                       R"(","stage_id":2,"status":"open","user_id":{"id":1,"name":"Owner"},"notes":")" + std::string(800, 'x') + R"("})";
    fake.put_record("deal", id, data);
  }

  // Backfill, through the CLI.
  test::temp_dir dir;
  auto c = test::test_config(dir);
  { test::running_daemon created(c); }
  const std::string cfg = dir.file("bench.toml");
  test::write_file(cfg, "[store]\npath = \"" + c.store.path + "\"\n[pipedrive]\napi_base = \"" + fake.base_url() +
                            "\"\n[backfill]\npage_size = 500\nmax_calls = 100000\n");
  const auto began = std::chrono::steady_clock::now();
  auto r = test::run_cli({"-c", cfg, "backfill", "--since", "2h", "--objects", "deal"}, {{"PIPEDRIVE_API_TOKEN", token}});
  const double backfill_s = seconds_since(began);
  if (r.exit_code != 0) {
    std::fprintf(stderr, "backfill failed: %s\n", r.err.c_str());
    return 1;
  }
  const auto run = boost::json::parse(r.out).as_object();
  const std::int64_t stored = run.at("events_stored").as_int64(), calls = run.at("api_calls").as_int64(),
                     tokens = run.at("token_cost").as_int64();

  // Baseline: the same number of events as webhooks.
  test::temp_dir dir2;
  auto c2 = test::test_config(dir2);
  test::running_daemon d(c2);
  std::atomic<int> next{0}, failed{0};
  const std::string auth = test::basic_auth(test::test_user, test::test_password);
  const auto began2 = std::chrono::steady_clock::now();
  std::vector<std::thread> clients;
  for (int i = 0; i < connections; ++i)
    clients.emplace_back([&] {
      test::http_client client(d.port());
      for (int n; (n = next++) < records;) {
        const std::string id = std::to_string(n + 1);
        auto reply = client.post(test::v2("bench-" + id, "deal", id, "change",
                                          R"({"id":)" + id + R"(,"title":"Deal","notes":")" + std::string(800, 'x') + R"("})",
                                          R"({"stage_id":1})"),
                                 auth);
        if (reply.status != 200) ++failed;
      }
    });
  for (auto& t : clients) t.join();
  const double webhooks_s = seconds_since(began2);
  d.stop_and_wait();

  const double backfill_rate = static_cast<double>(stored) / backfill_s, webhook_rate = records / webhooks_s;
  std::printf("backfill: %lld events recovered in %.2f s = %.0f events/s; %.1f API calls and %.0f tokens per 1,000 events (%lld calls, %lld tokens)\n",
              static_cast<long long>(stored), backfill_s, backfill_rate, 1000.0 * static_cast<double>(calls) / static_cast<double>(stored),
              1000.0 * static_cast<double>(tokens) / static_cast<double>(stored), static_cast<long long>(calls),
              static_cast<long long>(tokens));
  std::printf("baseline: %d webhooks over %d connections in %.2f s = %.0f events/s (%d refused)\n", records, connections, webhooks_s,
              webhook_rate, failed.load());
  std::printf("ratio backfill / webhooks: %.2f\n", backfill_rate / webhook_rate);
  return stored == records && failed == 0 ? 0 : 1;
}
