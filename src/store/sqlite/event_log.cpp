// The SQLite event log: one writer thread, a bounded queue, group commit.
#include "pipehook/core/time.hpp"
#include "pipehook/store/event_log.hpp"
#include "../queued_event_log.hpp"
#include "sqlite.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <mutex>
#include <pthread.h>
#include <thread>
#include <variant>
#include <vector>

namespace pipehook::store {
namespace {

using detail::statement;
using detail::probe_request;
using detail::purge_request;
using detail::reparse_request;
using detail::write_item;

class sqlite_event_log final : public detail::queued_event_log {
 public:
  sqlite_event_log(detail::db_handle db, detail::db_handle checkpoint_db, const sqlite_options& o,
                   statement insert_event, statement insert_quarantine, statement probe, statement begin,
                   statement commit, statement rollback, statement insert_delivery, statement update_delivery,
                   statement delete_quarantined, statement repeat_plain, statement compact, statement any_plain, bool plain_rows)
      : queued_event_log(o),
        delete_quarantined_(std::move(delete_quarantined)),
        plain_rows_(plain_rows),
        repeat_plain_(std::move(repeat_plain)),
        compact_(std::move(compact)),
        any_plain_(std::move(any_plain)),
        insert_delivery_(std::move(insert_delivery)),
        update_delivery_(std::move(update_delivery)),
        db_(std::move(db)),
        checkpoint_db_(std::move(checkpoint_db)),
        insert_event_(std::move(insert_event)),
        insert_quarantine_(std::move(insert_quarantine)),
        probe_(std::move(probe)),
        begin_(std::move(begin)),
        commit_(std::move(commit)),
        rollback_(std::move(rollback)) {
    wal_limit_pages_ = o.wal_limit_pages;
    sqlite3_wal_hook(db_.db, &sqlite_event_log::wal_hook, this);
    checkpointer_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "ph-checkpoint");
      checkpoint_loop();
    });
    start("ph-writer");
  }

  ~sqlite_event_log() override { close(); }

  // After each commit: the WAL's length in frames. It only grows, until a checkpoint lets the next
  // commit start it over (then the whole length is this commit's).
  static int wal_hook(void* self_ptr, sqlite3*, const char*, int frames) {
    auto* self = static_cast<sqlite_event_log*>(self_ptr);
    const auto now = static_cast<std::uint64_t>(frames);
    if (now < self->wal_frames_) self->copied_frames_ = 0;  // started over: what was copied is gone
    if (self->opts_.on_wal_frames) self->opts_.on_wal_frames(now >= self->wal_frames_ ? now - self->wal_frames_ : now);
    self->wal_frames_ = now;
    return SQLITE_OK;
  }

 private:
  void after_close() override {
    {
      std::lock_guard lk(checkpoint_mu_);
      checkpoint_stop_ = true;
    }
    checkpoint_cv_.notify_all();
    if (checkpointer_.joinable()) checkpointer_.join();
    // A last full checkpoint so the WAL does not outgrow the database between runs.
    sqlite3_wal_checkpoint_v2(checkpoint_db_.db, nullptr, SQLITE_CHECKPOINT_TRUNCATE, nullptr, nullptr);
  }

  // WAL checkpoints copy committed pages into the database file and fsync it. SQLite would run
  // them inside a commit on the writer (every 1000 pages), stalling every ack in that batch; here
  // a PASSIVE checkpoint runs on its own connection after commits, never blocking the writer.
  void checkpoint_loop() {
    std::uint64_t done = 0;
    for (;;) {
      {
        std::unique_lock lk(checkpoint_mu_);
        checkpoint_cv_.wait_for(lk, std::chrono::seconds(1), [&] { return checkpoint_stop_ || hurry_ || commits_ >= done + 64; });
        if (checkpoint_stop_) return;
        if (commits_ == done && !hurry_) continue;
        hurry_ = false;
        done = commits_;
      }
      checkpoint_pass(checkpoint_db_.db);
    }
  }

  // A PASSIVE checkpoint on `db` (the checkpointer's connection or the writer's), noting how far it
  // got: SQLITE_BUSY while the other one runs a pass.
  void checkpoint_pass(sqlite3* db) {
    int log = -1, copied = -1;
    if (sqlite3_wal_checkpoint_v2(db, nullptr, SQLITE_CHECKPOINT_PASSIVE, &log, &copied) != SQLITE_OK || log < 0 || copied < 0)
      return;
    copied_frames_ = static_cast<std::uint64_t>(copied);
  }

  // One transaction for the whole batch; every record's callback runs after COMMIT returned.
  void commit_batch(std::vector<write_item>& batch) override {
    std::vector<appended> results(batch.size());
    touched_deliveries_ = false;
    fresh_.clear();
    outcome<void> status = step_done(begin_, "begin transaction");
    for (std::size_t i = 0; status && i < batch.size(); ++i) {
      packed_ = &batch[i].packed;
      status = std::visit([&](auto& rec) { return write(rec, results[i]); }, batch[i].record);
    }
    const auto commit_start = std::chrono::steady_clock::now();
    if (status) status = step_done(commit_, "commit");
    if (status && opts_.on_commit)
      opts_.on_commit(batch.size(), std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - commit_start));
    if (status) {
      std::lock_guard lk(checkpoint_mu_);
      ++commits_;
      // Past the bound, passes back to back, until what they leave is the writer's to copy (below).
      if (wal_frames_ > wal_limit_pages_ && !writer_finishes()) hurry_ = true;
    }
    checkpoint_cv_.notify_one();
    if (!status) {
      if (!sqlite3_get_autocommit(db_.db)) (void)step_done(rollback_, "rollback");
      for (auto& it : batch) it.done(status.error());
      return;
    }
    for (std::size_t i = 0; i < batch.size(); ++i) batch[i].done(results[i]);
    if (touched_deliveries_ && opts_.on_deliveries) opts_.on_deliveries(std::move(fresh_));
    if (wal_frames_ > wal_limit_pages_ && writer_finishes()) checkpoint_pass(db_.db);
  }

  // The WAL starts over (its next commit writes from its start, into blocks the file already has)
  // only once a checkpoint has copied all of it. The checkpointer thread's passes never get there
  // under sustained load: the writer appends while they copy, so the WAL grew without bound (1.5 GB
  // in 14 s of wrk), and every append went to new blocks that the kernel allocates and zeroes. So
  // once the WAL is past its bound, the checkpointer runs its passes back to back (each leaves less:
  // copying is faster than appending), and when what the last one left is under an eighth of the
  // bound, the writer copies that itself between batches (this batch is acknowledged): a short
  // stall, after which the next commit starts the WAL over. Should the passes not get there (an
  // fsync takes as long as the appends it lets in), the writer copies the rest at twice the bound.
  // A reader still using older frames limits the copy; the WAL then starts over on a later attempt.
  bool writer_finishes() const {
    return wal_frames_ <= copied_frames_.load() + wal_limit_pages_ / 8 || wal_frames_ > 2 * wal_limit_pages_;
  }

  outcome<void> step_done(const statement& st, std::string_view what) {
    const int rc = st.step();
    st.reset();
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) return detail::sqlite_failure(db_.db, rc, what);
    return {};
  }

  // Steps an INSERT ... RETURNING: `read` takes the returned row; the statement is reset either way.
  template <class Read>
  outcome<void> step_returning(const statement& st, std::string_view what, Read read) {
    const int rc = st.step();
    if (rc == SQLITE_ROW) read(st);
    st.reset();
    if (rc != SQLITE_ROW) return detail::sqlite_failure(db_.db, rc, what);
    return {};
  }

  outcome<void> write(event::event& e, appended& out) {
    if (plain_rows_) {
      // Rows from before compression keep hex text keys until the compactor converts them: a
      // repeat of one of those events counts there (Pipedrive retries for minutes after an upgrade).
      const statement& st = repeat_plain_;
      st.bind_text(1, e.event_key);
      st.bind_int(2, e.attempt);
      st.bind_int(3, e.received_at_us);
      const int rc = st.step();
      if (rc == SQLITE_ROW) {
        out.id = st.column_int(0);
        out.status = append_status::duplicate;
      }
      st.reset();
      if (rc == SQLITE_ROW) return {};
      if (rc != SQLITE_DONE) return detail::sqlite_failure(db_.db, rc, "insert event");
    }
    const statement& st = insert_event_;
    detail::bind_key(st, 1, e.event_key);
    st.bind_int(2, e.version);
    st.bind_text(3, e.entity);
    st.bind_text(4, e.action);
    st.bind_text(5, e.source_action == e.action ? std::string_view("", 0) : std::string_view(e.source_action));  // '': the action
    st.bind_text_or_null(6, e.entity_id);
    st.bind_text_or_null(7, e.company_id);
    st.bind_text_or_null(8, e.user_id);
    st.bind_text_or_null(9, e.webhook_id);
    detail::bind_uuid_or_null(st, 10, e.event_id);
    detail::bind_uuid_or_null(st, 11, e.correlation_id);
    st.bind_text_or_null(12, e.change_source);
    st.bind_text_or_null(13, e.type);
    st.bind_text_or_null(14, e.host);
    st.bind_text_or_null(15, e.merged_to_id);
    st.bind_text_or_null(16, e.merged_from_id);
    st.bind_int(17, e.occurred_at_us);
    st.bind_int(18, e.received_at_us);
    st.bind_int(19, e.attempt);
    st.bind_int(20, e.is_bulk ? 1 : 0);
    st.bind_blob(21, packed_->bytes);
    st.bind_int(22, packed_->dict);
    auto inserted = step_returning(st, "insert event", [&out](const statement& row) {
      out.id = row.column_int(0);
      out.status = row.column_int(1) == 1 ? append_status::stored : append_status::duplicate;  // deliveries
    });
    if (!inserted || out.status != append_status::stored || !opts_.route) return inserted;
    // The outbox: one row per matching handler, in this same transaction.
    routes_.clear();
    opts_.route(e, routes_);
    const std::int64_t now = now_us();
    fresh_deliveries fresh;
    for (const auto& r : routes_) {
      const statement& d = insert_delivery_;
      d.bind_text(1, r.handler);
      d.bind_int(2, out.id);
      d.bind_int(3, now);
      const std::string key = r.ordered ? order_key_of(e) : std::string();  // bound by reference: outlives step()
      if (r.ordered) d.bind_text(4, key);
      else d.bind_null(4);
      std::int64_t delivery_id = 0;
      const int rc = d.step();
      if (rc == SQLITE_ROW) delivery_id = d.column_int(0);
      d.reset();
      if (rc != SQLITE_ROW && rc != SQLITE_DONE) return detail::sqlite_failure(db_.db, rc, "queue delivery");
      touched_deliveries_ = true;
      if (delivery_id && !r.ordered) fresh.rows.emplace_back(r.handler, delivery_id);  // ordered: read in order
    }
    if (!fresh.rows.empty()) {
      // The event is not needed here any more: it moves to the dispatcher (after the commit).
      auto se = std::make_shared<event::stored_event>();
      se->id = out.id;
      se->ev = std::move(e);
      se->last_attempt = se->ev.attempt;
      se->last_received_at_us = se->ev.received_at_us;
      fresh.created_at_us = now;
      fresh.ev = std::move(se);
      fresh_.push_back(std::move(fresh));
    }
    return inserted;
  }

  outcome<void> write(const std::vector<delivery_update>& updates, appended& out) {
    out.status = append_status::updated;
    const std::int64_t now = now_us();
    for (const auto& u : updates) {
      const statement& st = update_delivery_;
      st.bind_int(1, u.id);
      st.bind_text(2, to_string(u.state));
      st.bind_int(3, u.attempts);
      st.bind_int(4, u.due_at_us);
      st.bind_text_or_null(5, u.last_error);
      st.bind_int(6, now);
      if (auto done = step_done(st, "update delivery"); !done) return done;
    }
    touched_deliveries_ = touched_deliveries_ || !updates.empty();
    return {};
  }

  outcome<void> write(const quarantined& q, appended& out) {
    const statement& st = insert_quarantine_;
    st.bind_int(1, q.received_at_us);
    st.bind_text(2, q.reason);
    st.bind_text_or_null(3, q.content_type);
    st.bind_text_or_null(4, q.remote);
    st.bind_text(5, q.body);
    out.status = append_status::quarantined;
    return step_returning(st, "insert quarantine", [&out](const statement& row) { out.id = row.column_int(0); });
  }

  outcome<void> write(reparse_request& r, appended& out) {
    auto stored = write(r.ev, out);
    if (!stored) return stored;
    delete_quarantined_.bind_int(1, r.quarantine_id);
    return step_done(delete_quarantined_, "delete quarantined");
  }

  outcome<void> write(const purge_request& p, appended& out) {
    out.status = append_status::purged;
    auto deleted = detail::purge_batch(db_.db, p.before_us, p.limit);
    if (!deleted) return deleted.error();
    out.id = *deleted;
    return {};
  }

  outcome<void> write(const std::vector<compacted_body>& rows, appended& out) {
    out.status = append_status::compacted;
    out.id = 0;
    // Every rewritten row goes through the WAL, which starts over only once a checkpoint has
    // copied all of it while no reader held it: compaction running flat out would outpace the
    // checkpoints and grow the WAL by the size of the whole log. So it is deferred while the WAL
    // is long, unless a checkpoint has copied all of it (the next write then starts it over; the
    // checkpointer runs after the commits that deferrals make, idle or not). Deferred means
    // nothing rewritten, which the compactor takes as "later": never a failure, which would fail
    // the events committed in the same batch.
    if (wal_frames_ > wal_limit_pages_ && copied_frames_.load() < wal_frames_) return {};
    for (const auto& r : rows) {
      const statement& st = compact_;
      st.bind_int(1, r.id);
      if (r.key_binary) st.bind_blob(2, r.key);
      else st.bind_text(2, r.key);
      st.bind_blob(3, r.body);
      st.bind_int(4, r.body_dict);
      const int rc = st.step();
      st.reset();
      if (rc != SQLITE_DONE) return detail::sqlite_failure(db_.db, rc, "compact event " + std::to_string(r.id));
      out.id += sqlite3_changes(db_.db);
    }
    // Once none is left, inserts stop looking for their key among them.
    const int rc = any_plain_.step();
    const bool left = rc == SQLITE_ROW;
    any_plain_.reset();
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return detail::sqlite_failure(db_.db, rc, "count plain bodies");
    plain_rows_ = left;
    return {};
  }

  outcome<void> write(const probe_request& p, appended& out) {
    probe_.bind_int(1, now_us());
    out.status = append_status::probed;
    if (auto r = step_done(probe_, "readiness probe"); !r) return r;
    // The room row: rewritten whole (its pages go to the WAL at commit like an event's would), or
    // dropped once no room is asked for.
    const std::string room = p.room > 0 ? "INSERT OR REPLACE INTO meta (key, value) VALUES ('probe_room', zeroblob(" +
                                              std::to_string(p.room) + "))"
                                        : "DELETE FROM meta WHERE key = 'probe_room'";
    return detail::exec(db_.db, room);
  }

  statement delete_quarantined_;
  const detail::packed_body* packed_ = nullptr;  // writer thread only: the current item's body as stored
  bool plain_rows_ = false;  // writer thread only: rows from before compression are left
  std::uint64_t wal_frames_ = 0;  // writer thread only: the WAL's length after the last commit
  std::atomic<std::uint64_t> copied_frames_{0};  // of the WAL since it started over: what the last checkpoint copied
  std::uint64_t wal_limit_pages_ = 0;
  statement repeat_plain_, compact_, any_plain_;
  std::vector<route> routes_;        // writer thread only
  std::vector<fresh_deliveries> fresh_;  // writer thread only: this batch's new deliveries
  bool touched_deliveries_ = false;  // writer thread only
  statement insert_delivery_, update_delivery_;
  detail::db_handle db_;
  detail::db_handle checkpoint_db_;
  statement insert_event_, insert_quarantine_, probe_, begin_, commit_, rollback_;

  std::mutex checkpoint_mu_;
  std::condition_variable checkpoint_cv_;
  bool checkpoint_stop_ = false;
  bool hurry_ = false;  // under checkpoint_mu_: the WAL is past its bound, run a pass now
  std::uint64_t commits_ = 0;
  std::thread checkpointer_;
};

