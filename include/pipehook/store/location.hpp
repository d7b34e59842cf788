#pragma once
// Where an event log lives: a SQLite file, or a PostgreSQL database. Readers, the outbox and the
// writer are opened from one of these; a plain path converts to a SQLite location.

#include <cstdint>
#include <string>

namespace pipehook::store {

struct location {
  enum class kind { sqlite, postgres };
  kind backend = kind::sqlite;
  std::string path;      // sqlite: the database file
  std::string url;       // postgres: a libpq connection URI
  std::string password;  // postgres: overrides the URI's when set
  std::int64_t connect_timeout_ms = 5'000;
  // postgres: what the connection is for ("admin", "compaction", …); its sessions show as
  // application_name "pipehook/<purpose>" in pg_stat_activity ("pipehook" when empty), unless
  // the URI sets application_name itself.
  std::string purpose;

  location() = default;
  location(std::string sqlite_path) : path(std::move(sqlite_path)) {}  // NOLINT: implicit on purpose
  location(const char* sqlite_path) : path(sqlite_path) {}            // NOLINT
  static location postgres(std::string url, std::string password = {}, std::int64_t connect_timeout_ms = 5'000) {
    location l;
    l.backend = kind::postgres;
    l.url = std::move(url);
    l.password = std::move(password);
    l.connect_timeout_ms = connect_timeout_ms;
    return l;
  }
  bool is_postgres() const { return backend == kind::postgres; }
  location for_purpose(std::string p) const {
    location l = *this;
    l.purpose = std::move(p);
    return l;
  }
  // For messages: the path, or the URI with its password masked.
  std::string describe() const;
};

}  // namespace pipehook::store
