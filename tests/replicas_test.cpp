// Several `pipehook serve` processes on one PostgreSQL log, as users run them behind a load
// balancer: they share the outbox (claims with leases), keep per-entity order across replicas, and
// when one is killed the others finish its work; nothing acknowledged is lost or stored twice.
#include "fake_pipedrive.hpp"
#include "http_sink.hpp"
#include "pg_server.hpp"
#include "pipehook/store/outbox.hpp"
#include "pipehook/store/reader.hpp"
#include "support.hpp"

#include <boost/json/parse.hpp>
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <csignal>
#include <map>
#include <mutex>
#include <set>
#include <sstream>

namespace pipehook {
namespace {

using namespace std::chrono_literals;

const std::string good_auth = test::basic_auth(test::test_user, test::test_password);

// One database, a config file per replica.
struct replica_set {
  test::temp_dir dir;
  config::config c = test::test_config(dir);
  replica_set() { test::use_backend(c, store::location::kind::postgres); }

  // `handlers`: [[handlers]] tables; `lease`: store.claim_lease.
  std::string config_for(const std::string& id, const std::string& handlers, const std::string& lease = "5s") const {
    const std::string path = dir.file(id + ".toml");
    test::write_file(path, "[admin]\nlisten = \"127.0.0.1:0\"\n[server]\nlisten = \"127.0.0.1:0\"\nreplica_id = \"" + id +
                               "\"\nshutdown_timeout = \"2s\"\n[auth]\npassword = \"" + test::test_password + "\"\n" +
                               test::store_toml(c) + "claim_lease = \"" + lease + "\"\n" + handlers);
    return path;
  }
  store::location where() const { return test::location_of(c); }
};

std::string http_handler(unsigned short port, const std::string& extra = "") {
  return "[[handlers]]\nname = \"sink\"\ntype = \"http\"\ntimeout = \"60s\"\nurl = \"http://127.0.0.1:" + std::to_string(port) +
         "/\"\n" + extra;
}

// The downstream of the http handler: counts each event (by the payload's meta.id) and keeps, per
// entity, the order of the deliveries it accepted. `hold` keeps requests waiting until released.
class counting_sink {
 public:
  // `fail_first`: answers 503 to the first attempt of these events.
  explicit counting_sink(bool hold = false, std::set<std::string> fail_first = {})
      : held_(hold), fail_first_(std::move(fail_first)), server_([this](const test::recorded_request& r) { return answer(r); }) {}
  ~counting_sink() { release(); }

  unsigned short port() const { return server_.port(); }
  void release() {
    {
      std::lock_guard lk(mu_);
      held_ = false;
    }
    cv_.notify_all();
  }
  std::map<std::string, int> seen() const {
    std::lock_guard lk(mu_);
    return seen_;
  }
  std::size_t distinct() const {
    std::lock_guard lk(mu_);
    return seen_.size();
  }
  std::size_t requests() const { return server_.request_count(); }
  std::size_t waiting() const {
    std::lock_guard lk(mu_);
    return waiting_;
  }
  std::vector<std::string> arrival_order() const {
    std::lock_guard lk(mu_);
    return arrivals_;
  }
  std::map<std::string, std::vector<std::string>> accepted_by_entity() const {
    std::lock_guard lk(mu_);
    return accepted_;
  }