// A repeat of an event_key counts a delivery instead of adding a row; RETURNING tells which.
// Bytes saved per row: source_action is '' when it is the action, last_received_at 0 until a
// repeat (read back as received_at: columns.hpp), event_id and correlation_id UUIDs 16 bytes.
constexpr std::string_view insert_event_sql = R"sql(
INSERT INTO events (event_key, version, entity, action, source_action, entity_id, company_id, user_id,
                    webhook_id, event_id, correlation_id, change_source, type, host, merged_to_id,
                    merged_from_id, occurred_at, received_at, attempt, is_bulk, body, body_dict,
                    last_attempt, last_received_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?19, 0)
ON CONFLICT (event_key) DO UPDATE SET
  deliveries = deliveries + 1,
  last_attempt = max(last_attempt, excluded.attempt),
  last_received_at = excluded.received_at
RETURNING id, deliveries)sql";

constexpr std::string_view insert_quarantine_sql =
    "INSERT INTO quarantine (received_at, reason, content_type, remote, body) VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id";

constexpr std::string_view insert_delivery_sql = R"sql(
INSERT INTO deliveries (handler, event_id, state, attempts, due_at, created_at, updated_at, order_key)
VALUES (?1, ?2, 'pending', 0, ?3, ?3, ?3, ?4)
ON CONFLICT (handler, event_id) DO NOTHING
RETURNING id)sql";

