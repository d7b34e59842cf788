#include "pg_server.hpp"

#include "support.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <sqlite3.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <pwd.h>
#include <stdexcept>
#include <sys/wait.h>
#include <unistd.h>

namespace pipehook::test {

namespace {

std::string find_bindir() {
  namespace fs = std::filesystem;
  for (const char* v : {"15", "16", "17"}) {
    const std::string dir = std::string("/usr/lib/postgresql/") + v + "/bin";
    if (fs::exists(dir + "/initdb") && fs::exists(dir + "/pg_ctl")) return dir;
  }
  return {};
}

unsigned short free_port() {
  boost::asio::io_context ioc;
  boost::asio::ip::tcp::acceptor a(ioc, {boost::asio::ip::make_address("127.0.0.1"), 0});
  return a.local_endpoint().port();
}

// Runs a PostgreSQL program as the server's user; throws with its output when it fails.
void run_as_postgres(const std::string& dir, const std::string& program, std::vector<std::string> args) {
  std::string exe = program;
  if (::geteuid() == 0) {
    args.insert(args.begin(), {"-u", "postgres", "--", program});
    exe = "/usr/sbin/runuser";
  }
  const std::string out = dir + "/.cmd.out";
  const int pid = spawn_process(exe, args, {{"LC_ALL", "C.UTF-8"}}, out, out);
  if (pid < 0) throw std::runtime_error("cannot start " + program);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) throw std::runtime_error(program + " failed: " + read_file(out));
}

}  // namespace

pg_server& pg_server::shared() {
  static std::unique_ptr<pg_server> server;
  static std::string failed;
  if (!server && failed.empty()) {
    try {
      server.reset(new pg_server());
    } catch (const std::exception& e) {
      failed = e.what();
    }
  }
  if (!server) throw std::runtime_error("PostgreSQL for the tests did not start: " + failed);
  return *server;
}

pg_server::pg_server() {
  bin_ = find_bindir();
  if (bin_.empty()) throw std::runtime_error("no /usr/lib/postgresql/15/bin/initdb: run scripts/install-deps.sh");
  char tmpl[] = "/tmp/pipehook-pg-XXXXXX";
  if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
  dir_ = tmpl;
  if (::geteuid() == 0) {
    const passwd* pw = ::getpwnam("postgres");
    if (!pw) throw std::runtime_error("no `postgres` user (the postgresql package creates it)");
    if (::chown(dir_.c_str(), pw->pw_uid, pw->pw_gid) != 0) throw std::runtime_error("chown " + dir_ + " failed");
  }
  const std::string pwfile = dir_ + "/.pw";
  write_file(pwfile, "superuser-only-via-socket\n");
  if (::geteuid() == 0) {
    const passwd* pw = ::getpwnam("postgres");
    if (::chown(pwfile.c_str(), pw->pw_uid, pw->pw_gid) != 0) throw std::runtime_error("chown failed");
  }
  run_as_postgres(dir_, bin_ + "/initdb",
                  {"-D", dir_ + "/data", "-U", "postgres", "--pwfile", pwfile, "--auth-local=trust",
                   "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"});
  port_ = free_port();
  start();
  query("postgres", "CREATE ROLE pipehook LOGIN PASSWORD '" + std::string(password) + "'");
}

