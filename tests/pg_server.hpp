#pragma once
// A real PostgreSQL 15 for the tests (Debian's `postgresql` package): initdb into a temporary
// directory as the unprivileged `postgres` user when the suite runs as root (postgres refuses
// root), started with pg_ctl on a free loopback port with its Unix socket in that directory, and
// stopped with the test binary. The role `pipehook` logs in over TCP with a password
// (scram-sha-256), the way a deployment would; the harness itself uses the socket.

#include "pipehook/config/config.hpp"
#include "pipehook/store/event_log.hpp"
#include "pipehook/store/location.hpp"
#include "pipehook/store/reader.hpp"
#include "support.hpp"

#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <memory>
#include <string>

namespace pipehook::test {

class pg_server {
 public:
  // The server of this test binary, started on first use. A server that cannot start fails the
  // calling test with the reason (scripts/install-deps.sh installs what it needs).
  static pg_server& shared();
  ~pg_server();

  // A fresh empty database owned by `pipehook`; returns a libpq URI for it, without the password.
  std::string create_database();
  unsigned short port() const { return port_; }
  static constexpr const char* password = "pg-test-pw-0123456789";
  // The running server, from the socket as the superuser: one statement, its first cell.
  std::string query(const std::string& db, const std::string& sql);

  // The database of `url` puts its tables (those created from now on) in a tablespace at `dir`
  // (an empty directory the server's user owns: a small tmpfs for full-disk tests).
  void put_tables_on(const std::string& url, const std::string& dir);
  // Drops the database of `url` (connections closed) and its tablespace, if any.
  void drop_database(const std::string& url);
  // A superuser connection to `db` over the socket (PQfinish it).
  PGconn* connect(const std::string& db);

  // For outage tests: stops the server (fast shutdown) and starts it again on the same port.
  void stop();
  void start();
  bool running() const { return running_; }

 private:
  pg_server();
  std::string dir_, bin_;
  unsigned short port_ = 0;
  bool running_ = false;
  int databases_ = 0;
};

// The event-log backends a suite runs on (INSTANTIATE_TEST_SUITE_P(backends, X, test::backends(),
// test::backend_name)).
inline auto backends() { return ::testing::Values(store::location::kind::sqlite, store::location::kind::postgres); }
std::string backend_name(const ::testing::TestParamInfo<store::location::kind>& info);

// Points the config's event log at a fresh database on the test PostgreSQL (kind postgres), or
// leaves it on its SQLite file.
void use_backend(config::config& c, store::location::kind k);
// Where the config's event log is.
store::location location_of(const config::config& c);
// The [store] lines of a config file for the config's event log.
std::string store_toml(const config::config& c);
// Opens an event log at `where` for writing (SQLite defaults, or the PostgreSQL backend).
outcome<std::unique_ptr<store::event_log>> open_log(const store::location& where, const store::writer_options& w = {},
                                                    std::int64_t busy_timeout_ms = 2000);

// Runs one SQL statement on an event log from outside pipehook (as another process would);
// returns the first cell, if any.
std::string outside_sql(const store::location& where, const std::string& sql);

// Appends one event and waits for its commit.
store::append_result append_sync(store::event_log& log, event::event ev);

// A suite on both backends: a SQLite file in a temporary directory, or a fresh database on the
// test PostgreSQL (the parameter; INSTANTIATE_TEST_SUITE_P(backends, X, backends(), backend_name)).
struct backend_log : ::testing::TestWithParam<store::location::kind> {
  temp_dir dir;
  store::location where;

  void SetUp() override;
  bool postgres() const { return where.is_postgres(); }
  outcome<std::unique_ptr<store::event_log>> try_open(const store::writer_options& w = {}, std::int64_t busy_timeout_ms = 2000) {
    return test::open_log(where, w, busy_timeout_ms);
  }
  // The log (nullptr, and the test failed, when it does not open).
  std::unique_ptr<store::event_log> open_log(const store::writer_options& w = {}, std::int64_t busy_timeout_ms = 2000);
  std::unique_ptr<store::reader> reader();
  std::string outside(const std::string& sql) { return outside_sql(where, sql); }
};

}  // namespace pipehook::test