constexpr std::string_view update_delivery_sql =
    "UPDATE deliveries SET state = ?2, attempts = ?3, due_at = ?4, updated_at = ?6, "
    "last_error = coalesce(?5, last_error), last_error_at = CASE WHEN ?5 IS NULL THEN last_error_at ELSE ?6 END "
    "WHERE id = ?1";

// A repeat of an event stored before compression, under its hex text key (see write(event)).
constexpr std::string_view repeat_plain_sql = R"sql(
UPDATE events SET deliveries = deliveries + 1, last_attempt = max(last_attempt, ?2), last_received_at = ?3
WHERE event_key = ?1 RETURNING id)sql";

// Compaction: only a row still plain (a purge may have come first). Its key stays text if the
// binary key is taken (which the insert's look at plain keys prevents; the row must not stay plain).
constexpr std::string_view compact_sql = R"sql(
UPDATE events SET event_key = CASE WHEN EXISTS (SELECT 1 FROM events k WHERE k.event_key = ?2) THEN event_key ELSE ?2 END,
                  body = ?3, body_dict = ?4
WHERE id = ?1 AND body_dict IS NULL)sql";

constexpr std::string_view any_plain_sql = "SELECT 1 FROM events WHERE body_dict IS NULL LIMIT 1";

constexpr std::string_view probe_sql = "INSERT OR REPLACE INTO meta (key, value) VALUES ('last_probe_us', ?1)";

}  // namespace

