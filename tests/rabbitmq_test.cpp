// The rabbitmq handler against a real RabbitMQ (Debian's rabbitmq-server) started by the test on
// loopback ports, as the unprivileged `rabbitmq` user when the tests run as root: events arrive as
// persistent messages with the right routing keys, message ids and headers; a message no queue
// takes is returned and retried, not counted done; a broker killed (SIGKILL) and restarted in the
// middle of a stream loses nothing that was marked done.
#include "pipehook/store/outbox.hpp"
#include "pipehook/store/reader.hpp"
#include "http_sink.hpp"
#include "pg_server.hpp"
#include "support.hpp"

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <boost/asio/ip/tcp.hpp>
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <map>
#include <pwd.h>
#include <set>
#include <sys/wait.h>
#include <unistd.h>

namespace pipehook {
namespace {

const std::string broker_script = "/usr/lib/rabbitmq/bin/rabbitmq-server";

using test::port_open;

// A broker of its own: node name, ports (AMQP, distribution, epmd) and data under `dir`.
class rabbitmq_broker {
 public:
  rabbitmq_broker() : port_(test::reserve_port()), dist_port_(test::reserve_port()), epmd_port_(test::reserve_port()) {
    char tmpl[] = "/tmp/pipehook-rabbitmq-XXXXXX";  // a directory the broker's user can reach
    if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
    dir_ = tmpl;
    test::write_file(dir_ + "/rabbitmq.conf", "loopback_users = none\nlisteners.tcp.default = 127.0.0.1:" +
                                                  std::to_string(port_) + "\n");
    test::write_file(dir_ + "/enabled_plugins", "[].\n");
    if (::geteuid() == 0) {  // the broker runs as `rabbitmq` (the package's user), never as root
      const passwd* pw = ::getpwnam("rabbitmq");
      if (pw)
        for (const auto& e : std::filesystem::recursive_directory_iterator(dir_)) ::chown(e.path().c_str(), pw->pw_uid, pw->pw_gid);
      if (pw) ::chown(dir_.c_str(), pw->pw_uid, pw->pw_gid);
    }
  }
  ~rabbitmq_broker() {
    stop(SIGTERM);
    // epmd outlives the node (erl starts it as a daemon): it goes too.
    const int pid = test::spawn_process("/usr/bin/epmd", {"-port", std::to_string(epmd_port_), "-kill"}, {},
                                        dir_ + "/epmd-kill.log", dir_ + "/epmd-kill.err");
    int status = 0;
    if (pid > 0) ::waitpid(pid, &status, 0);
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  unsigned short port() const { return port_; }

  void start() {
    const std::map<std::string, std::string> env = {
        {"HOME", dir_},
        {"RABBITMQ_NODENAME", "pipehook-test-" + std::to_string(port_) + "@localhost"},
        {"RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1"},
        {"RABBITMQ_NODE_PORT", std::to_string(port_)},
        {"RABBITMQ_DIST_PORT", std::to_string(dist_port_)},
        {"ERL_EPMD_PORT", std::to_string(epmd_port_)},
        {"ERL_EPMD_ADDRESS", "127.0.0.1"},
        {"RABBITMQ_MNESIA_BASE", dir_ + "/mnesia"},
        {"RABBITMQ_LOG_BASE", dir_ + "/log"},
        {"RABBITMQ_CONFIG_FILE", dir_ + "/rabbitmq"},
        {"RABBITMQ_ENABLED_PLUGINS_FILE", dir_ + "/enabled_plugins"},
        {"RABBITMQ_PID_FILE", dir_ + "/rabbitmq.pid"},
        {"RABBITMQ_CONF_ENV_FILE", dir_ + "/no-env-file"},
        {"RABBITMQ_ADVANCED_CONFIG_FILE", dir_ + "/no-advanced.config"},
    };
    if (::geteuid() == 0) {
      std::vector<std::string> args = {"-u", "rabbitmq", "--", "/usr/bin/env"};
      for (const auto& [k, v] : env) args.push_back(k + "=" + v);
      args.push_back(broker_script);
      pid_ = test::spawn_process("/usr/sbin/runuser", args, {}, dir_ + "/broker.log", dir_ + "/broker.err", true);
    } else {
      pid_ = test::spawn_process(broker_script, {}, env, dir_ + "/broker.log", dir_ + "/broker.err", true);
    }
  }
  bool ready() const { return pid_ > 0 && test::wait_for([&] { return port_open(port_); }, std::chrono::seconds(90)); }
  void stop(int sig) {
    if (pid_ <= 0) return;
    ::kill(-pid_, sig);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    // The node is gone when its port is (beam may outlive the script a moment).
    test::wait_for([&] { return !port_open(port_); }, std::chrono::seconds(30));
    pid_ = -1;
  }
  std::string log() const { return test::read_file(dir_ + "/broker.log") + test::read_file(dir_ + "/broker.err"); }

 private:
  std::string dir_;
  unsigned short port_, dist_port_, epmd_port_;
  pid_t pid_ = -1;
};

struct received {
  std::string routing_key, message_id, body;
  int delivery_mode = 0;
  std::map<std::string, std::string> headers;
};

// Every message in `queue`, taken with basic.get (and acknowledged).
std::vector<received> drain(unsigned short port, const std::string& queue) {
  std::vector<received> out;
  amqp_connection_state_t conn = amqp_new_connection();
  amqp_socket_t* sock = amqp_tcp_socket_new(conn);
  if (amqp_socket_open(sock, "127.0.0.1", port) != AMQP_STATUS_OK) {
    amqp_destroy_connection(conn);
    return out;
  }
  amqp_login(conn, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, "guest", "guest");
  amqp_channel_open(conn, 1);
  amqp_get_rpc_reply(conn);
  for (;;) {
    amqp_rpc_reply_t r = amqp_basic_get(conn, 1, amqp_cstring_bytes(queue.c_str()), 1);
    if (r.reply_type != AMQP_RESPONSE_NORMAL || r.reply.id != AMQP_BASIC_GET_OK_METHOD) break;
    const auto* ok = static_cast<amqp_basic_get_ok_t*>(r.reply.decoded);
    received m;
    m.routing_key.assign(static_cast<const char*>(ok->routing_key.bytes), ok->routing_key.len);
    amqp_message_t msg;
    if (amqp_read_message(conn, 1, &msg, 0).reply_type != AMQP_RESPONSE_NORMAL) break;
    m.body.assign(static_cast<const char*>(msg.body.bytes), msg.body.len);
    if (msg.properties._flags & AMQP_BASIC_MESSAGE_ID_FLAG)
      m.message_id.assign(static_cast<const char*>(msg.properties.message_id.bytes), msg.properties.message_id.len);
    if (msg.properties._flags & AMQP_BASIC_DELIVERY_MODE_FLAG) m.delivery_mode = msg.properties.delivery_mode;
    if (msg.properties._flags & AMQP_BASIC_HEADERS_FLAG)
      for (int i = 0; i < msg.properties.headers.num_entries; ++i) {
        const auto& e = msg.properties.headers.entries[i];
        if (e.value.kind == AMQP_FIELD_KIND_UTF8 || e.value.kind == AMQP_FIELD_KIND_BYTES)
          m.headers[std::string(static_cast<const char*>(e.key.bytes), e.key.len)] =
              std::string(static_cast<const char*>(e.value.value.bytes.bytes), e.value.value.bytes.len);
      }
    amqp_destroy_message(&msg);
    out.push_back(std::move(m));
  }
  amqp_channel_close(conn, 1, AMQP_REPLY_SUCCESS);
  amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
  amqp_destroy_connection(conn);
  return out;
}

config::handler_config rabbit_handler(const std::string& name, unsigned short port, const std::string& exchange,
                                      const std::string& queue) {
  config::handler_config h;
  h.name = name;
  h.type = "rabbitmq";
  h.where = "handlers." + name;
  h.concurrency = 8;
  h.retry.schedule_ms = {200};
  h.pause_after = 0;  // the broker's restart is the subject here, not the breaker
  h.settings["url"] = "amqp://guest:${PIPEHOOK_TEST_RABBIT_PASSWORD}@127.0.0.1:" + std::to_string(port) + "/";
  h.settings["exchange"] = exchange;
  h.settings["routing_key"] = std::string("pipedrive.{entity}.{action}");
  h.settings["declare"] = true;
  if (!queue.empty()) h.settings["queue"] = queue;
  h.settings["timeout"] = std::string("3s");
  return h;
}

std::set<std::string> stored_keys(const store::location& where) {
  std::set<std::string> keys;
  auto rd = store::reader::open(where);
  if (!rd) return keys;
  store::event_filter all;
  all.limit = 1000;
  auto events = (*rd)->list(all, false);
  if (events)
    for (const auto& e : *events) keys.insert(e.ev.event_key);
  return keys;
}

store::handler_counts counts_for(const store::location& where, const std::string& handler) {
  return test::counts_of(where, handler);
}

TEST(rabbitmq_handler, publishes_confirmed_persistent_messages_and_loses_nothing_when_the_broker_is_killed) {
  if (::access(broker_script.c_str(), X_OK) != 0) {
    if (std::getenv("CI")) FAIL() << "rabbitmq-server is not installed (" << broker_script << ")";
    GTEST_SKIP() << "rabbitmq-server is not installed (scripts/install-deps.sh installs it)";
  }
  ::setenv("PIPEHOOK_TEST_RABBIT_PASSWORD", "guest", 1);
  test::temp_dir dir;
  rabbitmq_broker broker;
  broker.start();
  ASSERT_TRUE(broker.ready()) << broker.log();

  auto c = test::test_config(dir);
  // "unrouted": its exchange has no queue bound, so every message comes back (mandatory).
  c.handlers = {rabbit_handler("rabbit", broker.port(), "pipedrive", "pipehook-events"),
                rabbit_handler("unrouted", broker.port(), "nowhere", "")};
  c.handlers[1].match.entity = {"person"};
  const store::location where = test::location_of(c);
  auto d = std::make_unique<test::running_daemon>(c);
  auto client = std::make_unique<test::http_client>(d->port());
  const auto auth = test::basic_auth(test::test_user, test::test_password);

  // 50 events: 40 deal changes, 10 person creations.
  for (int i = 0; i < 50; ++i) {
    const bool person = i % 5 == 0;
    ASSERT_EQ(client->post(test::v2("rmq-" + std::to_string(i), person ? "person" : "deal", std::to_string(i),
                                    person ? "create" : "change", "{\"id\":" + std::to_string(i) + "}", person ? "null" : "{}"),
                           auth).status, 200u);
  }
  ASSERT_TRUE(test::wait_for([&] { return counts_for(where, "rabbit").done == 50; }, std::chrono::seconds(30)))
      << counts_for(where, "rabbit").last_error;
  auto msgs = drain(broker.port(), "pipehook-events");
  ASSERT_EQ(msgs.size(), 50u);
  const auto keys = stored_keys(where);
  std::set<std::string> bodies;
  if (auto rd = store::reader::open(where); rd)
    if (auto events = (*rd)->list({}, true); events)  // 50: the filter's default limit
      for (const auto& e : *events) bodies.insert(e.ev.body);
  std::set<std::string> ids;
  std::map<std::string, int> by_key;
  for (const auto& m : msgs) {
    ids.insert(m.message_id);
    ++by_key[m.routing_key];
    EXPECT_EQ(m.delivery_mode, 2) << "not persistent";
    EXPECT_EQ(m.headers.at("pipehook-entity") + "." + m.headers.at("pipehook-action"),
              m.routing_key.substr(std::string("pipedrive.").size()));
    EXPECT_FALSE(m.headers.at("pipehook-event-id").empty());
    EXPECT_EQ(bodies.count(m.body), 1u) << "not an original body: " << m.body.substr(0, 80);
  }
  EXPECT_EQ(ids, keys);
  EXPECT_EQ(by_key, (std::map<std::string, int>{{"pipedrive.deal.change", 40}, {"pipedrive.person.create", 10}}));
  // Returned (no queue bound): retried, never done.
  ASSERT_TRUE(test::wait_for([&] { return counts_for(where, "unrouted").retrying == 10; }, std::chrono::seconds(15)));
  EXPECT_EQ(counts_for(where, "unrouted").done, 0);
  EXPECT_NE(counts_for(where, "unrouted").last_error.find("to no queue"), std::string::npos)
      << counts_for(where, "unrouted").last_error;

  // The broker killed mid-stream: what was marked done before is in the (durable) queue after
  // the restart; what was not confirmed is retried until it is.
  for (int i = 0; i < 60; ++i)
    ASSERT_EQ(client->post(test::v2("kill-" + std::to_string(i), "deal", std::to_string(100 + i), "change", "{}", "{}"), auth).status,
              200u);
  ASSERT_TRUE(test::wait_for([&] { return counts_for(where, "rabbit").done >= 60; }, std::chrono::seconds(30)));
  broker.stop(SIGKILL);
  for (int i = 60; i < 100; ++i)
    ASSERT_EQ(client->post(test::v2("kill-" + std::to_string(i), "deal", std::to_string(100 + i), "change", "{}", "{}"), auth).status,
              200u);
  ASSERT_TRUE(test::wait_for([&] { return counts_for(where, "rabbit").retrying > 0; }, std::chrono::seconds(15)));
  const auto done_while_down = counts_for(where, "rabbit").done;
  broker.start();
  ASSERT_TRUE(broker.ready()) << broker.log();
  ASSERT_TRUE(test::wait_for([&] { return counts_for(where, "rabbit").done == 150; }, std::chrono::seconds(60)))
      << counts_for(where, "rabbit").last_error;
  EXPECT_GE(done_while_down, 60);
  msgs = drain(broker.port(), "pipehook-events");
  std::set<std::string> after;
  for (const auto& m : msgs) after.insert(m.message_id);
  std::set<std::string> missing;
  for (const auto& k : stored_keys(where))
    if (!ids.count(k) && !after.count(k)) missing.insert(k);
  EXPECT_TRUE(missing.empty()) << missing.size() << " acknowledged events are not in the queue after the broker's restart";
  EXPECT_GE(msgs.size(), 100u);  // at least once: a message confirmed as the broker died may come twice
  client.reset();
  d.reset();
}

}  // namespace
}  // namespace pipehook