pg_server::~pg_server() {
  try {
    stop();
  } catch (...) {
  }
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

void pg_server::start() {
  if (running_) return;
  run_as_postgres(dir_, bin_ + "/pg_ctl",
                  {"-D", dir_ + "/data", "-l", dir_ + "/server.log", "-w", "-t", "60", "-o",
                   "-p " + std::to_string(port_) + " -k " + dir_ + " -c listen_addresses=127.0.0.1 -c max_connections=300"
                   " -c shared_buffers=64MB",
                   "start"});
  running_ = true;
}

void pg_server::stop() {
  if (!running_) return;
  run_as_postgres(dir_, bin_ + "/pg_ctl", {"-D", dir_ + "/data", "-w", "-t", "60", "-m", "fast", "stop"});
  running_ = false;
}

PGconn* pg_server::connect(const std::string& db) {
  const std::string conninfo = "host=" + dir_ + " port=" + std::to_string(port_) + " user=postgres dbname=" + db;
  PGconn* c = PQconnectdb(conninfo.c_str());
  if (PQstatus(c) != CONNECTION_OK) {
    const std::string why = PQerrorMessage(c);
    PQfinish(c);
    throw std::runtime_error("cannot connect to the test PostgreSQL: " + why);
  }
  return c;
}

namespace {
std::string db_of(const std::string& url) { return url.substr(url.rfind('/') + 1); }
}  // namespace

void pg_server::put_tables_on(const std::string& url, const std::string& dir) {
  const std::string db = db_of(url);
  query("postgres", "CREATE TABLESPACE ts_" + db + " LOCATION '" + dir + "'");
  query("postgres", "GRANT CREATE ON TABLESPACE ts_" + db + " TO pipehook");
  query("postgres", "ALTER DATABASE " + db + " SET default_tablespace = ts_" + db);
}

void pg_server::drop_database(const std::string& url) {
  const std::string db = db_of(url);
  query("postgres", "DROP DATABASE IF EXISTS " + db + " WITH (FORCE)");
  query("postgres", "DROP TABLESPACE IF EXISTS ts_" + db);
}

std::string pg_server::query(const std::string& db, const std::string& sql) {
  PGconn* c = connect(db);
  PGresult* r = PQexec(c, sql.c_str());
  const auto st = PQresultStatus(r);
  std::string out;
  const bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
  if (ok && st == PGRES_TUPLES_OK && PQntuples(r) > 0) out = PQgetvalue(r, 0, 0);
  const std::string why = ok ? "" : PQresultErrorMessage(r);
  PQclear(r);
  PQfinish(c);
  if (!ok) throw std::runtime_error(sql + ": " + why);
  return out;
}

std::string pg_server::create_database() {
  const std::string name = "t" + std::to_string(::getpid()) + "_" + std::to_string(++databases_);
  query("postgres", "CREATE DATABASE " + name + " OWNER pipehook");
  return "postgresql://pipehook@127.0.0.1:" + std::to_string(port_) + "/" + name;
}

std::string backend_name(const ::testing::TestParamInfo<store::location::kind>& info) {
  return info.param == store::location::kind::postgres ? "postgres" : "sqlite";
}

void use_backend(config::config& c, store::location::kind k) {
  if (k != store::location::kind::postgres) return;
  c.store.backend = config::store_backend::postgres;
  c.store.url = pg_server::shared().create_database();
  c.store.password = pg_server::password;
  c.store.password_source = "store.password";
}

store::location location_of(const config::config& c) {
  if (c.store.backend == config::store_backend::postgres)
    return store::location::postgres(c.store.url, c.store.password, c.store.connect_timeout_ms);
  return store::location(c.store.path);
}

std::string store_toml(const config::config& c) {
  if (c.store.backend == config::store_backend::postgres)
    return "[store]\nbackend = \"postgres\"\nurl = \"" + c.store.url + "\"\npassword = \"" + c.store.password + "\"\n";
  return "[store]\npath = \"" + c.store.path + "\"\n";
}

std::string outside_sql(const store::location& where, const std::string& sql) {
  if (where.is_postgres()) return pg_server::shared().query(where.url.substr(where.url.rfind('/') + 1), sql);
  sqlite3* db = nullptr;
  std::string out;
  if (sqlite3_open(where.path.c_str(), &db) != SQLITE_OK) throw std::runtime_error("cannot open " + where.path);
  // Like any other writer beside a running daemon: wait for its transactions (verdicts, heartbeats).
  sqlite3_busy_timeout(db, 10'000);
  char* err = nullptr;
  const int rc = sqlite3_exec(
      db, sql.c_str(),
      [](void* o, int n, char** v, char**) {
        auto* s = static_cast<std::string*>(o);
        if (s->empty() && n > 0 && v[0]) *s = v[0];
        return 0;
      },
      &out, &err);
  const std::string why = err ? err : "";
  sqlite3_free(err);
  sqlite3_close(db);
  if (rc != SQLITE_OK) throw std::runtime_error(sql + ": " + why);
  return out;
}

outcome<std::unique_ptr<store::event_log>> open_log(const store::location& where, const store::writer_options& w,
                                                    std::int64_t busy_timeout_ms) {
  if (where.is_postgres()) {
    store::postgres_options o;
    static_cast<store::writer_options&>(o) = w;
    o.url = where.url;
    o.password = where.password;
    o.lock_timeout_ms = busy_timeout_ms;
    return store::open_postgres_event_log(o);
  }
  store::sqlite_options o;
  static_cast<store::writer_options&>(o) = w;
  o.path = where.path;
  o.busy_timeout_ms = busy_timeout_ms;
  return store::open_sqlite_event_log(o);
}

store::append_result append_sync(store::event_log& log, event::event ev) {
  std::promise<store::append_result> p;
  auto f = p.get_future();
  log.append(std::move(ev), [&p](store::append_result r) { p.set_value(std::move(r)); });
  return f.get();
}

void backend_log::SetUp() {
  if (GetParam() == store::location::kind::postgres)
    where = store::location::postgres(pg_server::shared().create_database(), pg_server::password);
  else
    where = store::location(dir.file("events.db"));
}

std::unique_ptr<store::event_log> backend_log::open_log(const store::writer_options& w, std::int64_t busy_timeout_ms) {
  auto log = try_open(w, busy_timeout_ms);
  EXPECT_TRUE(log) << (log ? "" : log.error().message);
  return log ? std::move(*log) : nullptr;
}

std::unique_ptr<store::reader> backend_log::reader() {
  auto rd = store::reader::open(where);
  EXPECT_TRUE(rd) << (rd ? "" : rd.error().message);
  return rd ? std::move(*rd) : nullptr;
}

}  // namespace pipehook::test
