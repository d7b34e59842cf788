// The event log on both backends (SQLite, and a real PostgreSQL): commits, duplicates,
// quarantine, queries, and what happens when the storage cannot take more (full, locked, queue
// full, closing).
#include "pipehook/core/time.hpp"
#include "pipehook/pipedrive/parse.hpp"
#include "pipehook/store/event_log.hpp"
#include "pipehook/store/reader.hpp"
#include "pg_server.hpp"
#include "support.hpp"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <future>
#include <random>
#include <thread>

namespace pipehook {
namespace {

event::event make_event(const std::string& id, const std::string& entity = "deal", const std::string& entity_id = "42",
                        int attempt = 1, const std::string& ts = "2024-05-01T10:00:00.123Z") {
  auto r = pipedrive::parse_webhook(test::v2_body(id, entity, entity_id, attempt, ts), now_us());
  EXPECT_EQ(r.status, pipedrive::parse_status::event) << r.reason;
  return r.ev;
}

using test::append_sync;

// Each test runs against both backends: a SQLite file in a temporary directory, and a fresh
// database on the test PostgreSQL.
struct store_backend : test::backend_log {};

// Another process holding a lock on a table of the log: SQLite's whole database (BEGIN
// EXCLUSIVE), or PostgreSQL's table (LOCK TABLE ... ACCESS EXCLUSIVE) until released.
class lock_holder {
 public:
  lock_holder(const store::location& where, const std::string& table) {
    if (where.is_postgres()) {
      pg_ = test::pg_server::shared().connect(where.url.substr(where.url.rfind('/') + 1));
      for (std::string sql : {std::string("BEGIN"), "LOCK TABLE " + table + " IN ACCESS EXCLUSIVE MODE"}) {
        PGresult* r = PQexec(pg_, sql.c_str());
        if (PQresultStatus(r) != PGRES_COMMAND_OK) why_ = PQresultErrorMessage(r);
        PQclear(r);
      }
    } else {
      sqlite3_open(where.path.c_str(), &db_);
      if (sqlite3_exec(db_, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr) != SQLITE_OK) why_ = sqlite3_errmsg(db_);
    }
    held_ = why_.empty();
  }
  ~lock_holder() { release(); }
  bool held() const { return held_; }
  const std::string& why() const { return why_; }
  void release() {
    if (pg_) PQclear(PQexec(pg_, "ROLLBACK")), PQfinish(pg_), pg_ = nullptr;
    if (db_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr), sqlite3_close(db_), db_ = nullptr;
  }

