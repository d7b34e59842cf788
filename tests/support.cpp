#include "support.hpp"

#include "pipehook/store/reader.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <openssl/evp.h>
#include <fcntl.h>
#include <pwd.h>
#include <sys/mount.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>

extern char** environ;

namespace pipehook::test {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using asio::ip::tcp;

temp_dir::temp_dir() {
  std::random_device rd;
  path = std::filesystem::temp_directory_path() / ("pipehook-test-" + std::to_string(rd()) + std::to_string(::getpid()));
  std::filesystem::create_directories(path);
}
temp_dir::~temp_dir() {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
}

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const std::filesystem::path& p, const std::string& content) {
  std::ofstream out(p, std::ios::binary);
  out << content;
}

std::map<std::string, std::string> samples() {
  std::map<std::string, std::string> out;
  for (const auto& entry : std::filesystem::directory_iterator(PIPEHOOK_SAMPLES_DIR))
    if (entry.path().extension() == ".json") out[entry.path().filename().string()] = read_file(entry.path());
  if (out.empty()) throw std::runtime_error("no samples in " PIPEHOOK_SAMPLES_DIR);
  return out;
}

std::string v2_body(const std::string& event_id, const std::string& entity, const std::string& entity_id, int attempt,
                    const std::string& timestamp) {
  return R"({"data":{"id":)" + entity_id + R"(,"title":"Deal )" + event_id + R"("},"previous":null,"meta":{"action":"create","company_id":"777","correlation_id":"c-)" +
         event_id + R"(","entity_id":")" + entity_id + R"(","entity":")" + entity + R"(","id":")" + event_id +
         R"(","is_bulk_edit":false,"timestamp":")" + timestamp +
         R"(","type":"general","user_id":"12","version":"2.0","webhook_id":"99","webhook_owner_id":"12","change_source":"api","attempt":)" +
         std::to_string(attempt) + R"(,"host":"acme.pipedrive.com"}})";
}

// A v2 body with chosen meta and data/previous objects.
std::string v2(const std::string& id, const std::string& entity, const std::string& entity_id, const std::string& action,
               const std::string& data, const std::string& previous, const std::string& user,
               const std::string& source, const std::string& timestamp, const std::string& webhook, const std::string& company) {
  return R"({"data":)" + data + R"(,"previous":)" + previous + R"(,"meta":{"action":")" + action +
         R"(","company_id":")" + company + R"(","correlation_id":"c","entity_id":")" + entity_id + R"(","entity":")" +
         entity + R"(","id":")" + id + R"(","is_bulk_edit":false,"timestamp":")" + timestamp +
         R"(","type":"general","user_id":")" + user + R"(","version":"2.0","webhook_id":")" + webhook +
         R"(","webhook_owner_id":"12","change_source":")" + source + R"(","attempt":1,"host":"acme.pipedrive.com"}})";
}

// A v1 body as documented in guide-for-webhooks.md.
std::string v1(const std::string& action, const std::string& object, const std::string& id, const std::string& current,
               const std::string& previous, const std::string& ts_micro) {
  return R"({"v":1,"matches_filters":{"current":[],"previous":[]},"meta":{"v":1,"action":")" + action +
         R"(","object":")" + object + R"(","change_source":"app","id":)" + id +
         R"(,"company_id":123456,"user_id":654321,"host":"company.pipedrive.com","timestamp":1523440213,"timestamp_micro":)" +
         ts_micro + R"(,"webhook_id":77},"retry":0,"current":)" + current + R"(,"previous":)" + previous +
         R"(,"event":")" + action + "." + object + R"("})";
}

