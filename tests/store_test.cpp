// The SQLite event log: commits, duplicates, quarantine, queries, and what happens when the
// storage cannot take more (full, locked, queue full, closing).
#include "pipehook/core/time.hpp"
#include "pipehook/pipedrive/parse.hpp"
#include "pipehook/store/event_log.hpp"
#include "pipehook/store/reader.hpp"
#include "support.hpp"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <future>

namespace pipehook {
namespace {

event::event make_event(const std::string& id, const std::string& entity = "deal", const std::string& entity_id = "42",
                        int attempt = 1, const std::string& ts = "2024-05-01T10:00:00.123Z") {
  auto r = pipedrive::parse_webhook(test::v2_body(id, entity, entity_id, attempt, ts), now_us());
  EXPECT_EQ(r.status, pipedrive::parse_status::event) << r.reason;
  return r.ev;
}

store::append_result append_sync(store::event_log& log, event::event ev) {
  std::promise<store::append_result> p;
  auto f = p.get_future();
  log.append(std::move(ev), [&p](store::append_result r) { p.set_value(std::move(r)); });
  return f.get();
}

std::unique_ptr<store::event_log> open_log(const test::temp_dir& dir, store::sqlite_options o = {}) {
  if (o.path.empty()) o.path = dir.file("events.db");
  auto log = store::open_sqlite_event_log(o);
  EXPECT_TRUE(log) << (log ? "" : log.error().message);
  return std::move(*log);
}

TEST(store, stores_events_and_counts_duplicates_instead_of_adding_rows) {
  test::temp_dir dir;
  auto log = open_log(dir);
  auto a = append_sync(*log, make_event("a"));
  ASSERT_TRUE(a);
  EXPECT_EQ(a->status, store::append_status::stored);
  auto b = append_sync(*log, make_event("b"));
  ASSERT_TRUE(b);
  EXPECT_NE(a->id, b->id);
  auto again = append_sync(*log, make_event("a", "deal", "42", 3));
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, store::append_status::duplicate);
  EXPECT_EQ(again->id, a->id);
  log->close();

  auto rd = store::reader::open(dir.file("events.db"));
  ASSERT_TRUE(rd);
  EXPECT_EQ(*(*rd)->count_events(), 2);
  auto got = (*rd)->get(a->id);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->deliveries, 2);
  EXPECT_EQ(got->last_attempt, 3);
  EXPECT_EQ(got->ev.attempt, 1);
  EXPECT_EQ(got->ev.body, test::v2_body("a"));
  EXPECT_FALSE((*rd)->get(9999));
}

TEST(store, duplicates_within_one_batch_are_caught) {
  test::temp_dir dir;
  auto log = open_log(dir);
  std::vector<std::future<store::append_result>> results;
  std::vector<std::promise<store::append_result>> promises(20);
  for (int i = 0; i < 20; ++i) {
    results.push_back(promises[i].get_future());
    log->append(make_event("same"), [&promises, i](store::append_result r) { promises[i].set_value(std::move(r)); });
  }
  int stored = 0, dup = 0;
  for (auto& f : results) {
    auto r = f.get();
    ASSERT_TRUE(r);
    (r->status == store::append_status::stored ? stored : dup)++;
  }
  EXPECT_EQ(stored, 1);
  EXPECT_EQ(dup, 19);
}

TEST(store, quarantine_keeps_the_body_and_reason) {
  test::temp_dir dir;
  auto log = open_log(dir);
  std::promise<store::append_result> p;
  store::quarantined q{"no meta", "application/json", "127.0.0.1:1", R"({"x":1})", now_us()};
  log->append(std::move(q), [&p](store::append_result r) { p.set_value(std::move(r)); });
  auto r = p.get_future().get();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, store::append_status::quarantined);
  log->close();
  auto rd = store::reader::open(dir.file("events.db"));
  EXPECT_EQ(*(*rd)->count_quarantined(), 1);
  EXPECT_EQ(*(*rd)->count_events(), 0);
}

TEST(store, list_filters_by_entity_action_id_company_time_and_pages) {
  test::temp_dir dir;
  auto log = open_log(dir);
  for (int i = 0; i < 10; ++i) {
    const std::string ts = "2024-05-0" + std::to_string(1 + i % 3) + "T10:00:00Z";
    ASSERT_TRUE(append_sync(*log, make_event("d" + std::to_string(i), i % 2 ? "deal" : "person", std::to_string(i % 4), 1, ts)));
  }
  auto rd = std::move(*store::reader::open(dir.file("events.db")));
  auto count = [&](store::event_filter f) { return rd->list(f, false)->size(); };
  store::event_filter f;
  EXPECT_EQ(count(f), 10u);
  f.entity = "deal";
  EXPECT_EQ(count(f), 5u);
  f.entity_id = "1";
  EXPECT_EQ(count(f), 3u);  // i = 1, 5, 9
  f = {};
  f.action = "create";
  EXPECT_EQ(count(f), 10u);
  f.action = "delete";
  EXPECT_EQ(count(f), 0u);
  f = {};
  f.company_id = "777";
  EXPECT_EQ(count(f), 10u);
  f.company_id = "778";
  EXPECT_EQ(count(f), 0u);
  f = {};
  f.since_us = *parse_iso8601_us("2024-05-02");
  f.until_us = *parse_iso8601_us("2024-05-03");
  EXPECT_EQ(count(f), 3u);  // i = 1, 4, 7
  f = {};
  f.limit = 4;
  auto page1 = *rd->list(f, false);
  ASSERT_EQ(page1.size(), 4u);
  EXPECT_GT(page1.front().id, page1.back().id) << "newest first";
  f.before_id = page1.back().id;
  auto page2 = *rd->list(f, true);
  ASSERT_EQ(page2.size(), 4u);
  EXPECT_LT(page2.front().id, page1.back().id);
  EXPECT_FALSE(page2.front().ev.body.empty());
}

