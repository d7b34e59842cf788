// Leadership on PostgreSQL: pg_try_advisory_lock on a connection kept for it.
#include "pipehook/store/leadership.hpp"

#include "pg.hpp"

#include <spdlog/spdlog.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace pipehook::store {
namespace {

// Stable lock keys per role ("pipehook" in ASCII, then the role's number).
std::int64_t key_of(const std::string& role) {
  constexpr std::int64_t base = 8100068551476031000;
  if (role == "registrar") return base + 1;
  if (role == "retention") return base + 2;
  std::int64_t h = 0;
  for (unsigned char c : role) h = h * 31 + c;
  return base + 100 + (h & 0xffff);
}

class postgres_leadership final : public leadership {
 public:
  postgres_leadership(const location& where, std::string role, std::chrono::milliseconds every)
      : session_(pg::options_of(where.for_purpose("leader:" + role))), role_(std::move(role)), key_(key_of(role_)), every_(every) {
    thread_ = std::thread([this] { run(); });
  }
  ~postgres_leadership() override {
    {
      std::lock_guard lk(mu_);
      stop_ = true;
    }
    wake_.notify_all();
    thread_.join();  // the connection, and with it the lock, goes with the session
  }

  bool check() override {
    std::unique_lock lk(mu_);
    // The first answer is waited for (start-up: a replica must not act before it knows); later
    // ones are the thread's latest.
    first_.wait(lk, [&] { return checked_once_ || stop_; });
    return held_.load();
  }

 private:
  void run() {
    for (;;) {
      refresh();
      std::unique_lock lk(mu_);
      checked_once_ = true;
      first_.notify_all();
      wake_.wait_for(lk, every_, [&] { return stop_; });
      if (stop_) return;
    }
  }

  // On the thread: keeps the role, or tries to take it.
  void refresh() {
    auto c = session_.get();  // a new connection when the last one was lost: the lock went with it
    if (!c) return lose("the connection to PostgreSQL was lost");
    if (session_.generation() != held_on_) held_ = false;
    if (held_) return;
    pg::params p;
    p.integer(key_);
    auto r = pg::exec(*c, "SELECT pg_try_advisory_lock($1::bigint)", p);
    if (!r) return lose(r.error().message);
    const bool got = pg::text(r->get(), 0, 0) == "t";
    held_on_ = got ? session_.generation() : 0;
    held_ = got;
    if (got) spdlog::info("{}: this replica has the role now (PostgreSQL advisory lock)", role_);
    else if (!told_standby_) spdlog::info("{}: another replica has the role; this one stands by", role_);
    told_standby_ = !got;
  }

  void lose(const std::string& why) {
    if (held_) spdlog::warn("{}: lost the role ({})", role_, why);
    held_ = false;
    held_on_ = 0;
  }

  pg::session session_;  // the thread's only
  std::string role_;
  std::int64_t key_;
  std::chrono::milliseconds every_;
  std::atomic<bool> held_{false};
  std::uint64_t held_on_ = 0;  // the thread's: the session generation (connection) the lock was taken on
  bool told_standby_ = false;  // the thread's
  std::mutex mu_;
  std::condition_variable wake_, first_;
  bool stop_ = false, checked_once_ = false;
  std::thread thread_;
};

}  // namespace

std::unique_ptr<leadership> open_postgres_leadership(const location& where, const std::string& role,
                                                     std::chrono::milliseconds every) {
  return std::make_unique<postgres_leadership>(where, role, every);
}

}  // namespace pipehook::store
