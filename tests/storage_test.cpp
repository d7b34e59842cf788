// Stored bodies on both backends: compressed, and always given back byte for byte; rows from a
// pipehook before compression readable and compacted in the background; a damaged body or a
// dictionary this build does not have is an error that names the event, never a crash; the
// storage figures of `events stats` and /api/v1/stats.
#include "pipehook/core/time.hpp"
#include "pipehook/pipedrive/parse.hpp"
#include "pipehook/store/compactor.hpp"
#include "pipehook/store/event_log.hpp"
#include "pipehook/store/outbox.hpp"
#include "pipehook/store/reader.hpp"
#include "pg_server.hpp"
#include "support.hpp"

#include <boost/json.hpp>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <fstream>
#include <future>
#include <random>

namespace pipehook {
namespace {

using namespace std::chrono_literals;

event::event event_with_body(const std::string& id, std::string body) {
  auto r = pipedrive::parse_webhook(test::v2_body(id), now_us());
  EXPECT_EQ(r.status, pipedrive::parse_status::event) << r.reason;
  r.ev.body = std::move(body);  // the store keeps any bytes: what it was given is what it gives back
  return r.ev;
}

using test::append_sync;

std::string random_bytes(std::size_t n, std::mt19937& rng) {
  std::string out(n, '\0');
  for (auto& c : out) c = static_cast<char>(rng() & 0xff);
  return out;
}

// Every body the tests compare: the samples (v2, as shipped and compact), v1 bodies, UTF-8, random
// bytes (they do not compress), a 1 MiB body of each kind, and the empty body.
std::vector<std::pair<std::string, std::string>> bodies() {
  std::vector<std::pair<std::string, std::string>> out;
  for (auto& [name, body] : test::samples()) {
    out.emplace_back(name, body);
    out.emplace_back(name + " compact", boost::json::serialize(boost::json::parse(body)));
  }
  for (const char* dir : {"/tests/data/samples-2026"})
    for (const auto& entry : std::filesystem::directory_iterator(std::string(PIPEHOOK_SOURCE_DIR) + dir))
      if (entry.path().extension() == ".json") {
        std::ifstream in(entry.path());
        out.emplace_back(entry.path().filename().string(), std::string(std::istreambuf_iterator<char>(in), {}));
      }
  out.emplace_back("v1 updated", test::v1("updated", "deal", "3", R"({"id":3,"value":9,"title":"Größe ✓"})",
                                          R"({"id":3,"value":8,"title":"Größe"})", "1714600000000000"));
  out.emplace_back("v1 deleted", test::v1("deleted", "person", "9", "null", R"({"id":9,"name":"Ann"})", "1714600000000001"));
  std::mt19937 rng(42);
  for (std::size_t n : {1u, 7u, 100u, 4096u, 65537u}) out.emplace_back("random " + std::to_string(n), random_bytes(n, rng));
  out.emplace_back("random 1 MiB", random_bytes(1 << 20, rng));
  std::string big = R"({"data":{"notes":[)";
  for (int i = 0; big.size() < (1u << 20) - 100; ++i) big += (i ? "," : "") + std::string(R"({"id":)") + std::to_string(i) + R"(,"text":"note"})";
  big += "]}}";
  out.emplace_back("json 1 MiB", big);
  out.emplace_back("empty", "");
  return out;
}

bool where_is_sqlite(const config::config& c) { return c.store.backend != config::store_backend::postgres; }

struct storage : test::backend_log {
  // Flips a byte in the middle of a stored frame: the frame still parses, its checksum fails.
  void damage(std::int64_t id) {
    const std::string n = std::to_string(id);
    if (where.is_postgres())
      outside("UPDATE events SET body_z = set_byte(body_z, length(body_z) / 2, get_byte(body_z, length(body_z) / 2) # 255) "
              "WHERE id = " + n);
    else
      outside("UPDATE events SET body = substr(body, 1, length(body) / 2) || "
              "CASE WHEN substr(body, length(body) / 2 + 1, 1) = x'00' THEN x'01' ELSE x'00' END || "
              "substr(body, length(body) / 2 + 2) WHERE id = " + n);
  }
};

TEST_P(storage, every_body_comes_back_byte_for_byte_and_compressed) {
  auto log = open_log();
  ASSERT_TRUE(log);
  const auto all = bodies();
  std::map<std::int64_t, std::string> stored;  // id -> body
  std::int64_t raw_json = 0;
  for (std::size_t i = 0; i < all.size(); ++i) {
    auto r = append_sync(*log, event_with_body("rt-" + std::to_string(i), all[i].second));
    ASSERT_TRUE(r) << all[i].first << ": " << r.error().message;
    ASSERT_EQ(r->status, store::append_status::stored) << all[i].first;
    stored[r->id] = all[i].second;
  }
  // A sample as Pipedrive sent it: its ids come back as sent (UUIDs are 16 bytes on SQLite).
  auto sample = pipedrive::parse_webhook(all[0].second, now_us());
  ASSERT_EQ(sample.status, pipedrive::parse_status::event);
  auto sample_row = append_sync(*log, sample.ev);
  ASSERT_TRUE(sample_row);
  stored[sample_row->id] = all[0].second;
  log->close();
  auto rd = reader();
  ASSERT_TRUE(rd);
  {
    auto se = rd->get(sample_row->id);
    ASSERT_TRUE(se) << se.error().message;
    const auto doc = boost::json::parse(all[0].second);
    EXPECT_EQ(se->ev.event_id, doc.at("meta").at("id").as_string().c_str());
    EXPECT_EQ(se->ev.correlation_id, doc.at("meta").at("correlation_id").as_string().c_str());
    EXPECT_EQ(se->ev.event_key, sample.ev.event_key);
    EXPECT_EQ(se->ev.source_action, se->ev.action);
    EXPECT_EQ(se->last_received_at_us, se->ev.received_at_us);
    if (!where.is_postgres()) {
      EXPECT_EQ(outside("SELECT typeof(event_id) || typeof(correlation_id) FROM events WHERE id = " + std::to_string(sample_row->id)),
                "blobblob");
    }
  }
  std::size_t k = 0;
  for (const auto& [id, body] : stored) {
    auto se = rd->get(id);
    ASSERT_TRUE(se) << all[k].first << ": " << se.error().message;
    EXPECT_TRUE(se->ev.body == body) << all[k].first << ": " << se->ev.body.size() << " bytes back, " << body.size() << " stored";
    ++k;
  }
  // The same through a page with bodies (the export's path).
  store::event_filter f;
  f.limit = 1000;
  f.ascending = true;
  auto page = rd->list(f, true);
  ASSERT_TRUE(page) << page.error().message;
  ASSERT_EQ(page->size(), stored.size());
  for (const auto& se : *page) EXPECT_TRUE(se.ev.body == stored[se.id]) << "event " << se.id;

  // Compressed on disk: the samples' bodies take well under half their size.
  const std::string sum = where.is_postgres()
                              ? outside("SELECT sum(octet_length(body_z)) FROM events WHERE id <= 16")
                              : outside("SELECT sum(length(body)) FROM events WHERE id <= 16");
  for (std::size_t i = 0; i < 16; ++i) raw_json += static_cast<std::int64_t>(all[i].second.size());
  EXPECT_LT(std::stoll(sum) * 2, raw_json) << "the samples' bodies are not compressed";
  EXPECT_EQ(outside("SELECT count(*) FROM events WHERE body_dict IS NULL"), "0");

  auto st = rd->storage(16);
  ASSERT_TRUE(st) << st.error().message;
  EXPECT_EQ(st->events, static_cast<std::int64_t>(stored.size()));
  EXPECT_GT(st->bytes_on_disk, 0);
  EXPECT_EQ(st->plain_events, 0);
  EXPECT_EQ(st->sampled, 16);
}

TEST_P(storage, the_outbox_hands_handlers_the_exact_body) {
  store::writer_options w;
  w.route = [](const event::event&, std::vector<store::route>& out) { out.push_back({"sink", false}); };
  auto log = test::open_log(where, w);
  ASSERT_TRUE(log) << log.error().message;
  const auto all = bodies();
  std::map<std::int64_t, std::string> stored;
  for (std::size_t i = 0; i < all.size(); i += 3) {
    auto r = append_sync(**log, event_with_body("ob-" + std::to_string(i), all[i].second));
    ASSERT_TRUE(r) << r.error().message;
    stored[r->id] = all[i].second;
  }
  auto ob = store::outbox::open(where);
  ASSERT_TRUE(ob) << ob.error().message;
  auto due = (*ob)->due("sink", now_us() + 1'000'000, 1000, false, {});
  ASSERT_TRUE(due) << due.error().message;
  ASSERT_EQ(due->size(), stored.size());
  for (const auto& d : *due) {
    EXPECT_TRUE(d.unreadable.empty()) << d.unreadable;
    EXPECT_TRUE(d.ev->ev.body == stored[d.ev->id]) << "event " << d.ev->id;
  }
}

TEST_P(storage, a_damaged_body_is_an_error_naming_its_event) {
  auto log = open_log();
  ASSERT_TRUE(log);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(append_sync(*log, event_with_body("d-" + std::to_string(i), test::v2_body("d"))));
  log->close();
  damage(2);
  auto rd = reader();
  ASSERT_TRUE(rd);
  auto bad = rd->get(2);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("event 2: its stored body cannot be read"), std::string::npos) << bad.error().message;
  EXPECT_TRUE(rd->get(1)) << "its neighbours stay readable";
  EXPECT_TRUE(rd->get(3));
  store::event_filter f;
  auto page = rd->list(f, true);
  ASSERT_FALSE(page);
  EXPECT_NE(page.error().message.find("event 2"), std::string::npos) << page.error().message;
  EXPECT_TRUE(rd->list(f, false)) << "a page without bodies does not read them";
  // The command line says the same and fails (exit 1), for the one event only.
  config::config c = test::test_config(dir);
  test::use_backend(c, GetParam());
  if (where.is_postgres()) c.store.url = where.url;
  else c.store.path = where.path;
  const std::string config_path = dir.file("show.toml");
  std::ofstream(config_path) << test::store_toml(c);
  auto show = test::run_cli({"--config", config_path, "events", "show", "2"});
  EXPECT_EQ(show.exit_code, 1);
  EXPECT_NE(show.err.find("event 2: its stored body cannot be read"), std::string::npos) << show.err;
  EXPECT_EQ(test::run_cli({"--config", config_path, "events", "show", "1"}).exit_code, 0);
  // Not a frame at all.
  outside(where.is_postgres() ? "UPDATE events SET body_z = '\\x0102'::bytea WHERE id = 3"
                              : "UPDATE events SET body = x'0102' WHERE id = 3");
  auto junk = rd->get(3);
  ASSERT_FALSE(junk);
  EXPECT_NE(junk.error().message.find("event 3: its stored body cannot be read: not a zstd frame"), std::string::npos)
      << junk.error().message;
}

TEST_P(storage, a_dictionary_this_build_lacks_or_that_disagrees_with_the_frame_is_named) {
  auto log = open_log();
  ASSERT_TRUE(log);
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(append_sync(*log, event_with_body("x-" + std::to_string(i), test::v2_body("x"))));
  log->close();
  EXPECT_EQ(outside("SELECT body_dict FROM events WHERE id = 1"), "1");  // the shipped dictionary
  outside("UPDATE events SET body_dict = 999 WHERE id = 1");
  outside("UPDATE events SET body_dict = 0 WHERE id = 2");
  auto rd = reader();
  ASSERT_TRUE(rd);
  auto newer = rd->get(1);
  ASSERT_FALSE(newer);
  EXPECT_NE(newer.error().message.find("event 1: its stored body cannot be read: it was compressed with dictionary 999, "
                                       "which this pipehook does not have"),
            std::string::npos)
      << newer.error().message;
  auto mismatch = rd->get(2);
  ASSERT_FALSE(mismatch);
  EXPECT_NE(mismatch.error().message.find("event 2: its stored body cannot be read: its row says dictionary 0 but the frame "
                                          "needs dictionary 1"),
            std::string::npos)
      << mismatch.error().message;
}

// A log written before compression: plain text bodies (and, on SQLite, hex text keys and schema
// version 5, made here from a current log the way version 5 had it).
void make_plain(const store::location& where, const std::map<std::int64_t, std::string>& bodies,
                const std::map<std::int64_t, std::string>& keys) {
  std::string sql = "BEGIN;";  // one transaction and one connection (on PostgreSQL one per row took 18 s)
  for (const auto& [id, body] : bodies) {
    std::string quoted = "'";
    for (char c : body) quoted += c == '\'' ? std::string("''") : std::string(1, c);
    quoted += "'";
    if (where.is_postgres())
      sql += "UPDATE events SET body = " + quoted + ", body_z = NULL, body_dict = NULL WHERE id = " + std::to_string(id) + ";";
    else
      sql += "UPDATE events SET body = " + quoted + ", body_dict = NULL, event_key = '" + keys.at(id) + "' WHERE id = " +
             std::to_string(id) + ";";
  }
  test::outside_sql(where, sql + "COMMIT;");
  if (!where.is_postgres()) {
    test::outside_sql(where, "DROP INDEX events_plain_body_idx");
    test::outside_sql(where, "ALTER TABLE events DROP COLUMN body_dict");
    test::outside_sql(where, "CREATE INDEX events_action_idx ON events(action, id)");
    test::outside_sql(where, "PRAGMA user_version = 5");
    EXPECT_EQ(test::outside_sql(where, "SELECT typeof(event_key) FROM events LIMIT 1"), "text");
  }
}

// `n` change events stored by this version, then turned into a log from before compression;
// their bodies and keys by row id.
void seed_plain_log(const store::location& where, int n, std::map<std::int64_t, std::string>& bodies_by_id,
                    std::map<std::int64_t, std::string>& keys) {
  {
    auto log = test::open_log(where);
    ASSERT_TRUE(log) << log.error().message;
    for (int i = 0; i < n; ++i) {
      const std::string body = test::v2("old-" + std::to_string(i), "deal", std::to_string(i % 50), "change",
                                        R"({"id":)" + std::to_string(i % 50) + R"(,"title":"Deal ')" + std::to_string(i) + R"(","value":)" +
                                            std::to_string(i * 10) + "}",
                                        R"({"value":)" + std::to_string(i) + "}");
      auto r = pipedrive::parse_webhook(body, now_us());
      ASSERT_EQ(r.status, pipedrive::parse_status::event);
      const std::string key = r.ev.event_key;
      auto a = append_sync(**log, r.ev);
      ASSERT_TRUE(a) << a.error().message;
      bodies_by_id[a->id] = body;
      keys[a->id] = key;
    }
  }
  make_plain(where, bodies_by_id, keys);
}

TEST_P(storage, a_log_from_before_compression_is_read_then_compacted_in_the_background) {
  std::map<std::int64_t, std::string> bodies_by_id, keys;
  seed_plain_log(where, 600, bodies_by_id, keys);

  // Readable as it is, with the same keys.
  {
    auto rd = reader();
    ASSERT_TRUE(rd);
    auto se = rd->get(7);
    ASSERT_TRUE(se) << se.error().message;
    EXPECT_EQ(se->ev.body, bodies_by_id[7]);
    EXPECT_EQ(se->ev.event_key, keys[7]);
  }
  // The writer of the new version: a retry of an event stored with a text key is a duplicate,
  // not a second row (the compactor has not run: it belongs to the daemon).
  {
    auto log = open_log();
    ASSERT_TRUE(log);
    auto r = pipedrive::parse_webhook(bodies_by_id[5], now_us());
    auto again = append_sync(*log, r.ev);
    ASSERT_TRUE(again) << again.error().message;
    EXPECT_EQ(again->status, store::append_status::duplicate);
    EXPECT_EQ(again->id, 5);
    auto rd = reader();
    auto st = rd->storage();
    ASSERT_TRUE(st);
    EXPECT_EQ(st->plain_events, 600);
  }

  // The daemon compacts them, newest first, while it ingests.
  config::config c = test::test_config(dir);
  test::use_backend(c, GetParam());
  if (where.is_postgres()) c.store.url = where.url;
  else c.store.path = where.path;
  test::running_daemon d(c);
  test::http_client client(d.port());
  ASSERT_EQ(client.post(test::v2_body("new-1"), test::basic_auth(test::test_user, test::test_password)).status, 200u);
  auto rd = reader();
  ASSERT_TRUE(rd);
  ASSERT_TRUE(test::wait_for([&] {
    auto st = rd->storage();
    return st && st->plain_events == 0;
  }, 30s)) << "the compactor left rows plain";
  // A retry of an old event after compaction: still a duplicate (its key is binary now).
  auto retry = client.post(bodies_by_id[9], test::basic_auth(test::test_user, test::test_password));
  EXPECT_EQ(retry.status, 200u);
  EXPECT_NE(retry.body.find("duplicate"), std::string::npos) << retry.body;
  d.stop_and_wait();

  EXPECT_EQ(*rd->count_events(), 601);
  for (const auto& [id, body] : bodies_by_id) {
    auto se = rd->get(id);
    ASSERT_TRUE(se) << se.error().message;
    ASSERT_EQ(se->ev.body, body) << "event " << id;
    ASSERT_EQ(se->ev.event_key, keys[id]) << "event " << id;
  }
  if (!where.is_postgres()) {
    EXPECT_EQ(outside("SELECT count(*) FROM events WHERE typeof(event_key) <> 'blob'"), "0");
    EXPECT_EQ(outside("PRAGMA user_version"), "6");
  }
  EXPECT_EQ(outside("SELECT count(*) FROM events WHERE body_dict IS NULL"), "0");
  EXPECT_EQ(outside("SELECT deliveries FROM events WHERE id = 9"), "2");
}

TEST_P(storage, stats_report_bytes_per_event_and_the_compression_ratio) {
  config::config c = test::test_config(dir);
  test::use_backend(c, GetParam());
  test::running_daemon d(c);
  test::http_client client(d.port());
  const auto samples = test::samples();
  int n = 0;
  for (int round = 0; round < 25; ++round)
    for (const auto& [name, body] : samples) {
      auto doc = boost::json::parse(body).as_object();
      doc["meta"].as_object()["id"] = "st-" + std::to_string(n++);
      ASSERT_EQ(client.post(boost::json::serialize(doc), test::basic_auth(test::test_user, test::test_password)).status, 200u);
    }
  test::http_client admin(d.admin_port());
  auto reply = admin.request("GET", "/api/v1/stats", {}, {});
  ASSERT_EQ(reply.status, 200u) << reply.body;
  auto storage = boost::json::parse(reply.body).at("storage").as_object();
  EXPECT_EQ(storage.at("events").as_int64(), n);
  EXPECT_GT(storage.at("bytes_on_disk").as_int64(), 0);
  EXPECT_GT(storage.at("bytes_per_event").as_int64(), 0);
  EXPECT_EQ(storage.at("sampled_events").as_int64(), n);
  const double ratio = storage.at("compression_ratio").as_double();
  EXPECT_GT(ratio, 0.05);
  EXPECT_LT(ratio, 0.4) << "the sample bodies compress with the shipped dictionary";
  EXPECT_EQ(storage.at("uncompressed_events").as_int64(), 0);
  // The write volume, in WAL pages (SQLite), for bytes-per-event work.
  const std::string metrics = admin.request("GET", "/metrics").body;
  const auto at = metrics.find("\npipehook_event_log_wal_frames_total ");
  ASSERT_NE(at, std::string::npos);
  const auto frames = std::stoll(metrics.substr(at + 37));
  if (where_is_sqlite(c)) EXPECT_GE(frames, n) << "each event's commit writes at least a page"; else EXPECT_EQ(frames, 0);

  const std::string config_path = dir.file("pipehook.toml");
  std::ofstream(config_path) << test::store_toml(c);
  auto cli = test::run_cli({"--config", config_path, "events", "stats"});
  EXPECT_EQ(cli.exit_code, 0) << cli.err;
  EXPECT_NE(cli.out.find("bytes per event"), std::string::npos) << cli.out;
  EXPECT_NE(cli.out.find("bodies: stored at 0."), std::string::npos) << cli.out;
  auto cli_json = test::run_cli({"--config", config_path, "events", "stats", "--format", "json"});
  ASSERT_EQ(cli_json.exit_code, 0) << cli_json.err;
  EXPECT_EQ(boost::json::parse(cli_json.out).at("storage").at("events").as_int64(), n);
  d.stop_and_wait();
}

INSTANTIATE_TEST_SUITE_P(backends, storage, test::backends(), test::backend_name);

// The writer defers compaction while its WAL is long, until a checkpoint has copied it all; a log
// that nothing else writes to must still get there (here: any WAL over 4 pages defers).
TEST(storage_sqlite, compaction_waits_for_checkpoints_and_finishes_on_an_idle_log) {
  test::temp_dir dir;
  const store::location where(dir.file("events.db"));
  std::map<std::int64_t, std::string> bodies_by_id, keys;
  seed_plain_log(where, 600, bodies_by_id, keys);
  store::sqlite_options o;
  o.path = where.path;
  o.wal_limit_pages = 4;
  auto log = store::open_sqlite_event_log(o);
  ASSERT_TRUE(log) << log.error().message;
  auto c = store::compactor::start(**log, where, 64);
  ASSERT_TRUE(c) << c.error().message;
  auto rd = store::reader::open(where);
  ASSERT_TRUE(rd);
  ASSERT_TRUE(test::wait_for([&] {
    auto st = (*rd)->storage(0);
    return st && st->plain_events == 0;
  }, 60s)) << (*c)->rows_compacted() << " rows compacted";
  EXPECT_EQ((*c)->rows_compacted(), 600);
  for (const auto& [id, body] : bodies_by_id) ASSERT_EQ((*rd)->get(id)->ev.body, body) << "event " << id;
}

// Under sustained writes the WAL stays near its bound: the checkpointer thread's passes never copy
// all of it while the writer keeps appending, so the writer finishes a checkpoint between batches
// and the WAL starts over. Before, it grew by every page ever written (1.5 GB in 14 s of wrk).
TEST(storage_sqlite, the_wal_stays_bounded_under_sustained_writes) {
  test::temp_dir dir;
  store::sqlite_options o;
  o.path = dir.file("events.db");
  o.wal_limit_pages = 256;  // 1 MB
  auto log = store::open_sqlite_event_log(o);
  ASSERT_TRUE(log) << log.error().message;
  std::mt19937 rng(7);
  const int total = 6000;
  std::atomic<int> done{0}, failed{0};
  std::uintmax_t largest = 0;
  const std::string wal = o.path + "-wal";
  for (int i = 0; i < total; ++i) {
    // Kept ahead of the writer, so that it always has the next batch waiting: sustained load.
    ASSERT_TRUE(test::wait_for([&] { return i - done.load() < 1000; }, 30s));
    (*log)->append(event_with_body("wal-" + std::to_string(i), random_bytes(3000, rng)), [&](store::append_result r) {
      if (!r) ++failed;
      ++done;
    });
    if (i % 100 == 0 && std::filesystem::exists(wal)) largest = std::max(largest, std::filesystem::file_size(wal));
  }
  ASSERT_TRUE(test::wait_for([&] { return done.load() == total; }, 60s));
  EXPECT_EQ(failed.load(), 0);
  // Every event wrote at least a page of 4 KB: 24 MB went through the WAL in all (without the
  // writer's checkpoints the file reached 27 MB; with them, 2.4 MB).
  EXPECT_GT(largest, 0u);
  EXPECT_LT(largest, 8u << 20) << "the WAL outgrew its 1 MB bound by far: it did not start over";
  (*log)->close();
}

}  // namespace
}  // namespace pipehook
