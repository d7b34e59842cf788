#pragma once
// Test support: temporary directories, sample payloads, a blocking HTTP client over real sockets,
// an in-process daemon on 127.0.0.1 port 0, and a spawned daemon process.

#include "pipehook/cli/daemon.hpp"
#include "pipehook/config/config.hpp"
#include "pipehook/store/outbox.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace pipehook::test {

// A fresh directory under the system temp dir, removed with the object.
struct temp_dir {
  std::filesystem::path path;
  temp_dir();
  ~temp_dir();
  std::string file(const std::string& name) const { return (path / name).string(); }
};

std::string read_file(const std::filesystem::path& p);
void write_file(const std::filesystem::path& p, const std::string& content);

// The sample bodies shipped with the tests: file name -> body.
std::map<std::string, std::string> samples();

// A v2 body with a given event id / entity / attempt, for load and crash tests.
std::string v2_body(const std::string& event_id, const std::string& entity = "deal", const std::string& entity_id = "42",
                    int attempt = 1, const std::string& timestamp = "2024-05-01T10:00:00.123Z");

// A v2 body with chosen meta and data/previous objects (JSON text each).
std::string v2(const std::string& id, const std::string& entity, const std::string& entity_id, const std::string& action,
               const std::string& data, const std::string& previous, const std::string& user = "12",
               const std::string& source = "app", const std::string& timestamp = "2024-05-01T10:00:00.000Z",
               const std::string& webhook = "99", const std::string& company = "777");
// A v1 body as documented in guide-for-webhooks.md ("added", "updated", "deleted"; current/previous JSON).
std::string v1(const std::string& action, const std::string& object, const std::string& id, const std::string& current,
               const std::string& previous, const std::string& ts_micro);

std::string basic_auth(const std::string& user, const std::string& password);

// How often `what` occurs in `text` (log lines, Prism's log).
std::size_t count_in(const std::string& text, const std::string& what);

// The outbox counts of the first handler (by name) in the event log at `db`; all zero when none.
store::handler_counts counts_of(const store::location& where);
// The same for the handler named `handler`.
store::handler_counts counts_of(const store::location& where, const std::string& handler);

// True when something accepts TCP connections on 127.0.0.1:port (a server started by a test is up).
bool port_open(unsigned short port);

// True when the admin listener's /metrics (no token) has a sample line starting with `sample`,
// e.g. "pipehook_http_connections{state=\"busy\"} 1".
bool metrics_show(unsigned short admin_port, const std::string& sample);

// Polls `cond` every 20 ms until it holds or `timeout` passes: how a test waits for a condition.
bool wait_for(const std::function<bool()>& cond, std::chrono::milliseconds timeout);

struct http_reply {
  unsigned status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  bool keep_alive = false;
};

// One keep-alive connection; reconnects when the server closed it.
class http_client {
 public:
  explicit http_client(unsigned short port);
  ~http_client();
  http_reply request(const std::string& method, const std::string& target, const std::string& body = {},
                     const std::map<std::string, std::string>& headers = {});
  // POST a webhook with the given credentials and application/json.
  http_reply post(const std::string& body, const std::string& auth);
  bool connected() const;

 private:
  struct impl;
  std::unique_ptr<impl> p_;
};

// A raw socket for tests that send bytes by hand (slow clients, partial requests).
class raw_socket {
 public:
  explicit raw_socket(unsigned short port);
  void send(const std::string& bytes);
  // Reads until the peer closes or `timeout` passes; returns what arrived. saw_close() tells which.
  std::string read_until_close(std::chrono::milliseconds timeout);
  bool saw_close() const { return saw_close_; }
  // Reads whatever arrives within timeout (at least one byte or nothing).
  std::string read_some(std::chrono::milliseconds timeout);
  bool closed_by_peer(std::chrono::milliseconds timeout);

 private:
  boost::asio::io_context ioc_;
  boost::asio::ip::tcp::socket socket_;
  bool saw_close_ = false;
};

inline const std::string test_user = "pipedrive";
inline const std::string test_password = "s3cret-for-tests";

// A config for tests: 127.0.0.1 port 0, the database in `dir`, the test credentials.
config::config test_config(const temp_dir& dir);

// An http handler delivering to http://127.0.0.1:PORT/ (a test sink), every other key at its default.
config::handler_config http_sink_handler(const std::string& name, unsigned short port);

// The real daemon, in this process, served on its own thread.
class running_daemon {
 public:
  // Tests do not wait out production intervals: the dispatcher looks at the outbox every 100 ms,
  // the registrar retries after 100 ms.
  explicit running_daemon(const config::config& c,
                          cli::daemon::tuning t = {std::chrono::milliseconds(100), std::chrono::milliseconds(100)});
  ~running_daemon();
  unsigned short port() const { return port_; }
  unsigned short admin_port() const { return admin_port_; }
  http::connection_counts connections() const { return d_->webhook_connections(); }
  void stop_and_wait();

 private:
  std::unique_ptr<cli::daemon> d_;
  std::thread thread_;
  unsigned short port_ = 0, admin_port_ = 0;
};

// A test with the daemon in process on the test config (adjust `cfg`, then start()).
struct daemon_fixture : ::testing::Test {
  temp_dir dir;
  config::config cfg = test_config(dir);
  std::unique_ptr<running_daemon> daemon;

  void start() { daemon = std::make_unique<running_daemon>(cfg); }
  unsigned short port() const { return daemon->port(); }
  std::int64_t stored_events() const;  // events in the log (-1 when it cannot be read)
};

// The pipehook binary as a child process (stderr to a file), for signal and crash tests.
class daemon_process {
 public:
  // stderr goes to log_path; the "listening on" line is looked for in listen_log (log.file), or log_path.
  daemon_process(const std::string& config_path, const std::string& log_path, const std::string& listen_log = "");
  ~daemon_process();
  unsigned short port() const { return port_; }
  unsigned short admin_port() const { return admin_port_; }  // 0 when the log did not name one
  void signal(int sig);
  // Waits for exit; returns the exit status (or 128+signal), nullopt on timeout.
  std::optional<int> wait(std::chrono::milliseconds timeout);
  int pid() const { return pid_; }

 private:
  int pid_ = -1;
  unsigned short port_ = 0, admin_port_ = 0;
  bool reaped_ = false;
};

// A small tmpfs mounted at `path` (created) for full-disk tests; unmounted with the object.
// Mounting needs root, as CI runs; mounted() says whether it worked and why() why not. With
// `owner` the mount point belongs to that user (a database server's).
class small_disk {
 public:
  small_disk(const std::string& path, const std::string& size, const std::string& owner = "");
  ~small_disk();
  bool mounted() const { return mounted_; }
  const std::string& why() const { return why_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_, why_;
  bool mounted_ = false;
};

// Starts `program` with `args`: stdin /dev/null, stdout and stderr to files, the environment of
// this process without PIPEHOOK_* and PIPEDRIVE_* plus `env`; own_group puts it in a process group
// of its own (kill(-pid) then stops its children too). Returns the pid, or -1.
int spawn_process(const std::string& program, const std::vector<std::string>& args,
                  const std::map<std::string, std::string>& env, const std::string& out_path, const std::string& err_path,
                  bool own_group = false);

// Runs the pipehook binary with args; returns exit code, stdout and stderr.
struct run_result {
  int exit_code = -1;
  std::string out, err;
};
run_result run_cli(const std::vector<std::string>& args, const std::map<std::string, std::string>& env = {});

}  // namespace pipehook::test