std::size_t count_in(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

std::string basic_auth(const std::string& user, const std::string& password) {
  const std::string raw = user + ":" + password;
  std::string out(4 * ((raw.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), reinterpret_cast<const unsigned char*>(raw.data()),
                                static_cast<int>(raw.size()));
  out.resize(static_cast<std::size_t>(n));
  return "Basic " + out;
}

struct http_client::impl {
  unsigned short port;
  asio::io_context ioc;
  std::optional<beast::tcp_stream> stream;
  beast::flat_buffer buffer;

  void connect() {
    stream.emplace(ioc);
    stream->expires_after(std::chrono::seconds(10));
    stream->connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    buffer.clear();
  }
};

http_client::http_client(unsigned short port) : p_(std::make_unique<impl>()) {
  p_->port = port;
  p_->connect();
}
http_client::~http_client() = default;

bool http_client::connected() const { return p_->stream.has_value(); }

http_reply http_client::request(const std::string& method, const std::string& target, const std::string& body,
                                const std::map<std::string, std::string>& headers) {
  if (!p_->stream) p_->connect();
  bhttp::request<bhttp::string_body> req{bhttp::string_to_verb(method), target, 11};
  req.set(bhttp::field::host, "127.0.0.1");
  for (const auto& [k, v] : headers) req.set(k, v);
  req.body() = body;
  req.prepare_payload();
  p_->stream->expires_after(std::chrono::seconds(20));
  bhttp::write(*p_->stream, req);
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(64 * 1024 * 1024);
  bhttp::read(*p_->stream, p_->buffer, parser);
  const auto& res = parser.get();
  http_reply out;
  out.status = res.result_int();
  for (const auto& f : res) {
    std::string name(f.name_string());
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    out.headers[name] = std::string(f.value());
  }
  out.body = res.body();
  out.keep_alive = res.keep_alive();
  if (!out.keep_alive) p_->stream.reset();
  return out;
}

http_reply http_client::post(const std::string& body, const std::string& auth) {
  std::map<std::string, std::string> h{{"Content-Type", "application/json"}};
  if (!auth.empty()) h["Authorization"] = auth;
  return request("POST", "/webhooks/pipedrive", body, h);
}

raw_socket::raw_socket(unsigned short port) : socket_(ioc_) {
  socket_.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
}

void raw_socket::send(const std::string& bytes) { asio::write(socket_, asio::buffer(bytes)); }

std::string raw_socket::read_some(std::chrono::milliseconds timeout) {
  std::string out;
  char buf[4096];
  bool done = false;
  socket_.async_read_some(asio::buffer(buf), [&](boost::system::error_code ec, std::size_t n) {
    if (!ec) out.assign(buf, n);
    done = true;
  });
  ioc_.restart();
  ioc_.run_for(timeout);
  if (!done) {
    socket_.cancel();
    ioc_.restart();
    ioc_.run();
  }
  return out;
}

std::string raw_socket::read_until_close(std::chrono::milliseconds timeout) {
  std::string out;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    bool eof = false;
    char buf[4096];
    bool done = false;
    socket_.async_read_some(asio::buffer(buf), [&](boost::system::error_code ec, std::size_t n) {
      if (ec) eof = true;
      else out.append(buf, n);
      done = true;
    });
    ioc_.restart();
    ioc_.run_for(left);
    if (!done) {
      socket_.cancel();
      ioc_.restart();
      ioc_.run();
      break;
    }
    if (eof) {
      saw_close_ = true;
      break;
    }
  }
  return out;
}

bool raw_socket::closed_by_peer(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    bool eof = false, done = false;
    char buf[4096];
    socket_.async_read_some(asio::buffer(buf), [&](boost::system::error_code ec, std::size_t) {
      eof = static_cast<bool>(ec);
      done = true;
    });
    ioc_.restart();
    ioc_.run_for(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()));
    if (!done) {
      socket_.cancel();
      ioc_.restart();
      ioc_.run();
      return false;
    }
    if (eof) return true;
  }
  return false;
}

bool wait_for(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return cond();
}

store::handler_counts counts_of(const store::location& where) {
  auto ob = store::outbox::open(where);
  if (!ob) return {};
  auto c = (*ob)->counts();
  if (!c || c->empty()) return {};
  return (*c)[0];
}

store::handler_counts counts_of(const store::location& where, const std::string& handler) {
  auto ob = store::outbox::open(where);
  if (!ob) return {};
  auto all = (*ob)->counts();
  if (all)
    for (const auto& c : *all)
      if (c.handler == handler) return c;
  return {};
}

bool port_open(unsigned short port) {
  boost::asio::io_context ioc;
  boost::asio::ip::tcp::socket s(ioc);
  boost::system::error_code ec;
  s.connect({boost::asio::ip::make_address("127.0.0.1"), port}, ec);
  return !ec;
}

bool metrics_show(unsigned short admin_port, const std::string& sample) {
  http_client c(admin_port);
  const std::string text = c.request("GET", "/metrics").body;
  return text.find("\n" + sample) != std::string::npos;
}

std::int64_t daemon_fixture::stored_events() const {
  auto rd = store::reader::open(cfg.store.path);
  if (!rd) return -1;
  const auto n = (*rd)->count_events();
  return n ? *n : -1;
}

config::config test_config(const temp_dir& dir) {
  config::config c;
  c.source = "(test)";
  c.server.port = 0;
  c.admin.port = 0;  // tests run in parallel: never the fixed default
  c.store.path = dir.file("events.db");
  c.auth.user = test_user;
  c.auth.password = test_password;
  c.log.level = "warn";
  return c;
}

