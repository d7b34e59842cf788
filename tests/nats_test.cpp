// The nats handler against a real `nats-server -js` started by the test on 127.0.0.1: events
// arrive on the right subjects with Nats-Msg-Id = event key, a redelivery of the same events is
// dropped by JetStream's duplicate window, and a server stopped and restarted mid-run loses nothing.
#include "http_sink.hpp"
#include "pipehook/dispatch/handler.hpp"
#include "pipehook/store/outbox.hpp"
#include "support.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <gtest/gtest.h>
#include <nats/nats.h>
#include <openssl/evp.h>

#include <csignal>
#include <set>
#include <sys/wait.h>

namespace pipehook {
namespace {

std::string nats_server_path() {
  if (const char* p = std::getenv("PIPEHOOK_NATS_SERVER")) return p;
  return PIPEHOOK_NATS_SERVER;
}

using test::port_open;

// Every test needs the nats-server binary; CI must have it (scripts/install-deps.sh installs it).
struct nats_handler : ::testing::Test {
  void SetUp() override {
    if (::access(nats_server_path().c_str(), X_OK) == 0) return;
    if (std::getenv("CI")) FAIL() << "nats-server is not installed at " << nats_server_path();
    GTEST_SKIP() << "nats-server is not installed (scripts/install-deps.sh installs it)";
  }
};

class nats_server {
 public:
  nats_server(unsigned short port, const std::string& store_dir, const std::string& log)
      : nats_server(port, {"-js", "-a", "127.0.0.1", "-p", std::to_string(port), "-sd", store_dir}, log) {}
  nats_server(unsigned short port, const std::vector<std::string>& args, const std::string& log) : port_(port) {
    pid_ = test::spawn_process(nats_server_path(), args, {}, log, log + ".err", true);
  }
  ~nats_server() { stop(); }
  bool ready() const { return pid_ > 0 && test::wait_for([&] { return port_open(port_); }, std::chrono::seconds(20)); }
  void stop() {
    if (pid_ <= 0) return;
    ::kill(-pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }

 private:
  unsigned short port_;
  pid_t pid_ = -1;
};

// What the stream holds, read back with the NATS C client.
struct stream_message {
  std::string subject, msg_id, body;
};

std::vector<stream_message> read_stream(unsigned short port, const std::string& stream) {
  std::vector<stream_message> out;
  natsConnection* nc = nullptr;
  const std::string url = "nats://127.0.0.1:" + std::to_string(port);
  if (natsConnection_ConnectTo(&nc, url.c_str()) != NATS_OK) return out;
  jsCtx* js = nullptr;
  natsConnection_JetStream(&js, nc, nullptr);
  jsStreamInfo* si = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  if (js_GetStreamInfo(&si, js, stream.c_str(), nullptr, &jerr) == NATS_OK) {
    for (std::uint64_t seq = si->State.FirstSeq; seq <= si->State.LastSeq && si->State.Msgs > 0; ++seq) {
      natsMsg* msg = nullptr;
      if (js_GetMsg(&msg, js, stream.c_str(), seq, nullptr, &jerr) != NATS_OK) continue;
      stream_message m;
      m.subject = natsMsg_GetSubject(msg);
      const char* id = nullptr;
      if (natsMsgHeader_Get(msg, "Nats-Msg-Id", &id) == NATS_OK && id) m.msg_id = id;
      m.body.assign(natsMsg_GetData(msg), static_cast<std::size_t>(natsMsg_GetDataLength(msg)));
      out.push_back(std::move(m));
      natsMsg_Destroy(msg);
    }
    jsStreamInfo_Destroy(si);
  }
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  return out;
}

using test::counts_of;

TEST_F(nats_handler, publishes_to_jetstream_drops_redeliveries_and_survives_a_server_restart) {
  test::temp_dir dir;
  const unsigned short port = test::reserve_port();
  std::filesystem::create_directories(dir.path / "js");
  auto server = std::make_unique<nats_server>(port, dir.file("js"), dir.file("nats.log"));
  ASSERT_TRUE(server->ready()) << test::read_file(dir.file("nats.log.err"));

  auto c = test::test_config(dir);
  config::handler_config h;
  h.name = "stream";
  h.type = "nats";
  h.where = "handlers.stream";
  h.concurrency = 4;
  h.retry.schedule_ms = {200};
  h.settings["url"] = "nats://127.0.0.1:" + std::to_string(port);
  h.settings["create_stream"] = true;
  h.settings["timeout"] = std::string("1s");
  c.handlers = {h};
  const std::string cfg_path = dir.file("p.toml");
  test::write_file(cfg_path, "[store]\npath = \"" + c.store.path +
                                 "\"\n[[handlers]]\nname = \"stream\"\ntype = \"nats\"\n");

  test::running_daemon d(c);
  test::http_client client(d.port());
  const auto auth = test::basic_auth(test::test_user, test::test_password);
  std::set<std::string> expected_subjects;
  for (const char* name : {"v2-change-deal.json", "v2-change-lead.json", "v2-create-activity.json", "v2-delete-note.json",
                           "v2-change-organization.json"})
    ASSERT_EQ(client.post(test::samples().at(name), auth).status, 200u) << name;
  expected_subjects = {"pipedrive.deal.change", "pipedrive.lead.change", "pipedrive.activity.create",
                       "pipedrive.note.delete", "pipedrive.organization.change"};
  ASSERT_TRUE(test::wait_for([&] { return counts_of(c.store.path).done == 5; }, std::chrono::seconds(15)))
      << counts_of(c.store.path).last_error;

  auto msgs = read_stream(port, "PIPEDRIVE");
  ASSERT_EQ(msgs.size(), 5u);
  std::set<std::string> subjects, ids;
  for (const auto& m : msgs) subjects.insert(m.subject), ids.insert(m.msg_id);
  EXPECT_EQ(subjects, expected_subjects);
  auto rd = store::reader::open(c.store.path);
  ASSERT_TRUE(rd);
  auto events = (*rd)->list({}, true);
  ASSERT_TRUE(events);
  std::set<std::string> keys, bodies;
  for (const auto& e : *events) keys.insert(e.ev.event_key), bodies.insert(e.ev.body);
  EXPECT_EQ(ids, keys);
  for (const auto& m : msgs) EXPECT_EQ(bodies.count(m.body), 1u);

  // Redelivery of the same events: JetStream drops them (same Nats-Msg-Id in its window).
  auto replay = test::run_cli({"-c", cfg_path, "events", "replay", "--handler", "stream"});
  ASSERT_EQ(replay.exit_code, 0) << replay.err;
  ASSERT_TRUE(test::wait_for(
      [&] {
        auto n = counts_of(c.store.path);
        return n.done == 5 && n.pending == 0 && n.retrying == 0;
      },
      std::chrono::seconds(15)));
  EXPECT_EQ(read_stream(port, "PIPEDRIVE").size(), 5u);

  // The server goes away mid-run: events keep being acknowledged and wait in the outbox.
  server.reset();
  for (int i = 0; i < 10; ++i)
    ASSERT_EQ(client.post(test::v2_body("during-outage-" + std::to_string(i), "deal", std::to_string(100 + i)), auth).status,
              200u);
  // Each event of the outage has been tried and failed at least once.
  ASSERT_TRUE(test::wait_for([&] { return counts_of(c.store.path).retrying == 10; }, std::chrono::seconds(15)))
      << counts_of(c.store.path).retrying;
  EXPECT_EQ(counts_of(c.store.path).done, 5);
  server = std::make_unique<nats_server>(port, dir.file("js"), dir.file("nats2.log"));
  ASSERT_TRUE(server->ready());
  ASSERT_TRUE(test::wait_for(
      [&] {
        auto n = counts_of(c.store.path);
        return n.done == 15 && n.pending == 0 && n.retrying == 0;
      },
      std::chrono::seconds(30)))
      << counts_of(c.store.path).last_error;
  msgs = read_stream(port, "PIPEDRIVE");
  std::set<std::string> all_ids;
  for (const auto& m : msgs) all_ids.insert(m.msg_id);
  EXPECT_EQ(all_ids.size(), 15u);  // nothing lost
  EXPECT_EQ(msgs.size(), 15u);     // and nothing twice
}

// NATS nkeys (github.com/nats-io/nkeys): base32 (RFC 4648, unpadded) of prefix byte(s), the
// 32-byte key and a CRC-16/XMODEM, little-endian.
std::string nkey_encode(const std::vector<unsigned char>& prefix, const unsigned char* key) {
  std::vector<unsigned char> raw(prefix);
  raw.insert(raw.end(), key, key + 32);
  std::uint16_t crc = 0;
  for (unsigned char b : raw) {
    crc ^= static_cast<std::uint16_t>(b) << 8;
    for (int i = 0; i < 8; ++i) crc = (crc & 0x8000) ? static_cast<std::uint16_t>((crc << 1) ^ 0x1021) : static_cast<std::uint16_t>(crc << 1);
  }
  raw.push_back(static_cast<unsigned char>(crc & 0xff));
  raw.push_back(static_cast<unsigned char>(crc >> 8));
  static constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  std::string out;
  unsigned buffer = 0;
  int bits = 0;
  for (unsigned char b : raw) {
    buffer = (buffer << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(buffer >> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += alphabet[(buffer << (5 - bits)) & 31];
  return out;
}

// A user nkey pair: the public key ("U...") and the seed ("SU...").
std::pair<std::string, std::string> make_user_nkey() {
  unsigned char seed[32];
  for (auto& b : seed) b = static_cast<unsigned char>(std::rand());
  EVP_PKEY* k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, seed, sizeof seed);
  unsigned char pub[32];
  std::size_t len = sizeof pub;
  EVP_PKEY_get_raw_public_key(k, pub, &len);
  EVP_PKEY_free(k);
  constexpr unsigned char user = 20 << 3, seed_prefix = 18 << 3;
  return {nkey_encode({user}, pub),
          nkey_encode({static_cast<unsigned char>(seed_prefix | (user >> 5)), static_cast<unsigned char>((user & 31) << 3)}, seed)};
}

// A server that requires TLS with a client certificate and an nkey: the handler with all three
// publishes; one without the nkey is refused (retried, never done).
TEST_F(nats_handler, connects_with_tls_a_client_certificate_and_an_nkey) {
  test::temp_dir dir;
  const unsigned short port = test::reserve_port();
  std::filesystem::create_directories(dir.path / "js");
  const auto server_cert = test::make_self_signed_localhost();
  const auto client_cert = test::make_self_signed_localhost();
  test::write_file(dir.file("server.pem"), server_cert.cert_pem);
  test::write_file(dir.file("server.key"), server_cert.key_pem);
  test::write_file(dir.file("client.pem"), client_cert.cert_pem);
  test::write_file(dir.file("client.key"), client_cert.key_pem);
  const auto [nkey, seed] = make_user_nkey();
  test::write_file(dir.file("user.nk"), seed + "\n");
  test::write_file(dir.file("nats.conf"),
                   "listen: 127.0.0.1:" + std::to_string(port) + "\njetstream { store_dir: \"" + dir.file("js") + "\" }\n" +
                       "authorization { users = [ { nkey: " + nkey + " } ] }\n" + "tls { cert_file: \"" +
                       dir.file("server.pem") + "\"\n key_file: \"" + dir.file("server.key") + "\"\n ca_file: \"" +
                       dir.file("client.pem") + "\"\n verify: true }\n");
  nats_server server(port, {"-c", dir.file("nats.conf")}, dir.file("nats.log"));
  ASSERT_TRUE(server.ready()) << test::read_file(dir.file("nats.log.err"));

  auto c = test::test_config(dir);
  config::handler_config h;
  h.name = "secure";
  h.type = "nats";
  h.where = "handlers.secure";
  h.retry.schedule_ms = {200};
  h.settings["url"] = "tls://localhost:" + std::to_string(port);
  h.settings["create_stream"] = true;
  h.settings["timeout"] = std::string("2s");
  h.settings["ca_file"] = dir.file("server.pem");
  h.settings["client_cert"] = dir.file("client.pem");
  h.settings["client_key"] = dir.file("client.key");
  h.settings["nkey"] = nkey;
  h.settings["nkey_seed_file"] = dir.file("user.nk");
  auto anonymous = h;
  anonymous.name = "anonymous";
  anonymous.where = "handlers.anonymous";
  anonymous.settings.erase("nkey");
  anonymous.settings.erase("nkey_seed_file");
  anonymous.pause_after = 0;
  c.handlers = {h, anonymous};
  test::running_daemon d(c);
  test::http_client client(d.port());
  const auto auth = test::basic_auth(test::test_user, test::test_password);
  for (int i = 0; i < 3; ++i)
    ASSERT_EQ(client.post(test::v2_body("nk-" + std::to_string(i), "deal", std::to_string(i)), auth).status, 200u);
  auto count = [&](const std::string& name) { return test::counts_of(c.store.path, name); };
  ASSERT_TRUE(test::wait_for([&] { return count("secure").done == 3; }, std::chrono::seconds(20))) << count("secure").last_error;
  ASSERT_TRUE(test::wait_for([&] { return count("anonymous").retrying == 3; }, std::chrono::seconds(20)));
  EXPECT_EQ(count("anonymous").done, 0);
  EXPECT_NE(count("anonymous").last_error.find("tls://localhost:" + std::to_string(port)), std::string::npos)
      << count("anonymous").last_error;  // the server closes the connection of a client without the nkey

  // Settings that cannot work are refused when the handler is built, each named.
  auto both = h;
  both.settings["credentials_file"] = dir.file("user.nk");
  auto built = dispatch::make_handler(both, boost::asio::system_executor());
  ASSERT_FALSE(built);
  EXPECT_NE(built.error().message.find("handlers.secure.credentials_file and handlers.secure.nkey are both set"), std::string::npos);
  auto seedless = h;
  seedless.settings.erase("nkey_seed_file");
  built = dispatch::make_handler(seedless, boost::asio::system_executor());
  ASSERT_FALSE(built);
  EXPECT_NE(built.error().message.find("go together"), std::string::npos);
}

}  // namespace
}  // namespace pipehook
