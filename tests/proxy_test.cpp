// Behind a reverse proxy: address ranges, who the client is (forwarding headers believed only from
// trusted proxies), and server.allow_from answering 403 to others, over real sockets.
#include "http_sink.hpp"
#include "pipehook/core/cidr.hpp"
#include "pipehook/http/proxy.hpp"
#include "support.hpp"

#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/write.hpp>
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>

namespace pipehook {
namespace {

std::vector<cidr> ranges(std::initializer_list<const char*> texts) {
  std::vector<cidr> out;
  for (const char* t : texts) out.push_back(*parse_cidr(t, "test"));
  return out;
}

boost::asio::ip::address addr(const char* t) { return *parse_address(t); }

TEST(proxy, address_ranges) {
  const auto r = ranges({"10.0.0.0/8", "192.168.1.7", "2001:db8::/32"});
  EXPECT_TRUE(in_ranges(r, addr("10.200.3.4")));
  EXPECT_FALSE(in_ranges(r, addr("11.0.0.1")));
  EXPECT_TRUE(in_ranges(r, addr("192.168.1.7")));
  EXPECT_FALSE(in_ranges(r, addr("192.168.1.8")));
  EXPECT_TRUE(in_ranges(r, addr("2001:db8:ffff::1")));
  EXPECT_FALSE(in_ranges(r, addr("2001:db9::1")));
  EXPECT_TRUE(in_ranges(r, addr("::ffff:10.1.2.3")));  // IPv4-mapped counts as IPv4
  EXPECT_TRUE(in_ranges(ranges({"0.0.0.0/0"}), addr("8.8.8.8")));
  EXPECT_TRUE(in_ranges(ranges({"10.1.2.128/25"}), addr("10.1.2.200")));
  EXPECT_FALSE(in_ranges(ranges({"10.1.2.128/25"}), addr("10.1.2.100")));
  for (const char* bad : {"10.0.0.0/33", "10.0.0/8", "example.com", "::1/129", "10.0.0.0/", "1.2.3.4/x"})
    EXPECT_FALSE(parse_cidr(bad, "server.allow_from")) << bad;
}

TEST(proxy, forwarding_headers_are_believed_only_from_trusted_proxies) {
  const auto trusted = ranges({"127.0.0.1", "10.0.0.0/8"});
  using http::resolve_client;
  // Not from a proxy: the headers are ignored.
  auto c = resolve_client(addr("198.51.100.9"), "", "203.0.113.7", "https", trusted);
  EXPECT_EQ(c.address, "198.51.100.9");
  EXPECT_FALSE(c.forwarded);
  // From the proxy: the nearest untrusted hop, skipping trusted ones, never a spoofed left part.
  c = resolve_client(addr("127.0.0.1"), "", "6.6.6.6, 203.0.113.7, 10.1.1.1", "https", trusted);
  EXPECT_EQ(c.address, "203.0.113.7");
  EXPECT_EQ(c.proto, "https");
  EXPECT_TRUE(c.forwarded);
  // RFC 7239 wins over X-Forwarded-For; ports and brackets are stripped.
  c = resolve_client(addr("127.0.0.1"), R"(for="[2001:db8::5]:4711";proto=https, for=10.0.0.2)", "9.9.9.9", "",
                     trusted);
  EXPECT_EQ(c.address, "2001:db8::5");
  EXPECT_EQ(c.proto, "https");
  c = resolve_client(addr("127.0.0.1"), "", "203.0.113.7:5555", "", trusted);
  EXPECT_EQ(c.address, "203.0.113.7");
  // A proxy that hides the client.
  c = resolve_client(addr("127.0.0.1"), "for=unknown", "", "", trusted);
  EXPECT_EQ(c.address, "unknown");
  // A trusted proxy with no forwarding headers: the peer itself.
  c = resolve_client(addr("127.0.0.1"), "", "", "", trusted);
  EXPECT_EQ(c.address, "127.0.0.1");
  EXPECT_FALSE(c.forwarded);
}

struct allow_case {
  std::vector<std::string> trusted;
  std::map<std::string, std::string> headers;
  unsigned status;
};

TEST(proxy, allow_from_uses_the_forwarded_client_only_behind_a_trusted_proxy) {
  const std::vector<allow_case> cases = {
      {{"127.0.0.1/32"}, {{"X-Forwarded-For", "203.0.113.7"}}, 200},
      {{"127.0.0.1/32"}, {{"X-Forwarded-For", "198.51.100.1"}}, 403},
      {{"127.0.0.1/32"}, {{"Forwarded", "for=203.0.113.9;proto=https"}}, 200},
      {{"127.0.0.1/32"}, {}, 403},                                       // the proxy itself is not allowed
      {{}, {{"X-Forwarded-For", "203.0.113.7"}}, 403},                  // not a trusted proxy: header ignored
      {{"10.0.0.0/8"}, {{"X-Forwarded-For", "203.0.113.7"}}, 403},      // 127.0.0.1 is not among the trusted
  };
  for (const auto& k : cases) {
    SCOPED_TRACE(k.trusted.empty() ? "no trusted proxy" : k.trusted[0]);
    test::temp_dir dir;
    auto c = test::test_config(dir);
    c.server.trusted_proxies = k.trusted;
    c.server.allow_from = {"203.0.113.0/24"};
    test::running_daemon d(c);
    test::http_client client(d.port());
    auto headers = k.headers;
    headers["Authorization"] = test::basic_auth(test::test_user, test::test_password);
    headers["Content-Type"] = "application/json";
    auto r = client.request("POST", "/webhooks/pipedrive", test::v2_body("evt-1"), headers);
    EXPECT_EQ(r.status, k.status) << r.body;
    if (k.status == 403) {
      EXPECT_NE(r.body.find("is not in server.allow_from"), std::string::npos) << r.body;
    }
    // Health checks are not subject to the allowlist (the proxy and the container probe them).
    EXPECT_EQ(client.request("GET", "/healthz").status, 200u);
  }
}

TEST(proxy, config_checks_the_ranges) {
  auto env = [](const std::string&) -> std::optional<std::string> { return std::nullopt; };
  auto bad = config::parse_config("[server]\nallow_from = [\"10.0.0.0/40\"]", "t.toml", env);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("server.allow_from: \"10.0.0.0/40\" is not an address range"), std::string::npos);
  auto ok = config::parse_config("[server]\ntrusted_proxies = [\"127.0.0.1\", \"::1\"]\nallow_from = \"203.0.113.0/24\"",
                                 "t.toml", env);
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ(ok->server.trusted_proxies.size(), 2u);
  EXPECT_EQ(ok->server.allow_from, std::vector<std::string>{"203.0.113.0/24"});
}

}  // namespace
}  // namespace pipehook