 private:
  PGconn* pg_ = nullptr;
  sqlite3* db_ = nullptr;
  bool held_ = false;
  std::string why_;
};


TEST_P(store_backend, stores_events_and_counts_duplicates_instead_of_adding_rows) {
  auto log = open_log();
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

  auto rd = store::reader::open(where);
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

TEST_P(store_backend, duplicates_within_one_batch_are_caught) {
  auto log = open_log();
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

TEST_P(store_backend, quarantine_keeps_the_body_and_reason) {
  auto log = open_log();
  std::promise<store::append_result> p;
  store::quarantined q{"no meta", "application/json", "127.0.0.1:1", R"({"x":1})", now_us()};
  log->append(std::move(q), [&p](store::append_result r) { p.set_value(std::move(r)); });
  auto r = p.get_future().get();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, store::append_status::quarantined);
  log->close();
  auto rd = store::reader::open(where);
  EXPECT_EQ(*(*rd)->count_quarantined(), 1);
  EXPECT_EQ(*(*rd)->count_events(), 0);
}

TEST_P(store_backend, list_filters_by_entity_action_id_company_time_and_pages) {
  auto log = open_log();
  for (int i = 0; i < 10; ++i) {
    const std::string ts = "2024-05-0" + std::to_string(1 + i % 3) + "T10:00:00Z";
    ASSERT_TRUE(append_sync(*log, make_event("d" + std::to_string(i), i % 2 ? "deal" : "person", std::to_string(i % 4), 1, ts)));
  }
  auto rd = std::move(*store::reader::open(where));
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

TEST_P(store_backend, reopening_keeps_data_and_a_newer_schema_is_refused) {
  {
    auto log = open_log();
    ASSERT_TRUE(append_sync(*log, make_event("keep")));
  }
  {
    auto log = open_log();
    EXPECT_EQ(append_sync(*log, make_event("keep"))->status, store::append_status::duplicate);
  }
  outside(postgres() ? "INSERT INTO pipehook_schema (version) VALUES (99)" : "PRAGMA user_version = 99");
  auto log = try_open();
  ASSERT_FALSE(log);
  EXPECT_NE(log.error().message.find("newer than this pipehook supports"), std::string::npos) << log.error().message;
  auto rd = store::reader::open(where);
  ASSERT_FALSE(rd);
  EXPECT_NE(rd.error().message.find("newer than this pipehook reads"), std::string::npos) << rd.error().message;
  // Nothing there yet: the reader says so, and names where it looked.
  const store::location empty = postgres() ? store::location::postgres(test::pg_server::shared().create_database(), test::pg_server::password)
                                           : store::location(dir.file("missing.db"));
  auto none = store::reader::open(empty);
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, make_error_code(errc::not_found)) << none.error().message;
}

// PostgreSQL: processes starting together take turns at the migrations (an advisory lock), and
// every one of them then works on the same schema.
TEST_P(store_backend, processes_migrating_at_once_take_turns) {
  if (!postgres()) GTEST_SKIP() << "one SQLite file has one writer";
  std::vector<std::thread> threads;
  std::vector<std::optional<outcome<std::unique_ptr<store::event_log>>>> logs(4);
  for (int i = 0; i < 4; ++i) threads.emplace_back([&, i] { logs[i].emplace(try_open()); });
  for (auto& t : threads) t.join();
  for (int i = 0; i < 4; ++i) {
    auto& log = *logs[i];
    ASSERT_TRUE(log) << log.error().message;
    auto r = append_sync(**log, make_event("racer-" + std::to_string(i)));
    ASSERT_TRUE(r) << r.error().message;
  }
  EXPECT_EQ(outside("SELECT count(*) FROM pipehook_schema"), "5");  // each of the 5 migrations once
  EXPECT_EQ(*reader()->count_events(), 4);
}

TEST_P(store_backend, a_full_disk_fails_the_batch_and_keeps_what_was_committed) {
  std::unique_ptr<test::small_disk> disk;
  std::unique_ptr<store::event_log> log;
  if (postgres()) {
    // The tables on a 2 MB tmpfs of their own (a tablespace): the server's disk fills for them.
    disk = std::make_unique<test::small_disk>(dir.file("space"), "2m", "postgres");
    if (!disk->mounted()) GTEST_SKIP() << "cannot mount a tmpfs here: " << disk->why();
    test::pg_server::shared().put_tables_on(where.url, disk->path());
    log = open_log();
  } else {
    store::sqlite_options o;
    o.path = where.path;
    o.max_page_count = 40;  // a tiny database: a full disk, for SQLite
    log = std::move(*store::open_sqlite_event_log(o));
  }
  std::vector<std::int64_t> committed;
  failure last;
  std::mt19937 rng(7);
  for (int i = 0; i < 4000; ++i) {
    auto ev = make_event("full-" + std::to_string(i));
    // Incompressible (PostgreSQL compresses long values), as real bodies mostly are not.
    for (int k = 0; k < 2000; ++k) ev.body += "0123456789abcdef"[rng() & 15];
    auto r = append_sync(*log, std::move(ev));
    if (!r) {
      last = r.error();
      break;
    }
    committed.push_back(r->id);
  }
  ASSERT_FALSE(committed.empty());
  EXPECT_LT(committed.size(), 4000u) << "the disk never filled";
  EXPECT_EQ(last.code, make_error_code(errc::store_full)) << last.message;
  // The writer survives: a probe reports the same condition, and nothing committed was lost.
  log->close();
  EXPECT_EQ(*reader()->count_events(), static_cast<std::int64_t>(committed.size()));
  if (postgres()) test::pg_server::shared().drop_database(where.url);  // before the tmpfs goes
}

TEST_P(store_backend, a_locked_database_is_reported_busy_and_the_queue_bounds_memory) {
  store::writer_options w;
  w.queue_capacity = 2;
  w.batch_max = 1;
  auto log = open_log(w, 200);
  ASSERT_TRUE(append_sync(*log, make_event("before")));

  // Another process holds a lock on the events table.
  lock_holder other(where, "events");
  ASSERT_TRUE(other.held()) << other.why();

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
  other.release();
  auto after = append_sync(*log, make_event("after"));
  ASSERT_TRUE(after) << after.error().message;
}

TEST_P(store_backend, close_commits_everything_already_queued) {
  auto log = open_log();
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
  auto rd = std::move(*store::reader::open(where));
  EXPECT_EQ(*rd->count_events(), 300);
}

INSTANTIATE_TEST_SUITE_P(backends, store_backend, test::backends(), test::backend_name);

}  // namespace
}  // namespace pipehook
