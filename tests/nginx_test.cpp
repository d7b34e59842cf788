// Behind a real nginx (Debian's package) started on loopback with the shipped config
// (docker/nginx/templates/pipehook.conf.template, rendered as the nginx image's envsubst does):
// webhooks through the proxy are stored; the client address comes from X-Forwarded-For only when
// pipehook trusts the proxy; the allowlist answers 403; the admin API is not reachable through
// the public server block; a large body gets nginx's JSON 413. Also: the compose file and the
// container's config are checked (no Docker engine runs here).
#include "http_sink.hpp"
#include "pipehook/store/reader.hpp"
#include "support.hpp"

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <csignal>
#include <filesystem>
#include <regex>

namespace pipehook {
namespace {

using namespace std::chrono_literals;
const std::string nginx_bin = "/usr/sbin/nginx", curl_bin = "/usr/bin/curl";

bool have(const std::string& path, const char* package) {
  if (std::filesystem::exists(path)) return true;
  if (std::getenv("CI")) ADD_FAILURE() << path << " is missing (" << package << ", scripts/install-deps.sh)";
  return false;
}

// envsubst as the nginx image runs it: only ${NAME} of the given variables; nginx's $vars stay.
std::string render(std::string text, const std::map<std::string, std::string>& vars) {
  for (const auto& [k, v] : vars) {
    const std::string key = "${" + k + "}";
    for (auto at = text.find(key); at != std::string::npos; at = text.find(key, at + v.size())) text.replace(at, key.size(), v);
  }
  return text;
}

struct run_output {
  int code = -1;
  std::string out, err;
};

run_output run(const std::string& program, const std::vector<std::string>& args, const test::temp_dir& dir) {
  static int n = 0;
  const std::string out = dir.file("run" + std::to_string(++n) + ".out"), err = dir.file("run" + std::to_string(n) + ".err");
  const int pid = test::spawn_process(program, args, {}, out, err);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, test::read_file(out), test::read_file(err)};
}

class nginx_process {
 public:
  // upstream: "127.0.0.1:PORT" or "unix:/path" (nginx's `server` syntax, as PIPEHOOK_UPSTREAM takes it)
  nginx_process(const test::temp_dir& dir, const std::string& name, const std::string& upstream) {
    const std::string root = dir.file(name);
    std::filesystem::create_directories(root + "/logs");
    const auto cert = test::make_self_signed_localhost();
    test::write_file(root + "/cert.pem", cert.cert_pem);
    test::write_file(root + "/key.pem", cert.key_pem);
    port_ = test::reserve_port();
    const std::string tmpl = test::read_file(std::string(PIPEHOOK_SOURCE_DIR) + "/docker/nginx/templates/pipehook.conf.template");
    test::write_file(root + "/pipehook.conf", render(tmpl, {{"PIPEHOOK_UPSTREAM", upstream},
                                                           {"PIPEHOOK_WEBHOOK_PATH", "/webhooks/pipedrive"},
                                                           {"NGINX_HTTPS_PORT", "127.0.0.1:" + std::to_string(port_)},
                                                           {"NGINX_SERVER_NAME", "localhost"},
                                                           {"NGINX_TLS_CERT", root + "/cert.pem"},
                                                           {"NGINX_TLS_KEY", root + "/key.pem"}}));
    // The image's nginx.conf, reduced: the http context that includes conf.d.
    test::write_file(root + "/nginx.conf", "worker_processes 1;\ndaemon off;\npid " + root + "/nginx.pid;\nerror_log " + root +
                                               "/logs/error.log warn;\nevents { worker_connections 256; }\nhttp {\n"
                                               "  access_log off;\n  client_body_temp_path " + root + "/body;\n"
                                               "  proxy_temp_path " + root + "/proxy;\n  include " + root + "/pipehook.conf;\n}\n");
    pid_ = test::spawn_process(nginx_bin, {"-p", root, "-c", root + "/nginx.conf"}, {}, root + "/logs/out", root + "/logs/err");
    ok_ = test::wait_for([&] {
      boost::asio::io_context ioc;
      boost::asio::ip::tcp::socket s(ioc);
      boost::system::error_code ec;
      s.connect({boost::asio::ip::make_address("127.0.0.1"), port_}, ec);
      return !ec;
    }, 10s);
    if (!ok_) error_ = test::read_file(root + "/logs/err") + test::read_file(root + "/logs/error.log");
  }
  ~nginx_process() {
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
  unsigned short port() const { return port_; }
  bool ok() const { return ok_; }
  const std::string& error() const { return error_; }

 private:
  int pid_ = -1;
  unsigned short port_ = 0;
  bool ok_ = false;
  std::string error_;
};

// curl through the proxy from a chosen loopback address; returns "STATUS BODY".
struct curl_reply {
  int status = 0;
  std::string body;
};
curl_reply curl(const test::temp_dir& dir, unsigned short port, const std::string& from, const std::string& method,
                const std::string& path, const std::string& body_file = "", std::vector<std::string> extra = {}) {
  std::vector<std::string> args{"-sk", "--interface", from, "-X", method, "-o", dir.file("curl.body"), "-w", "%{http_code}",
                                "https://localhost:" + std::to_string(port) + path};
  if (!body_file.empty()) {
    for (std::string a : std::vector<std::string>{"-H", "Content-Type: application/json", "-u",
                                                  test::test_user + ":" + test::test_password, "--data-binary", "@" + body_file})
      args.push_back(a);
  }
  for (auto& e : extra) args.push_back(e);
  auto r = run(curl_bin, args, dir);
  curl_reply out;
  out.status = std::atoi(r.out.c_str());
  out.body = std::filesystem::exists(dir.file("curl.body")) ? test::read_file(dir.file("curl.body")) : "";
  return out;
}

TEST(nginx, the_shipped_config_proxies_webhooks_with_the_client_address_and_keeps_the_admin_api_private) {
  if (!have(nginx_bin, "nginx-light") || !have(curl_bin, "curl")) GTEST_SKIP() << "nginx or curl missing";
  test::temp_dir dir;
  config::config c = test::test_config(dir);
  c.server.trusted_proxies = {"127.0.0.1/32"};
  c.server.allow_from = {"127.0.0.2/32"};
  test::running_daemon d(c);
  nginx_process proxy(dir, "nginx", "127.0.0.1:" + std::to_string(d.port()));
  ASSERT_TRUE(proxy.ok()) << proxy.error();

  test::write_file(dir.file("event.json"), test::v2_body("via-nginx"));
  test::write_file(dir.file("not-event.json"), R"({"hello":"proxy"})");
  auto stored = curl(dir, proxy.port(), "127.0.0.2", "POST", "/webhooks/pipedrive", dir.file("event.json"));
  EXPECT_EQ(stored.status, 200) << stored.body;
  EXPECT_NE(stored.body.find("\"stored\""), std::string::npos) << stored.body;
  // The client's own X-Forwarded-For is replaced by nginx, so it cannot claim another address.
  auto spoofed = curl(dir, proxy.port(), "127.0.0.3", "POST", "/webhooks/pipedrive", dir.file("event.json"),
                      {"-H", "X-Forwarded-For: 127.0.0.2"});
  EXPECT_EQ(spoofed.status, 403) << spoofed.body;
  EXPECT_NE(spoofed.body.find("forbidden"), std::string::npos) << spoofed.body;
  // What is recorded is the forwarded client, via the proxy.
  auto quarantined = curl(dir, proxy.port(), "127.0.0.2", "POST", "/webhooks/pipedrive", dir.file("not-event.json"));
  EXPECT_EQ(quarantined.status, 202);
  auto rd = store::reader::open(c.store.path);
  ASSERT_TRUE(rd);
  auto q = (*rd)->quarantine(std::nullopt, 1);
  ASSERT_TRUE(q && q->size() == 1);
  EXPECT_EQ((*q)[0].remote.rfind("127.0.0.2 via 127.0.0.1:", 0), 0u) << (*q)[0].remote;
  EXPECT_EQ(curl(dir, proxy.port(), "127.0.0.3", "GET", "/healthz").status, 200);

  // The admin API and metrics are not behind the public server block.
  for (const std::string path : {"/api/v1/events", "/metrics", "/", "/app.js"}) {
    auto r = curl(dir, proxy.port(), "127.0.0.2", "GET", path);
    EXPECT_EQ(r.status, 404) << path << ": " << r.body;
    EXPECT_NE(r.body.find("only the webhook endpoint"), std::string::npos) << r.body;
  }
  // A body over the proxy's limit: nginx answers 413 in JSON, pipehook never sees it.
  test::write_file(dir.file("big.json"), "{\"pad\":\"" + std::string(2 * 1024 * 1024, 'x') + "\"}");
  auto big = curl(dir, proxy.port(), "127.0.0.2", "POST", "/webhooks/pipedrive", dir.file("big.json"));
  EXPECT_EQ(big.status, 413);
  EXPECT_NE(big.body.find("larger than the proxy limit of 1 MiB"), std::string::npos) << big.body;
  // Several webhooks in a row: nginx reuses its upstream connections (keepalive), all stored.
  for (int i = 0; i < 5; ++i) {
    test::write_file(dir.file("e.json"), test::v2_body("keep-" + std::to_string(i)));
    EXPECT_EQ(curl(dir, proxy.port(), "127.0.0.2", "POST", "/webhooks/pipedrive", dir.file("e.json")).status, 200);
  }
  EXPECT_EQ((*rd)->count_events().value(), 6);
}

TEST(nginx, without_trusting_the_proxy_every_client_is_the_proxy_and_the_allowlist_refuses_them) {
  if (!have(nginx_bin, "nginx-light") || !have(curl_bin, "curl")) GTEST_SKIP() << "nginx or curl missing";
  test::temp_dir dir;
  config::config c = test::test_config(dir);
  c.server.allow_from = {"127.0.0.2/32"};  // trusted_proxies left empty
  test::running_daemon d(c);
  nginx_process proxy(dir, "nginx", "127.0.0.1:" + std::to_string(d.port()));
  ASSERT_TRUE(proxy.ok()) << proxy.error();
  test::write_file(dir.file("event.json"), test::v2_body("untrusted"));
  auto r = curl(dir, proxy.port(), "127.0.0.2", "POST", "/webhooks/pipedrive", dir.file("event.json"));
  EXPECT_EQ(r.status, 403) << r.body;  // the client seen is nginx (127.0.0.1): X-Forwarded-For ignored
  EXPECT_NE(r.body.find("127.0.0.1"), std::string::npos) << r.body;
}

TEST(nginx, proxies_to_a_unix_socket_and_trusts_its_peer_only_when_told) {
  if (!have(nginx_bin, "nginx-light") || !have(curl_bin, "curl")) GTEST_SKIP() << "nginx or curl missing";
  test::temp_dir dir;
  config::config c = test::test_config(dir);
  c.server.unix_path = dir.file("pipehook.sock");
  c.server.trusted_proxies = {"unix"};
  c.server.allow_from = {"127.0.0.2/32"};
  // nginx's workers run as another user (nobody, or www-data): they need write permission on the
  // socket. In a deployment that is a shared group (socket_mode 0660); here, as root, 0666.
  c.server.socket_mode = 0666;
  test::running_daemon d(c);
  nginx_process proxy(dir, "nginx", "unix:" + c.server.unix_path);
  ASSERT_TRUE(proxy.ok()) << proxy.error();
  test::write_file(dir.file("event.json"), test::v2_body("via-unix"));
  EXPECT_EQ(curl(dir, proxy.port(), "127.0.0.2", "POST", "/webhooks/pipedrive", dir.file("event.json")).status, 200);
  auto other = curl(dir, proxy.port(), "127.0.0.3", "POST", "/webhooks/pipedrive", dir.file("event.json"));
  EXPECT_EQ(other.status, 403);
  EXPECT_NE(other.body.find("127.0.0.3"), std::string::npos) << other.body;
  auto rd = store::reader::open(c.store.path);
  EXPECT_EQ((*rd)->count_events().value(), 1);
}

TEST(nginx, an_upstream_connection_pipehook_closed_when_idle_is_not_reused_for_a_webhook) {
  if (!have(nginx_bin, "nginx-light") || !have(curl_bin, "curl")) GTEST_SKIP() << "nginx or curl missing";
  test::temp_dir dir;
  config::config c = test::test_config(dir);
  c.server.idle_timeout_ms = 200;  // far below nginx's keepalive_timeout: pipehook closes first here
  test::running_daemon d(c);
  nginx_process proxy(dir, "nginx", "127.0.0.1:" + std::to_string(d.port()));
  ASSERT_TRUE(proxy.ok()) << proxy.error();
  for (int i = 0; i < 4; ++i) {
    test::write_file(dir.file("e.json"), test::v2_body("idle-" + std::to_string(i)));
    auto r = curl(dir, proxy.port(), "127.0.0.1", "POST", "/webhooks/pipedrive", dir.file("e.json"));
    EXPECT_EQ(r.status, 200) << "request " << i << ": " << r.body;  // never a 502 from a dead kept-alive connection
    // pipehook closes the idle upstream connection before the next request.
    ASSERT_TRUE(test::wait_for([&] { return d.connections().open == 0; }, 5s)) << "the upstream connection was not closed";
  }
  auto rd = store::reader::open(c.store.path);
  EXPECT_EQ((*rd)->count_events().value(), 4);
}

TEST(deployment_files, compose_and_the_container_config_hold_together) {
  const std::string src = PIPEHOOK_SOURCE_DIR;
  // The compose file parses as YAML and names what exists (a real YAML parser; no Docker engine here).
  const std::string script =
      "import yaml,sys,os,re,ipaddress\n"
      "c = yaml.safe_load(open(sys.argv[1]))\n"
      "base = os.path.dirname(sys.argv[1])\n"
      "assert 'name' not in c and 'profiles' not in str(c), 'podman-compose 1.0.3 ignores name: and profiles:'\n"
      "s = c['services']\n"
      "assert set(s) == {'pipehook','nginx'}, s.keys()\n"
      "n = yaml.safe_load(open(os.path.join(base, 'compose.nats.yaml')))['services']['nats']\n"
      "assert os.path.exists(os.path.join(base, n['build']['context'], 'Dockerfile'))\n"
      "assert all(p.startswith('127.0.0.1:') for p in s['pipehook'].get('ports', [])), 'admin published beyond loopback'\n"
      "assert '8080' not in str(s['pipehook'].get('ports', [])), 'webhooks published past nginx'\n"
      "assert all('${' in p for p in s['pipehook']['ports'] + s['nginx']['ports']), 'host ports must be variables'\n"
      "assert os.path.exists(os.path.join(base, s['pipehook']['build']['context'], s['pipehook']['build']['dockerfile']))\n"
      "assert os.path.exists(os.path.join(base, s['nginx']['build']['context'], 'Dockerfile')), 'nginx is built from Debian'\n"
      "assert 'image' not in s['nginx'] or s['nginx']['image'].startswith('localhost/'), 'nothing pulled'\n"
      "assert s['nginx']['depends_on']['pipehook']['condition'] == 'service_healthy'\n"
      "env = s['nginx']['environment']\n"
      "t = open(os.path.join(base, 'nginx/templates/pipehook.conf.template')).read()\n"
      "used = set(re.findall(r'\\$\\{([A-Z_]+)\\}', t))\n"
      "assert used <= set(env), used - set(env)\n"
      "assert all('networks' not in v for v in s.values()), 'podman-compose 1.0.3 cannot read per-service networks'\n"
      "subnet = c['networks']['default']['ipam']['config'][0]['subnet']\n"
      "assert ipaddress.ip_network(subnet).is_private\n"
      "penv = dict(e.split('=', 1) if '=' in e else (e, None) for e in s['pipehook']['environment'])\n"
      "assert penv['PIPEHOOK_TRUSTED_PROXIES'] == subnet, 'pipehook must trust the compose network alone'\n"
      "assert 'PIPEDRIVE_API_TOKEN' in penv and penv['PIPEDRIVE_API_TOKEN'] is None, 'the token passes through'\n"
      "ignored = open(os.path.join(base, '..', '.dockerignore')).read().split()\n"
      "assert {'docker/certs/', '.cache/', 'build*/'} <= set(ignored), ignored\n"
      "print('ok')\n";
  test::temp_dir dir;
  test::write_file(dir.file("check.py"), script);
  if (!std::filesystem::exists("/usr/bin/python3")) GTEST_SKIP() << "no python3";
  auto r = run("/usr/bin/python3", {dir.file("check.py"), src + "/docker/compose.yaml"}, dir);
  EXPECT_EQ(r.code, 0) << r.out << r.err;

  // The container's config is valid, and refuses to serve without an admin token.
  auto no_token = test::run_cli({"--config", src + "/docker/pipehook.toml", "check-config"},
                                {{"PIPEHOOK_AUTH_PASSWORD", "pw"}});
  EXPECT_EQ(no_token.exit_code, 2) << no_token.err;
  EXPECT_NE(no_token.err.find("admin token"), std::string::npos) << no_token.err;
  auto ready = test::run_cli({"--config", src + "/docker/pipehook.toml", "check-config"},
                             {{"PIPEHOOK_AUTH_PASSWORD", "pw"}, {"PIPEHOOK_ADMIN_TOKEN", "t"}});
  EXPECT_EQ(ready.exit_code, 0) << ready.err;
}

}  // namespace
}  // namespace pipehook
