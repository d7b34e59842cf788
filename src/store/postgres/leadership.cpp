// Leadership on PostgreSQL: pg_try_advisory_lock on a connection kept for it.
#include "pipehook/store/leadership.hpp"

#include "pg.hpp"

#include <spdlog/spdlog.h>

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
  postgres_leadership(const location& where, std::string role)
      : session_({where.url, where.password, where.connect_timeout_ms}), role_(std::move(role)), key_(key_of(role_)) {}

  bool check() override {
    auto c = session_.get();  // a new connection when the last one was lost: the lock went with it
    if (!c) {
      lose("the connection to PostgreSQL was lost");
      return false;
    }
    if (session_.generation() != held_on_) held_ = false;
    if (held_) return true;
    pg::params p;
    p.integer(key_);
    auto r = pg::exec(*c, "SELECT pg_try_advisory_lock($1::bigint)", p);
    if (!r) {
      lose(r.error().message);
      return false;
    }
    held_ = pg::text(r->get(), 0, 0) == "t";
    held_on_ = held_ ? session_.generation() : 0;
    if (held_) spdlog::info("{}: this replica has the role now (PostgreSQL advisory lock)", role_);
    else if (!told_standby_) spdlog::info("{}: another replica has the role; this one stands by", role_);
    told_standby_ = !held_;
    return held_;
  }

 private:
  void lose(const std::string& why) {
    if (held_) spdlog::warn("{}: lost the role ({})", role_, why);
    held_ = false;
    held_on_ = 0;
  }

  pg::session session_;
  std::string role_;
  std::int64_t key_;
  bool held_ = false;
  std::uint64_t held_on_ = 0;  // the session generation (connection) the lock was taken on
  bool told_standby_ = false;
};

}  // namespace

std::unique_ptr<leadership> open_postgres_leadership(const location& where, const std::string& role) {
  return std::make_unique<postgres_leadership>(where, role);
}

}  // namespace pipehook::store