config::handler_config http_sink_handler(const std::string& name, unsigned short port) {
  config::handler_config h;
  h.name = name;
  h.type = "http";
  h.where = "handlers." + name;
  h.settings["url"] = "http://127.0.0.1:" + std::to_string(port) + "/";
  return h;
}

running_daemon::running_daemon(const config::config& given, cli::daemon::tuning t) {
  // Daemons in one test process are replicas of their own: each gets an id (on PostgreSQL two
  // live processes never share one).
  static std::atomic<int> count{0};
  config::config c = given;
  if (c.server.replica_id.empty()) c.server.replica_id = "test-" + std::to_string(getpid()) + "-" + std::to_string(++count);
  auto d = cli::daemon::create(c, t);
  if (!d) throw std::runtime_error("daemon::create: " + d.error().message);
  d_ = std::move(*d);
  port_ = d_->endpoint().port();
  admin_port_ = d_->admin_endpoint().port();
  thread_ = std::thread([this] { d_->run(false); });
}

void running_daemon::stop_and_wait() {
  if (!thread_.joinable()) return;
  d_->stop();
  thread_.join();
}

running_daemon::~running_daemon() { stop_and_wait(); }

int spawn_process(const std::string& program, const std::vector<std::string>& args,
                  const std::map<std::string, std::string>& env, const std::string& out_path, const std::string& err_path,
                  bool own_group) {
  std::vector<std::string> argv_s{program};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_s;
  for (char** e = environ; *e; ++e) {
    std::string kv(*e);
    if (kv.rfind("PIPEHOOK_", 0) == 0 || kv.rfind("PIPEDRIVE_", 0) == 0) continue;  // tests say what they set
    env_s.push_back(kv);
  }
  for (const auto& [k, v] : env) env_s.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  if (own_group) {
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attr, 0);
  }
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, argv[0], &fa, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  return rc == 0 ? pid : -1;
}

namespace {

pid_t spawn(const std::vector<std::string>& args, const std::map<std::string, std::string>& env, const std::string& out_path,
            const std::string& err_path) {
  const int pid = spawn_process(PIPEHOOK_BINARY, args, env, out_path, err_path);
  if (pid < 0) throw std::runtime_error("posix_spawn failed");
  return pid;
}

int decode_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

}  // namespace

daemon_process::daemon_process(const std::string& config_path, const std::string& log_path,
                               const std::string& listen_log) {
  pid_ = spawn({"--config", config_path, "serve"}, {}, "/dev/null", log_path);
  const std::string& watched = listen_log.empty() ? log_path : listen_log;
  // The daemon logs "listening on 127.0.0.1:PORT" once bound.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    const std::string log = std::filesystem::exists(watched) ? read_file(watched) : std::string();
    const auto at = log.find("listening on 127.0.0.1:");
    if (at != std::string::npos) {
      port_ = static_cast<unsigned short>(std::stoi(log.substr(at + 23)));
      constexpr std::string_view admin_line = "admin API and web page on http://127.0.0.1:";
      if (const auto a = log.find(admin_line); a != std::string::npos)
        admin_port_ = static_cast<unsigned short>(std::stoi(log.substr(a + admin_line.size())));
      return;
    }
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      reaped_ = true;
      throw std::runtime_error("pipehook exited early: " + log);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  throw std::runtime_error("pipehook did not start listening: " + read_file(log_path));
}

daemon_process::~daemon_process() {
  if (!reaped_) {
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
}

void daemon_process::signal(int sig) { ::kill(pid_, sig); }

std::optional<int> daemon_process::wait(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      reaped_ = true;
      return decode_status(status);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return std::nullopt;
}

run_result run_cli(const std::vector<std::string>& args, const std::map<std::string, std::string>& env) {
  temp_dir tmp;
  const std::string out = tmp.file("out"), err = tmp.file("err");
  const pid_t pid = spawn(args, env, out, err);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return {decode_status(status), read_file(out), read_file(err)};
}

small_disk::small_disk(const std::string& path, const std::string& size, const std::string& owner) : path_(path) {
  std::filesystem::create_directories(path_);
  if (::mount("tmpfs", path_.c_str(), "tmpfs", 0, ("size=" + size).c_str()) != 0) {
    why_ = std::string(std::strerror(errno)) + " (needs root)";
    return;
  }
  mounted_ = true;
  if (!owner.empty()) {
    const passwd* pw = ::getpwnam(owner.c_str());
    if (!pw || ::chown(path_.c_str(), pw->pw_uid, pw->pw_gid) != 0) why_ = "cannot give the mount to " + owner;
  }
}

small_disk::~small_disk() {
  if (mounted_) ::umount2(path_.c_str(), MNT_DETACH);
}

}  // namespace pipehook::test