namespace pipehook {
namespace {

// One request over a Unix socket ("Connection: close"); the raw response.
std::string unix_request(const std::string& path, const std::string& request) {
  boost::asio::io_context ioc;
  boost::asio::local::stream_protocol::socket s(ioc);
  s.connect(boost::asio::local::stream_protocol::endpoint(path));
  boost::asio::write(s, boost::asio::buffer(request));
  std::string out;
  boost::system::error_code ec;
  char buf[4096];
  for (;;) {
    const auto n = s.read_some(boost::asio::buffer(buf), ec);
    out.append(buf, n);
    if (ec) break;
  }
  return out;
}

std::string post(const std::string& body, const std::string& extra_headers = "") {
  return "POST /webhooks/pipedrive HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
         "Authorization: " + test::basic_auth(test::test_user, test::test_password) + "\r\n" + extra_headers +
         "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

TEST(unix_socket, serves_webhooks_replaces_a_stale_socket_refuses_a_live_one_and_removes_it_on_stop) {
  test::temp_dir dir;
  config::config c = test::test_config(dir);
  c.server.unix_path = dir.file("hooks.sock");
  // A socket file left behind by a process that died: bound, never listened on, closed.
  {
    boost::asio::io_context ioc;
    boost::asio::local::stream_protocol::acceptor stale(ioc);
    stale.open();
    stale.bind(boost::asio::local::stream_protocol::endpoint(c.server.unix_path));
  }
  ASSERT_TRUE(std::filesystem::exists(c.server.unix_path));
  auto d = std::make_unique<test::running_daemon>(c);
  EXPECT_EQ(std::filesystem::status(c.server.unix_path).permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write | std::filesystem::perms::group_read |
                std::filesystem::perms::group_write);  // 0660
  const std::string r = unix_request(c.server.unix_path, post(test::v2_body("over-unix")));
  EXPECT_EQ(r.rfind("HTTP/1.1 200", 0), 0u) << r;
  EXPECT_NE(r.find("\"stored\""), std::string::npos) << r;
  // The same path while this one serves: refused with a clear error.
  auto second = cli::daemon::create(c);
  ASSERT_FALSE(second);
  EXPECT_NE(second.error().message.find("another server is listening"), std::string::npos) << second.error().message;
  d->stop_and_wait();
  d.reset();
  EXPECT_FALSE(std::filesystem::exists(c.server.unix_path));
  // A regular file in the way is never deleted.
  test::write_file(c.server.unix_path, "precious");
  auto blocked = cli::daemon::create(c);
  ASSERT_FALSE(blocked);
  EXPECT_NE(blocked.error().message.find("not a socket"), std::string::npos);
  EXPECT_EQ(test::read_file(c.server.unix_path), "precious");
}

using namespace std::chrono_literals;

// systemd socket activation, as systemd does it: a listening socket as fd 3, LISTEN_FDS=1,
// LISTEN_PID = the pid that execs pipehook, LISTEN_FDNAMES. server.listen is then ignored.
TEST(socket_activation, serves_on_the_socket_systemd_passes_and_ignores_server_listen) {
  for (const std::string kind : {"tcp", "unix"}) {
    SCOPED_TRACE(kind);
    test::temp_dir dir;
    boost::asio::io_context ioc;
    boost::asio::ip::tcp::acceptor tcp_acc(ioc);
    boost::asio::local::stream_protocol::acceptor unix_acc(ioc);
    int fd = -1;
    if (kind == "tcp") {
      tcp_acc.open(boost::asio::ip::tcp::v4());
      tcp_acc.bind({boost::asio::ip::make_address("127.0.0.1"), 0});
      tcp_acc.listen();
      fd = tcp_acc.native_handle();
    } else {
      unix_acc.open();
      unix_acc.bind(boost::asio::local::stream_protocol::endpoint(dir.file("activated.sock")));
      unix_acc.listen();
      fd = unix_acc.native_handle();
    }
    test::write_file(dir.file("p.toml"), "[admin]\nlisten = \"127.0.0.1:0\"\n[server]\nlisten = \"127.0.0.1:1\"\n[auth]\npassword = \"" +
                                             test::test_password + "\"\n[store]\npath = \"" + dir.file("e.db") + "\"\n");
    // Everything prepared before fork: the child only dup2()s, opens its log and execs a shell
    // that sets LISTEN_PID to its own pid ($$) and execs pipehook under that same pid.
    const std::string script = "LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=webhook exec \"$0\" \"$@\"";
    std::vector<std::string> argv_s{"/bin/sh", "-c", script, PIPEHOOK_BINARY, "--config", dir.file("p.toml"), "serve"};
    std::vector<char*> argv;
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    const std::string log = dir.file("log");
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::dup2(fd, 3);
      const int err = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(err, 2);
      ::execv("/bin/sh", argv.data());
      ::_exit(127);
    }
    ASSERT_GT(pid, 0);
    const bool up = test::wait_for([&] { return test::read_file(log).find("listening on") != std::string::npos; }, 10s);
    std::string reply;
    if (up && kind == "tcp") {
      test::http_client client(tcp_acc.local_endpoint().port());
      auto r = client.post(test::v2_body("activated"), test::basic_auth(test::test_user, test::test_password));
      reply = std::to_string(r.status) + " " + r.body;
    } else if (up) {
      reply = unix_request(dir.file("activated.sock"), post(test::v2_body("activated")));
    }
    ::kill(pid, SIGTERM);
    int status = 0;
    ::waitpid(pid, &status, 0);
    const std::string text = test::read_file(log);
    ASSERT_TRUE(up) << text;
    EXPECT_NE(reply.find("\"stored\""), std::string::npos) << reply << "\n" << text;
    EXPECT_NE(text.find(kind == "tcp" ? "(socket-activated)" : "a Unix socket passed by systemd"), std::string::npos) << text;
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << text;
    if (kind == "unix") {
      EXPECT_TRUE(std::filesystem::exists(dir.file("activated.sock")));  // systemd's file: left alone
    }
  }
}

TEST(unix_socket, forwarding_headers_from_unix_peers_count_only_when_trusted) {
  for (const bool trusted : {false, true}) {
    SCOPED_TRACE(trusted ? "trusted" : "not trusted");
    test::temp_dir dir;
    config::config c = test::test_config(dir);
    c.server.unix_path = dir.file("hooks.sock");
    c.server.allow_from = {"203.0.113.0/24"};
    if (trusted) c.server.trusted_proxies = {"unix"};
    test::running_daemon d(c);
    const std::string r =
        unix_request(c.server.unix_path, post(test::v2_body("fwd"), "X-Forwarded-For: 203.0.113.7\r\n"));
    if (trusted) {
      EXPECT_EQ(r.rfind("HTTP/1.1 200", 0), 0u) << r;
    } else {
      EXPECT_EQ(r.rfind("HTTP/1.1 403", 0), 0u) << r;
      EXPECT_NE(r.find("the client address unix is not in server.allow_from"), std::string::npos) << r;
    }
  }
  auto env = [](const std::string&) -> std::optional<std::string> { return std::nullopt; };
  EXPECT_TRUE(config::parse_config("[server]\nlisten = \"unix:/run/p.sock\"\ntrusted_proxies = [\"unix\"]\nsocket_mode = \"0600\"",
                                   "t.toml", env));
  for (const auto& [text, message] : std::vector<std::pair<std::string, std::string>>{
           {"[server]\nlisten = \"unix:relative.sock\"", "absolute path"},
           {"[server]\nsocket_mode = \"rw\"", "server.socket_mode must be octal"},
           {"[server]\nallow_from = [\"unix\"]", "server.allow_from"}}) {
    auto r = config::parse_config(text, "t.toml", env);
    ASSERT_FALSE(r) << text;
    EXPECT_NE(r.error().message.find(message), std::string::npos) << r.error().message;
  }
}

}  // namespace
}  // namespace pipehook