TEST(store, reopening_keeps_data_and_a_newer_schema_is_refused) {
  test::temp_dir dir;
  {
    auto log = open_log(dir);
    ASSERT_TRUE(append_sync(*log, make_event("keep")));
  }
  {
    auto log = open_log(dir);
    EXPECT_EQ(append_sync(*log, make_event("keep"))->status, store::append_status::duplicate);
  }
  sqlite3* db = nullptr;
  sqlite3_open(dir.file("events.db").c_str(), &db);
  sqlite3_exec(db, "PRAGMA user_version = 99", nullptr, nullptr, nullptr);
  sqlite3_close(db);
  store::sqlite_options o;
  o.path = dir.file("events.db");
  auto log = store::open_sqlite_event_log(o);
  ASSERT_FALSE(log);
  EXPECT_NE(log.error().message.find("newer than this pipehook supports"), std::string::npos);
  auto rd = store::reader::open(dir.file("events.db"));
  ASSERT_FALSE(rd);
  EXPECT_FALSE(store::reader::open(dir.file("missing.db")));
}

TEST(store, a_full_disk_fails_the_batch_and_keeps_what_was_committed) {
  test::temp_dir dir;
  store::sqlite_options o;
  o.max_page_count = 40;  // a tiny database: a full disk, for SQLite
  auto log = open_log(dir, o);
  std::vector<std::int64_t> committed;
  failure last;
  for (int i = 0; i < 400; ++i) {
    auto ev = make_event("full-" + std::to_string(i));
    ev.body += std::string(2000, ' ');
    auto r = append_sync(*log, std::move(ev));
    if (!r) {
      last = r.error();
      break;
    }
    committed.push_back(r->id);
  }
  ASSERT_FALSE(committed.empty());
  EXPECT_LT(committed.size(), 400u) << "the page limit was never hit";
  EXPECT_EQ(last.code, make_error_code(errc::store_full)) << last.message;
  // The writer survives: a probe reports the same condition, and nothing committed was lost.
  log->close();
  auto rd = std::move(*store::reader::open(dir.file("events.db")));
  EXPECT_EQ(*rd->count_events(), static_cast<std::int64_t>(committed.size()));
}

TEST(store, a_locked_database_is_reported_busy_and_the_queue_bounds_memory) {
  test::temp_dir dir;
  store::sqlite_options o;
  o.busy_timeout_ms = 200;
  o.queue_capacity = 2;
  o.batch_max = 1;
  auto log = open_log(dir, o);
  ASSERT_TRUE(append_sync(*log, make_event("before")));

  sqlite3* other = nullptr;
  sqlite3_open(dir.file("events.db").c_str(), &other);
  ASSERT_EQ(sqlite3_exec(other, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr), SQLITE_OK);

  // The writer blocks on the lock: the first record waits, two more fill the queue, the rest are refused.
  std::vector<std::promise<store::append_result>> promises(6);
  for (int i = 0; i < 6; ++i)
    log->append(make_event("locked-" + std::to_string(i)), [&promises, i](store::append_result r) { promises[i].set_value(std::move(r)); });
  int busy = 0, queue_full = 0;
  for (auto& p : promises) {
    auto r = p.get_future().get();
    ASSERT_FALSE(r) << "nothing can commit while another process holds the lock";
    if (r.error().code == make_error_code(errc::store_busy)) ++busy;
    if (r.error().code == make_error_code(errc::queue_full)) ++queue_full;
  }
  EXPECT_GE(busy, 1);
  EXPECT_GE(queue_full, 1);
  sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(other);
  auto after = append_sync(*log, make_event("after"));
  ASSERT_TRUE(after) << after.error().message;
}

TEST(store, close_commits_everything_already_queued) {
  test::temp_dir dir;
  auto log = open_log(dir);
  std::atomic<int> ok{0};
  for (int i = 0; i < 300; ++i)
    log->append(make_event("q" + std::to_string(i)), [&ok](store::append_result r) { ok += r ? 1 : 0; });
  log->close();
  EXPECT_EQ(ok.load(), 300);
  std::promise<store::append_result> late;
  log->append(make_event("late"), [&late](store::append_result r) { late.set_value(std::move(r)); });
  auto r = late.get_future().get();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, make_error_code(errc::store_closed));
  auto rd = std::move(*store::reader::open(dir.file("events.db")));
  EXPECT_EQ(*rd->count_events(), 300);
}

}  // namespace
}  // namespace pipehook