outcome<std::unique_ptr<event_log>> open_sqlite_event_log(const sqlite_options& o) {
  std::error_code fs_ec;
  const std::filesystem::path path(o.path);
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path(), fs_ec);
  if (fs_ec) return make_failure(errc::store_io, "cannot create directory " + path.parent_path().string() + ": " + fs_ec.message());

  auto opened = detail::open_connection(o.path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, o.busy_timeout_ms);
  if (!opened) return opened.error();
  detail::db_handle db = std::move(*opened);
  const char* sync_pragma = o.synchronous_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL";

  // WAL: readers (CLI, admin API) never block the writer, and a commit is one append + fsync.
  auto wal = statement::prepare(db.db, "PRAGMA journal_mode=WAL");
  if (!wal) return wal.error();
  if (wal->step() != SQLITE_ROW || wal->column_text(0) != "wal")
    return make_failure(errc::store_io, "cannot switch " + o.path + " to WAL mode (is it on a network filesystem?)");
  wal = {};
  if (auto r = detail::exec(db.db, sync_pragma); !r) return r.error();
  // Checkpoints run on their own connection (checkpoint_loop), not inside commits.
  if (auto r = detail::exec(db.db, "PRAGMA wal_autocheckpoint=0"); !r) return r.error();
  if (o.max_page_count > 0)
    if (auto r = detail::exec(db.db, "PRAGMA max_page_count=" + std::to_string(o.max_page_count)); !r) return r.error();
  if (auto r = detail::migrate(db.db); !r) {
    failure f = r.error();
    f.message = o.path + ": " + f.message;
    return f;
  }

  auto checkpoint_opened = detail::open_connection(o.path, SQLITE_OPEN_READWRITE, o.busy_timeout_ms);
  if (!checkpoint_opened) return checkpoint_opened.error();
  detail::db_handle checkpoint_db = std::move(*checkpoint_opened);
  if (auto r = detail::exec(checkpoint_db.db, sync_pragma); !r) return r.error();

  auto insert_event = statement::prepare(db.db, insert_event_sql);
  auto insert_quarantine = statement::prepare(db.db, insert_quarantine_sql);
  auto probe = statement::prepare(db.db, probe_sql);
  auto begin = statement::prepare(db.db, "BEGIN IMMEDIATE");
  auto commit = statement::prepare(db.db, "COMMIT");
  auto rollback = statement::prepare(db.db, "ROLLBACK");
  auto insert_delivery = statement::prepare(db.db, insert_delivery_sql);
  auto update_delivery = statement::prepare(db.db, update_delivery_sql);
  auto delete_quarantined = statement::prepare(db.db, "DELETE FROM quarantine WHERE id = ?1");
  auto repeat_plain = statement::prepare(db.db, repeat_plain_sql);
  auto compact = statement::prepare(db.db, compact_sql);
  auto any_plain = statement::prepare(db.db, any_plain_sql);
  for (auto* st : {&insert_event, &insert_quarantine, &probe, &begin, &commit, &rollback, &insert_delivery, &update_delivery,
                   &delete_quarantined, &repeat_plain, &compact, &any_plain})
    if (!*st) return st->error();
  const int plain = any_plain->step();
  any_plain->reset();
  if (plain != SQLITE_ROW && plain != SQLITE_DONE) return detail::sqlite_failure(db.db, plain, "count plain bodies");
  return std::unique_ptr<event_log>(new sqlite_event_log(std::move(db), std::move(checkpoint_db), o, std::move(*insert_event),
                                                         std::move(*insert_quarantine), std::move(*probe),
                                                         std::move(*begin), std::move(*commit), std::move(*rollback),
                                                         std::move(*insert_delivery), std::move(*update_delivery),
                                                         std::move(*delete_quarantined), std::move(*repeat_plain),
                                                         std::move(*compact), std::move(*any_plain), plain == SQLITE_ROW));
}

}  // namespace pipehook::store