 private:
  test::canned_response answer(const test::recorded_request& r) {
    const auto meta = boost::json::parse(r.body).at("meta");
    const std::string id(meta.at("id").as_string());
    const std::string entity(meta.at("entity_id").as_string());
    std::unique_lock lk(mu_);
    const bool first = ++seen_[id] == 1;
    arrivals_.push_back(id);
    ++waiting_;
    cv_.wait_for(lk, 30s, [&] { return !held_; });
    --waiting_;
    if (first && fail_first_.count(id)) return {503, "{}", {}};
    accepted_[entity].push_back(id);
    return {200, "{}", {}};
  }

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool held_;
  std::set<std::string> fail_first_;
  std::map<std::string, int> seen_;
  std::vector<std::string> arrivals_;
  std::map<std::string, std::vector<std::string>> accepted_;
  std::size_t waiting_ = 0;
  test::http_test_server server_;  // last: its threads stop before the members they use go
};

// The value of one sample in a replica's /metrics (-1: not there).
double metric(unsigned short admin_port, const std::string& sample) {
  test::http_client admin(admin_port);
  const std::string text = admin.request("GET", "/metrics").body;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (line.rfind(sample + " ", 0) == 0) return std::stod(line.substr(sample.size() + 1));
  return -1;
}

const std::string looks = "pipehook_handler_outbox_looks_total{handler=\"sink\"}";
const std::string claimed = "pipehook_handler_claimed_total{handler=\"sink\"}";

std::int64_t pending_rows(const store::location& where) {
  auto ob = store::outbox::open(where);
  if (!ob) return -1;
  auto counts = (*ob)->counts();
  if (!counts) return -1;
  std::int64_t n = 0;
  for (const auto& c : *counts) n += c.pending + c.retrying;
  return n;
}


// Both replicas deliver (each the rows it stored, and whatever is left unclaimed), and while both
// live no event reaches the sink twice. /api/v1/replicas lists both with their heartbeats.
TEST(replicas, both_deliver_and_no_event_is_delivered_twice_while_both_live) {
  replica_set rs;
  counting_sink sink(/*hold=*/true);
  test::daemon_process a(rs.config_for("ra", http_handler(sink.port(), "concurrency = 4\n")), rs.dir.file("a.log"));
  test::daemon_process b(rs.config_for("rb", http_handler(sink.port(), "concurrency = 4\n")), rs.dir.file("b.log"));
  test::http_client to_a(a.port()), to_b(b.port());
  // The same event through both (Pipedrive's retry landing on the other replica): one row.
  auto stored = to_a.post(test::v2_body("twice"), good_auth);
  auto again = to_b.post(test::v2_body("twice", "deal", "42", 2), good_auth);
  EXPECT_NE(stored.body.find("\"stored\""), std::string::npos) << stored.body;
  EXPECT_NE(again.body.find("\"duplicate\""), std::string::npos) << again.body;
  constexpr int events = 500, first = 40;
  auto post = [&](int i) {
    return (i % 2 ? to_a : to_b).post(test::v2_body("share-" + std::to_string(i), "deal", std::to_string(i % 50)), good_auth).status;
  };
  for (int i = 0; i < first; ++i) ASSERT_EQ(post(i), 200u);
  // The sink holds the first deliveries while each replica looks at the outbox twice more (its
  // jittered poll): the other's queued rows are there to take, and neither may take them.
  const double looks_a = metric(a.admin_port(), looks), looks_b = metric(b.admin_port(), looks);
  ASSERT_TRUE(test::wait_for([&] { return metric(a.admin_port(), looks) >= looks_a + 2 && metric(b.admin_port(), looks) >= looks_b + 2; },
                             20s));
  EXPECT_EQ(sink.waiting(), 8u);  // concurrency 4 on each
  sink.release();
  for (int i = first; i < events; ++i) ASSERT_EQ(post(i), 200u);
  ASSERT_TRUE(test::wait_for([&] { return sink.distinct() == events + 1; }, 60s)) << sink.distinct() << " of " << events + 1;
  ASSERT_TRUE(test::wait_for([&] { return pending_rows(rs.where()) == 0; }, 30s));
  EXPECT_EQ(sink.requests(), static_cast<std::size_t>(events + 1)) << "an event was delivered twice while both replicas lived";
  auto rd = store::reader::open(rs.where());
  ASSERT_TRUE(rd);
  EXPECT_EQ(*(*rd)->count_events(), events + 1);
  const std::string done = "pipehook_handler_attempts_total{handler=\"sink\",result=\"done\"}";
  const double by_a = metric(a.admin_port(), done), by_b = metric(b.admin_port(), done);
  EXPECT_GT(by_a, 0);
  EXPECT_GT(by_b, 0);
  EXPECT_EQ(by_a + by_b, events + 1);
  EXPECT_EQ(metric(a.admin_port(), claimed), 0) << "a replica claimed rows the other held";
  EXPECT_EQ(metric(b.admin_port(), claimed), 0) << "a replica claimed rows the other held";

  test::http_client admin(a.admin_port());
  auto listed = admin.request("GET", "/api/v1/replicas");
  ASSERT_EQ(listed.status, 200u) << listed.body;
  const auto doc = boost::json::parse(listed.body);
  EXPECT_TRUE(doc.at("shared").as_bool());
  std::map<std::string, boost::json::object> by_id;
  for (const auto& r : doc.at("replicas").as_array()) by_id[std::string(r.at("id").as_string())] = r.as_object();
  ASSERT_EQ(by_id.size(), 2u) << listed.body;
  EXPECT_TRUE(by_id["ra"].at("live").as_bool());
  EXPECT_TRUE(by_id["rb"].at("live").as_bool());
  EXPECT_TRUE(by_id["ra"].at("self").as_bool());
  EXPECT_FALSE(by_id["rb"].at("self").as_bool());
  EXPECT_EQ(by_id["rb"].at("pid").as_int64(), b.pid());

  // A clean stop leaves the table: the other replica no longer lists it.
  b.signal(SIGTERM);
  EXPECT_EQ(b.wait(15s), 0);
  auto after = boost::json::parse(admin.request("GET", "/api/v1/replicas").body);
  ASSERT_EQ(after.at("replicas").as_array().size(), 1u);
  EXPECT_EQ(after.at("replicas").as_array()[0].at("id").as_string(), "ra");
}

// A replica killed mid-delivery: the rows it had claimed stay its own (the other replica leaves
// them) until their lease runs out, then the other delivers them. Only what the dead replica had in
// flight at the sink may arrive twice (at-least-once); nothing else does.
TEST(replicas, a_killed_replicas_claims_are_delivered_by_the_other_after_the_lease) {
  replica_set rs;
  counting_sink sink(/*hold=*/true);
  const std::string handler = http_handler(sink.port(), "concurrency = 2\n");
  const std::string b_config = rs.config_for("rb", handler, "2s");
  auto a = std::make_unique<test::daemon_process>(rs.config_for("ra", handler, "2s"), rs.dir.file("a.log"));
  test::daemon_process b(b_config, rs.dir.file("b.log"));
  test::http_client to_a(a->port());
  constexpr int events = 40;
  for (int i = 0; i < events; ++i) ASSERT_EQ(to_a.post(test::v2_body("kill-" + std::to_string(i)), good_auth).status, 200u);
  // A has two deliveries held at the sink and the rest claimed; B, polling, takes none of them.
  ASSERT_TRUE(test::wait_for([&] { return sink.waiting() == 2; }, 20s));
  const auto in_flight = sink.arrival_order();
  test::http_client admin_b(b.admin_port());
  ASSERT_TRUE(test::wait_for(
      [&] {
        auto doc = boost::json::parse(admin_b.request("GET", "/api/v1/handlers").body);
        const auto& claims = doc.at("handlers").as_array()[0].at("claims").as_object();
        return claims.contains("ra") && claims.at("ra").as_int64() == events;
      },
      10s));
  EXPECT_TRUE(test::wait_for([&] { return metric(b.admin_port(), "pipehook_handler_claims{handler=\"sink\",replica=\"ra\"}") == events; }, 5s));
  auto status = test::run_cli({"--config", b_config, "handlers", "status"});
  EXPECT_NE(status.out.find("ra=40"), std::string::npos) << status.out;
  // B keeps looking (its jittered poll) and leaves A's live claims alone.
  const double looks_b = metric(b.admin_port(), looks);
  ASSERT_TRUE(test::wait_for([&] { return metric(b.admin_port(), looks) >= looks_b + 2; }, 20s));
  EXPECT_EQ(metric(b.admin_port(), claimed), 0);
  EXPECT_EQ(sink.requests(), 2u) << "the other replica delivered rows that were claimed";

  a->signal(SIGKILL);
  ASSERT_EQ(a->wait(10s), 128 + SIGKILL);
  a.reset();
  sink.release();
  ASSERT_TRUE(test::wait_for([&] { return sink.distinct() == events; }, 30s)) << sink.distinct() << " of " << events;
  ASSERT_TRUE(test::wait_for([&] { return pending_rows(rs.where()) == 0; }, 30s));
  for (const auto& [id, n] : sink.seen()) {
    if (n == 1) continue;
    EXPECT_EQ(n, 2) << id;
    EXPECT_NE(std::find(in_flight.begin(), in_flight.end(), id), in_flight.end())
        << id << " was delivered twice but was not in flight when its replica died";
  }
  EXPECT_LE(sink.requests(), static_cast<std::size_t>(events + 2));
  const std::string log = test::read_file(rs.dir.file("b.log"));
  EXPECT_EQ(test::count_in(log, "from replica ra, whose claim expired"), static_cast<std::size_t>(events)) << log;
  EXPECT_EQ(metric(b.admin_port(), "pipehook_handler_taken_over_total{handler=\"sink\"}"), events);
}

// An ordered handler across two replicas: each entity's events reach the sink in the order they
// were acknowledged, though they came in through either replica and some failed once first.
TEST(replicas, an_ordered_handler_keeps_each_entitys_order_across_replicas) {
  replica_set rs;
  std::set<std::string> flaky;
  for (int i = 0; i < 60; i += 7) flaky.insert("ord-" + std::to_string(i));
  counting_sink sink(false, flaky);
  const std::string handler = http_handler(sink.port(), "concurrency = 4\nordered = true\nretry = { schedule = [\"200ms\"] }\n");
  test::daemon_process a(rs.config_for("ra", handler), rs.dir.file("a.log"));
  test::daemon_process b(rs.config_for("rb", handler), rs.dir.file("b.log"));
  test::http_client to_a(a.port()), to_b(b.port());
  std::map<std::string, std::vector<std::string>> sent;  // entity id -> event ids, in order
  for (int i = 0; i < 60; ++i) {
    const std::string id = "ord-" + std::to_string(i), entity = std::to_string(i % 5);
    // Alternating by pairs, so that an entity's consecutive events come in through both replicas.
    ASSERT_EQ(((i / 2) % 2 ? to_a : to_b).post(test::v2_body(id, "deal", entity), good_auth).status, 200u);
    sent[entity].push_back(id);
  }
  ASSERT_TRUE(test::wait_for([&] { return pending_rows(rs.where()) == 0; }, 60s));
  EXPECT_EQ(sink.accepted_by_entity(), sent);
  EXPECT_GT(metric(a.admin_port(), "pipehook_handler_attempts_total{handler=\"sink\",result=\"done\"}"), 0);
  EXPECT_GT(metric(b.admin_port(), "pipehook_handler_attempts_total{handler=\"sink\",result=\"done\"}"), 0);
}

// Kill -9 cycles under load across two replicas: clients post to both while one or the other is
// killed and started again. Every acknowledged event is in the log exactly once, and every one of
// them reaches the sink (what a dead replica had claimed, the other delivers).
TEST(replicas, kill_cycles_under_load_lose_nothing_acknowledged) {
  replica_set rs;
  counting_sink sink;
  const std::string handler = http_handler(sink.port(), "concurrency = 4\n");
  const std::string configs[2] = {rs.config_for("ra", handler, "2s"), rs.config_for("rb", handler, "2s")};
  std::unique_ptr<test::daemon_process> replica[2];
  std::atomic<unsigned short> ports[2];
  for (int r = 0; r < 2; ++r) {
    replica[r] = std::make_unique<test::daemon_process>(configs[r], rs.dir.file("r" + std::to_string(r) + "-0.log"));
    ports[r] = replica[r]->port();
  }
  std::mutex mu;
  std::set<std::string> acked;
  std::atomic<bool> stop{false};
  std::vector<std::thread> clients;
  for (int t = 0; t < 4; ++t)
    clients.emplace_back([&, t] {
      // Bounded: 3000 events per client at most, posted to replica t % 2 (a new connection when it
      // died; a refused connection waits for its restart).
      for (int i = 0; !stop && i < 3000;) {
        try {
          test::http_client c(ports[t % 2]);
          for (; !stop && i < 3000; ++i) {
            const std::string id = "cyc-" + std::to_string(t) + "-" + std::to_string(i);
            auto r = c.post(test::v2_body(id, "deal", std::to_string(i % 20)), good_auth);
            if (r.status == 200) {
              std::lock_guard lk(mu);
              acked.insert(id);
            }
          }
        } catch (const std::exception&) {
          ++i;  // the replica died under this request: its answer never came, so it counts as not acknowledged
          std::this_thread::sleep_for(20ms);
        }
      }
    });
  auto acked_count = [&] {
    std::lock_guard lk(mu);
    return acked.size();
  };
  for (int cycle = 1; cycle <= 4; ++cycle) {
    const std::size_t before = acked_count();
    ASSERT_TRUE(test::wait_for([&] { return acked_count() >= before + 150; }, 30s)) << "no load in cycle " << cycle;
    const int victim = cycle % 2;
    replica[victim]->signal(SIGKILL);
    ASSERT_EQ(replica[victim]->wait(10s), 128 + SIGKILL);
    replica[victim] = std::make_unique<test::daemon_process>(
        configs[victim], rs.dir.file("r" + std::to_string(victim) + "-" + std::to_string(cycle) + ".log"));
    ports[victim] = replica[victim]->port();
  }
  stop = true;
  for (auto& t : clients) t.join();
  ASSERT_GE(acked.size(), 600u);

  auto rd = store::reader::open(rs.where());
  ASSERT_TRUE(rd);
  store::event_filter all;
  all.limit = 1'000'000;
  std::map<std::string, int> in_log;
  for (const auto& e : *(*rd)->list(all, false)) ++in_log[e.ev.event_id];
  for (const auto& id : acked) ASSERT_EQ(in_log[id], 1) << id << " was acknowledged but is not in the log exactly once";
  // Every stored event reaches the sink, the killed replicas' claims included.
  ASSERT_TRUE(test::wait_for([&] { return pending_rows(rs.where()) == 0; }, 60s)) << pending_rows(rs.where()) << " rows pending";
  const auto seen = sink.seen();
  for (const auto& [id, n] : in_log) EXPECT_TRUE(seen.count(id)) << id << " was stored but never delivered";
}

// The registrar across replica processes: the one holding the advisory lock registers; killed
// with -9 (its lock goes with its connection), the standby takes over within takeover_check and
// reconciles what is there. No webhook is created twice at any point.
TEST(replicas, a_killed_registering_replica_is_replaced_and_no_webhook_is_created_twice) {
  test::fake_pipedrive fake("replica-token");
  replica_set rs;
  const std::string registrar = "[pipedrive]\napi_base = \"" + fake.base_url() + "\"\napi_token = \"replica-token\"\n" +
                                "[registrar]\nenabled = true\nsubscription_url = \"https://hooks.example.com/pd\"\n" +
                                "takeover_check = \"200ms\"\n" +
                                "[[registrar.webhooks]]\nevent_action = \"*\"\nevent_object = \"deal\"\n" +
                                "[[registrar.webhooks]]\nevent_action = \"change\"\nevent_object = \"person\"\n";
  auto a = std::make_unique<test::daemon_process>(rs.config_for("ra", registrar), rs.dir.file("a.log"));
  ASSERT_TRUE(test::wait_for([&] { return fake.webhooks().size() == 2; }, 15s));
  test::daemon_process b(rs.config_for("rb", registrar), rs.dir.file("b.log"));
  ASSERT_TRUE(test::wait_for([&] { return metric(b.admin_port(), "pipehook_registrar_state{state=\"standby\"}") == 1; }, 15s));
  EXPECT_EQ(metric(a->admin_port(), "pipehook_registrar_state{state=\"ok\"}"), 1);
  const std::size_t lists_before = fake.count("GET");

  a->signal(SIGKILL);
  ASSERT_EQ(a->wait(10s), 128 + SIGKILL);
  a.reset();
  ASSERT_TRUE(test::wait_for([&] { return metric(b.admin_port(), "pipehook_registrar_state{state=\"ok\"}") == 1; }, 15s))
      << test::read_file(rs.dir.file("b.log"));
  EXPECT_GT(fake.count("GET"), lists_before);  // it looked at what is there
  EXPECT_EQ(fake.count("POST"), 2u) << "a webhook was created twice";
  EXPECT_EQ(fake.webhooks().size(), 2u);
}

}  // namespace
}  // namespace pipehook
