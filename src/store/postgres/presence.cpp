// A replica's presence on PostgreSQL: the heartbeat row and the leases of its claims, renewed by
// a thread with a connection of its own; the replica id held by a session-level advisory lock so
// that two live processes never share one.
#include "pipehook/store/presence.hpp"

#include "pg.hpp"
#include "schema.hpp"

#include <spdlog/spdlog.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace pipehook::store {
namespace {

// Replica ids are locked in the two-int4 key space (the roles use the single bigint one).
constexpr std::string_view lock_id_sql = "SELECT pg_try_advisory_lock(81000685, hashtext($1))";

class postgres_presence final : public presence {
 public:
  postgres_presence(const location& where, replica_identity who, std::chrono::milliseconds lease)
      : session_(pg::options_of(where.for_purpose("presence"))), who_(std::move(who)), lease_(lease) {}

  ~postgres_presence() override { stop_thread(); }

  outcome<void> start() {
    if (auto r = session_.open(); !r) return r.error();
    if (auto r = take_id(); !r) return r.error();
    if (auto r = upsert_row(); !r) return r.error();  // a restart under the same id starts a new record
    if (auto r = beat(); !r) return r.error();
    thread_ = std::thread([this] { run(); });
    return {};
  }

  std::chrono::steady_clock::time_point claims_hold_until() const override {
    return std::chrono::steady_clock::time_point(std::chrono::steady_clock::duration(hold_until_.load()));
  }

  outcome<int> others_live() override {
    std::lock_guard lk(conn_mu_);
    auto c = session_.get();
    if (!c) return c.error();
    pg::params p;
    p.text(who_.id);
    auto r = pg::exec(*c, "SELECT count(*) FROM replicas WHERE id <> $1 AND heartbeat_at + lease_ms * 1000 > " + std::string(pg::db_now_us), p);
    if (!r) return r.error();
    return static_cast<int>(pg::integer(r->get(), 0, 0));
  }

  void leave() override {
    stop_thread();
    std::lock_guard lk(conn_mu_);
    if (left_) return;
    left_ = true;
    auto c = session_.get();
    if (!c) {
      spdlog::warn("replica {}: could not hand back its claims ({}); other replicas take them when the lease runs out",
                   who_.id, c.error().message);
      return;
    }
    pg::params p;
    p.text(who_.id);
    auto released = pg::exec(*c, "UPDATE deliveries SET claimed_by = NULL, lease_until = NULL WHERE claimed_by = $1 AND state = 'pending'", p);
    auto gone = pg::exec(*c, "DELETE FROM replicas WHERE id = $1", p);
    if (!released || !gone)
      spdlog::warn("replica {}: leaving the database failed ({}); its claims expire with their lease", who_.id,
                   (!released ? released.error() : gone.error()).message);
    else if (const std::string n = PQcmdTuples(released->get()); n != "0")
      spdlog::info("replica {}: handed {} claimed deliveries back to the other replicas", who_.id, n);
  }

 private:
  // The id's lock, on the session's connection (taken again after a reconnect).
  outcome<void> take_id() {
    pg::params p;
    p.text(who_.id);
    auto r = pg::exec(*session_.get(), lock_id_sql, p);
    if (!r) return r.error();
    if (pg::text(r->get(), 0, 0) != "t")
      return make_failure(errc::invalid_config, "server.replica_id \"" + who_.id +
                                                    "\" is in use by another live pipehook on this database: give each "
                                                    "replica its own");
    locked_on_ = session_.generation();
    return {};
  }

  outcome<void> upsert_row() {
    const std::string now(pg::db_now_us);
    pg::params p;
    p.text(who_.id).text(who_.host).integer(who_.pid).text(who_.version).integer(lease_.count());
    auto r = pg::exec(*session_.get(),
                      "INSERT INTO replicas (id, host, pid, version, lease_ms, started_at, heartbeat_at) VALUES ($1, $2, $3::bigint, "
                      "$4, $5::bigint, " + now + ", " + now + ") ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = "
                      "excluded.pid, version = excluded.version, lease_ms = excluded.lease_ms, started_at = excluded.started_at, "
                      "heartbeat_at = excluded.heartbeat_at",
                      p);
    if (!r) return r.error();
    return {};
  }

  // One heartbeat: the row, and the leases of every row this replica holds; one round trip.
  outcome<void> beat() {
    const auto t0 = std::chrono::steady_clock::now();
    auto c = session_.get();
    if (!c) return c.error();
    if (locked_on_ != session_.generation())
      if (auto r = take_id(); !r) return r;
    const std::string now(pg::db_now_us);
    pg::params hb;
    hb.text(who_.id).text(who_.host).integer(who_.pid).text(who_.version).integer(lease_.count());
    pg::params renew;
    renew.text(who_.id).integer(lease_.count() * 1000);
    pg::pipeline pl(*c);
    pl.send("UPDATE replicas SET host = $2, pid = $3::bigint, version = $4, lease_ms = $5::bigint, heartbeat_at = " + now +
                " WHERE id = $1",
            hb);
    pl.send("UPDATE deliveries SET lease_until = " + now + " + $2::bigint WHERE claimed_by = $1 AND state = 'pending'", renew);
    // Replicas dead for a day are forgotten.
    pl.send("DELETE FROM replicas WHERE heartbeat_at < " + now + " - 86400000000");
    auto r = pl.run(std::chrono::milliseconds(std::max<std::int64_t>(1000, lease_.count() / 3)));
    if (!r) {
      if (PQpipelineStatus(*c) != PQ_PIPELINE_OFF || pg::broken(*c)) session_.discard();
      return r.error();
    }
    // The row went (a day-long pause, or removed by hand): back it comes.
    if (std::string_view(PQcmdTuples((*r)[0].get())) == "0")
      if (auto again = upsert_row(); !again) return again.error();
    // The leases were renewed at t0 or later, on the database's clock: they hold at least until
    // t0 + lease here; a sixth of it is kept back for clocks that tick at slightly other rates.
    hold_until_ = (t0 + lease_ - lease_ / 6).time_since_epoch().count();
    return {};
  }

  void run() {
    bool failing = false;
    for (;;) {
      {
        std::unique_lock lk(mu_);
        wake_.wait_for(lk, lease_ / 3, [&] { return stop_; });
        if (stop_) return;
      }
      std::lock_guard lk(conn_mu_);
      auto r = beat();
      if (!r && !failing)
        spdlog::error("replica {}: heartbeat failed ({}); its claims expire unless the next one goes through", who_.id,
                      r.error().message);
      else if (r && failing)
        spdlog::info("replica {}: heartbeat through again", who_.id);
      failing = !r;
    }
  }

  void stop_thread() {
    {
      std::lock_guard lk(mu_);
      stop_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  pg::session session_;
  std::mutex conn_mu_;  // the session: the thread's beats, others_live() and leave()
  replica_identity who_;
  std::chrono::milliseconds lease_;
  std::uint64_t locked_on_ = 0;
  std::atomic<std::chrono::steady_clock::rep> hold_until_{0};
  std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;
  bool left_ = false;
  std::thread thread_;
};

}  // namespace

outcome<std::unique_ptr<presence>> open_postgres_presence(const location& where, const replica_identity& who,
                                                          std::chrono::milliseconds lease) {
  auto p = std::make_unique<postgres_presence>(where, who, lease);
  if (auto r = p->start(); !r) return r.error();
  return std::unique_ptr<presence>(std::move(p));
}

}  // namespace pipehook::store
