// `pipehook events copy`: a SQLite log moved into PostgreSQL keeps every event (ids, duplicate
// counts, bodies), its quarantine and its pending deliveries; the export is byte for byte the
// same; a second run copies nothing; a target holding other events is refused.
#include "pg_server.hpp"
#include "pipehook/store/outbox.hpp"
#include "pipehook/store/reader.hpp"
#include "support.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <future>

namespace pipehook {
namespace {

// Writes n events through the SQLite writer (every tenth one twice: a duplicate), routing every
// hundredth to handler "h" (pending deliveries), and three quarantined bodies.
void fill(const store::location& where, int n) {
  store::writer_options w;
  w.queue_capacity = static_cast<std::uint32_t>(2 * n + 10);
  w.batch_max = 2048;
  w.route = [](const event::event& e, std::vector<store::route>& out) {
    if (e.entity_id.size() > 1 && e.entity_id.substr(e.entity_id.size() - 2) == "00") out.push_back({"h", true});
  };
  auto log = test::open_log(where, w);
  ASSERT_TRUE(log) << log.error().message;
  std::atomic<int> left{n + n / 10 + 3};
  std::promise<void> all;
  auto done = [&](store::append_result r) {
    EXPECT_TRUE(r) << (r ? "" : r.error().message);
    if (--left == 0) all.set_value();
  };
  for (int i = 0; i < n; ++i) {
    event::event e;
    e.event_key = "copy-" + std::to_string(i);
    e.version = 2;
    e.entity = i % 3 ? "deal" : "person";
    e.action = e.source_action = i % 7 ? "change" : "create";
    e.entity_id = std::to_string(i);
    e.company_id = "777";
    e.user_id = std::to_string(i % 13);
    e.occurred_at_us = 1'714'521'600'000'000 + static_cast<std::int64_t>(i) * 1'000'000;
    e.received_at_us = e.occurred_at_us + 500'000;
    e.attempt = 1;
    e.body = test::v2_body(e.event_key, e.entity, e.entity_id);
    if (i % 10 == 0) {
      event::event again = e;
      again.attempt = 2;
      (*log)->append(std::move(e), done);
      (*log)->append(std::move(again), done);
    } else {
      (*log)->append(std::move(e), done);
    }
  }
  for (int q = 0; q < 3; ++q)
    (*log)->append(store::quarantined{"no meta", "application/json", "127.0.0.1:1", R"({"q":)" + std::to_string(q) + "}", 1'700'000'000'000'000 + q},
                   done);
  all.get_future().wait();
  (*log)->close();
}

TEST(events_copy, a_100k_sqlite_log_moves_to_postgres_with_an_identical_export) {
  test::temp_dir dir;
  config::config from = test::test_config(dir);
  config::config to = test::test_config(dir);
  test::use_backend(to, store::location::kind::postgres);
  const int n = 100'000;
  fill(test::location_of(from), n);
  test::write_file(dir.file("from.toml"), test::store_toml(from));
  test::write_file(dir.file("to.toml"), test::store_toml(to));

  auto copied = test::run_cli({"events", "copy", "--from", dir.file("from.toml"), "--to", dir.file("to.toml")});
  ASSERT_EQ(copied.exit_code, 0) << copied.err;
  EXPECT_NE(copied.out.find("copied " + std::to_string(n) + " event(s)"), std::string::npos) << copied.out;
  EXPECT_NE(copied.out.find("3 quarantined"), std::string::npos) << copied.out;
  EXPECT_NE(copied.err.find("of " + std::to_string(n) + " looked at"), std::string::npos) << "no progress line: " << copied.err;

  auto a = test::run_cli({"--config", dir.file("from.toml"), "events", "export"});
  auto b = test::run_cli({"--config", dir.file("to.toml"), "events", "export"});
  ASSERT_EQ(a.exit_code, 0) << a.err;
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EXPECT_EQ(std::count(a.out.begin(), a.out.end(), '\n'), n);
  const bool same = a.out == b.out;
  EXPECT_TRUE(same) << "the exports differ from byte " << std::mismatch(a.out.begin(), a.out.end(), b.out.begin(), b.out.end()).first - a.out.begin();

  // Quarantine and the deliveries still owed came along; the target's next ids follow the copied ones.
  auto src = store::outbox::open(test::location_of(from));
  auto dst = store::outbox::open(test::location_of(to));
  ASSERT_TRUE(src && dst);
  auto sc = (*src)->counts(), dc = (*dst)->counts();
  ASSERT_TRUE(sc && dc);
  ASSERT_EQ(dc->size(), 1u);
  EXPECT_EQ((*dc)[0].pending, (*sc)[0].pending);
  EXPECT_EQ((*dc)[0].pending, n / 100 - 1);  // entity ids 100, 200, ... (not 0)
  auto rd = store::reader::open(test::location_of(to));
  ASSERT_TRUE(rd);
  EXPECT_EQ(*(*rd)->count_quarantined(), 3);
  EXPECT_EQ((*(*rd)->quarantined(2)).body, R"({"q":1})");
  {
    auto log = test::open_log(test::location_of(to));
    ASSERT_TRUE(log);
    std::promise<store::append_result> p;
    event::event e;
    e.event_key = "after-the-copy";
    e.entity = "deal";
    e.action = e.source_action = "create";
    e.body = "{}";
    (*log)->append(std::move(e), [&](store::append_result r) { p.set_value(std::move(r)); });
    auto r = p.get_future().get();
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->id, n + 1);
  }

  // Again: nothing new (idempotent by event key), and it says so.
  auto again = test::run_cli({"events", "copy", "--from", dir.file("from.toml"), "--to", dir.file("to.toml")});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_NE(again.out.find("copied 0 event(s)"), std::string::npos) << again.out;
}

TEST(events_copy, a_target_with_other_events_under_the_same_ids_is_refused_and_bad_flags_are_usage_errors) {
  test::temp_dir dir;
  config::config from = test::test_config(dir);
  config::config to = test::test_config(dir);
  test::use_backend(to, store::location::kind::postgres);
  fill(test::location_of(from), 20);
  {
    // The target's own events, written by a daemon before: ids 1..3 with other keys.
    store::writer_options w;
    auto log = test::open_log(test::location_of(to), w);
    ASSERT_TRUE(log);
    for (int i = 0; i < 3; ++i) {
      std::promise<void> p;
      event::event e;
      e.event_key = "other-" + std::to_string(i);
      e.entity = "deal";
      e.action = e.source_action = "create";
      e.body = "{}";
      (*log)->append(std::move(e), [&](store::append_result) { p.set_value(); });
      p.get_future().wait();
    }
  }
  test::write_file(dir.file("from.toml"), test::store_toml(from));
  test::write_file(dir.file("to.toml"), test::store_toml(to));
  auto r = test::run_cli({"events", "copy", "--from", dir.file("from.toml"), "--to", dir.file("to.toml")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("already holds a different event under an id"), std::string::npos) << r.err;

  auto to_sqlite = test::run_cli({"events", "copy", "--from", dir.file("to.toml"), "--to", dir.file("from.toml")});
  EXPECT_EQ(to_sqlite.exit_code, 2);
  EXPECT_NE(to_sqlite.err.find("store.backend = \"postgres\""), std::string::npos) << to_sqlite.err;
  auto bad_batch = test::run_cli({"events", "copy", "--from", dir.file("from.toml"), "--to", dir.file("to.toml"), "--batch", "0"});
  EXPECT_EQ(bad_batch.exit_code, 2);
  EXPECT_NE(bad_batch.err.find("--batch"), std::string::npos) << bad_batch.err;
}

}  // namespace
}  // namespace pipehook
