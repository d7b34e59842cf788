// Config loading: defaults, the shipped example, strict keys, bad values named, secrets masked.
#include "pipehook/config/config.hpp"
#include "pipehook/pipedrive/vocabulary.hpp"
#include "pipehook/core/url.hpp"
#include "support.hpp"

#include <gtest/gtest.h>

namespace pipehook {
namespace {

config::env_lookup no_env() {
  return [](const std::string&) -> std::optional<std::string> { return std::nullopt; };
}

outcome<config::config> parse(const std::string& text, config::env_lookup env = no_env()) {
  return config::parse_config(text, "test.toml", env);
}

TEST(config, defaults_listen_on_loopback_with_a_local_database) {
  auto c = config::load_config("", no_env());
  ASSERT_TRUE(c);
  EXPECT_EQ(c->server.host, "127.0.0.1");
  EXPECT_EQ(c->server.port, 8080);
  EXPECT_EQ(c->server.path, "/webhooks/pipedrive");
  EXPECT_EQ(c->server.max_body_bytes, 1024u * 1024u);
  EXPECT_EQ(c->store.path, "var/pipehook.db");
  EXPECT_EQ(c->store.sync, config::durability::full);
  EXPECT_TRUE(c->auth.enabled);
  // Without a password serve refuses to start, and says how to fix it.
  auto ready = config::check_serve_ready(*c);
  ASSERT_FALSE(ready);
  EXPECT_NE(ready.error().message.find("PIPEHOOK_AUTH_PASSWORD"), std::string::npos);
}

TEST(config, the_shipped_example_is_valid_and_states_the_defaults) {
  auto c = config::load_config(PIPEHOOK_EXAMPLE_CONFIG, no_env());
  ASSERT_TRUE(c) << c.error().message;
  auto d = config::load_config("", no_env());
  auto body = [](const std::string& s) { return s.substr(s.find('\n')); };  // all but the "source" line
  EXPECT_EQ(body(config::render_effective(*c)), body(config::render_effective(*d)));
}

// The effective configuration is itself a valid config file: read back, it is the same
// configuration (secrets masked; here there are none), every section and handler included.
TEST(config, the_effective_config_reads_back_as_the_same_config) {
  auto c = parse(R"(
[server]
listen = "[::1]:9000"
path = "/hooks"
read_timeout = "1500ms"
trusted_proxies = ["10.0.0.0/8", "unix"]
allow_from = ["192.0.2.0/24"]
replica_id = "ph-a"
[auth]
user = "pd"
[admin]
listen = "127.0.0.1:9100"
allowed_hosts = ["admin.internal"]
[store]
path = "/tmp/x.db"
durability = "normal"
batch_max = 77
retention = { max_age = "30d", max_bytes = "2GB", interval = "90s" }
[log]
level = "debug"
format = "json"
[pipedrive]
api_base = "https://example-ltd.pipedrive.com/api/v1"
max_attempts = 3
[registrar]
subscription_url = "https://hooks.example.com/hooks"
user_id = 7
resync_interval = "2h"
[[registrar.webhooks]]
event_action = "*"
event_object = "deal"
[backfill]
enabled = true
min_gap = "5m"
max_window = "3d"
max_calls = 200
page_size = 100
objects = ["deal", "person"]
heartbeat = "15s"
[alerts]
url = "https://alerts.example.com/pipehook"
timeout = "3s"
max_attempts = 2
max_per_hour = 12
quiet = "30m"
[[handlers]]
name = "billing"
type = "http"
url = "https://billing.internal/pipedrive"
body = "envelope"
headers = { X-Team = "${TEAM}" }
timeout = "10s"
match.entity = ["deal*"]
retry = { schedule = ["1s", "1m"], max_age = "2h", max_attempts = 9 }
ordered = true
when_changed = ["stage_id", "*created"]
backfill = false
rate = "600/m"
pause_after = 5
pause_for = "10s"
pause_max = "5m"
)");
  ASSERT_TRUE(c) << c.error().message;
  const std::string shown = config::render_effective(*c);
  auto back = parse(shown);
  ASSERT_TRUE(back) << back.error().message << "\n" << shown;
  EXPECT_EQ(back->server, c->server);
  EXPECT_EQ(back->auth, c->auth);
  EXPECT_EQ(back->admin, c->admin);
  EXPECT_EQ(back->store, c->store);
  EXPECT_EQ(back->log, c->log);
  EXPECT_EQ(back->pipedrive, c->pipedrive);
  EXPECT_EQ(back->registrar, c->registrar);
  EXPECT_EQ(back->handlers, c->handlers);
  EXPECT_EQ(back->handlers[0].match.changed, (std::vector<std::string>{"stage_id", "*created"}));
  EXPECT_EQ(back->backfill, c->backfill);
  EXPECT_DOUBLE_EQ(*config::parse_rate("50/s"), 50.0);
  EXPECT_DOUBLE_EQ(*config::parse_rate("600/m"), 10.0);
  EXPECT_DOUBLE_EQ(*config::parse_rate("1.5/s"), 1.5);
  EXPECT_DOUBLE_EQ(*config::parse_rate("3600/h"), 1.0);
  for (const char* bad : {"", "50", "/s", "50/d", "-1/s", "x/s", "50/ s"}) EXPECT_FALSE(config::parse_rate(bad)) << bad;
  EXPECT_EQ(c->backfill.max_window_ms, 3LL * 86'400'000);
  EXPECT_EQ(c->backfill.objects, (std::vector<std::string>{"deal", "person"}));
  EXPECT_FALSE(back->handlers[0].match.backfill);
  EXPECT_DOUBLE_EQ(back->handlers[0].rate_per_s, 10.0);
  EXPECT_EQ(back->handlers[0].rate_burst, 10u);  // one second's worth by default
  // And the defaults, a Unix socket among them, read back too.
  auto d = parse("[server]\nlisten = \"unix:/run/ph.sock\"\nsocket_mode = \"0600\"\n");
  ASSERT_TRUE(d);
  auto dback = parse(config::render_effective(*d));
  ASSERT_TRUE(dback) << dback.error().message;
  EXPECT_EQ(dback->server, d->server);
  EXPECT_EQ(dback->store, d->store);
}

// Replicas: an id of printable characters (it names the replica in logs, claims and metrics), and
// a lease within bounds that only the postgres backend takes.
TEST(config, replica_id_and_claim_lease_are_checked) {
  auto empty = parse("[server]\nreplica_id = \"\"\n");
  ASSERT_FALSE(empty);
  EXPECT_NE(empty.error().message.find("server.replica_id must be 1 to 128 printable characters"), std::string::npos);
  EXPECT_FALSE(parse("[server]\nreplica_id = \"a b\"\n"));
  EXPECT_FALSE(parse("[server]\nreplica_id = \"" + std::string(129, 'x') + "\"\n"));
  auto ok = parse("[server]\nreplica_id = \"eu-1.pipehook\"\n");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->server.replica_id, "eu-1.pipehook");
  auto short_lease = parse("[store]\nbackend = \"postgres\"\nurl = \"postgresql://db/x\"\nclaim_lease = \"100ms\"\n");
  ASSERT_FALSE(short_lease);
  EXPECT_NE(short_lease.error().message.find("claim_lease"), std::string::npos) << short_lease.error().message;
  auto on_sqlite = parse("[store]\nclaim_lease = \"10s\"\n");
  ASSERT_FALSE(on_sqlite);
  EXPECT_NE(on_sqlite.error().message.find("store.claim_lease is for the postgres backend"), std::string::npos);
}

TEST(config, the_postgres_backend_needs_a_uri_and_masks_its_password) {
  auto c = parse("[store]\nbackend = \"postgres\"\nurl = \"postgresql://ph:hunter2@db.internal:5432/pipehook?sslmode=verify-full\"\n"
                 "connect_timeout = \"3s\"\npool_size = 8\nclaim_lease = \"12s\"\n");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->store.backend, config::store_backend::postgres);
  EXPECT_EQ(c->store.connect_timeout_ms, 3'000);
  EXPECT_EQ(c->store.claim_lease_ms, 12'000);
  EXPECT_EQ(c->store.pool_size, 8u);
  const std::string shown = config::render_effective(*c);
  EXPECT_EQ(shown.find("hunter2"), std::string::npos) << shown;
  EXPECT_NE(shown.find("postgresql://ph:********@db.internal:5432/pipehook?sslmode=verify-full"), std::string::npos) << shown;
  EXPECT_NE(shown.find("# store.password: set, from store.url"), std::string::npos) << shown;
  auto back = parse(shown);
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->store.backend, config::store_backend::postgres);
  EXPECT_EQ(back->store.connect_timeout_ms, 3'000);
  EXPECT_EQ(back->store.claim_lease_ms, 12'000);
  EXPECT_EQ(back->store.url, mask_url_password(c->store.url));  // the secret stays out of the printout
  EXPECT_EQ(mask_url_password("postgresql://db/x?user=a&password=p%20w&sslmode=require"),
            "postgresql://db/x?user=a&password=********&sslmode=require");
  EXPECT_EQ(mask_url_password("postgresql://u@db/x"), "postgresql://u@db/x");

  // PGPASSWORD wins, and is named as the source; the password never shows.
  auto env = [](const std::string& k) -> std::optional<std::string> {
    if (k == "PGPASSWORD") return std::string("from-env-pw");
    return std::nullopt;
  };
  auto e = parse("[store]\nbackend = \"postgres\"\nurl = \"postgresql://ph@db/pipehook\"\npassword = \"inline-pw\"\n", env);
  ASSERT_TRUE(e) << e.error().message;
  EXPECT_EQ(e->store.password, "from-env-pw");
  const std::string eshown = config::render_effective(*e);
  EXPECT_NE(eshown.find("# store.password: set, from PGPASSWORD"), std::string::npos) << eshown;
  EXPECT_EQ(eshown.find("from-env-pw"), std::string::npos);
  EXPECT_EQ(eshown.find("inline-pw"), std::string::npos);

  struct bad_case {
    std::string text, message;
  };
  for (const auto& b : std::vector<bad_case>{
           {"[store]\nbackend = \"postgres\"\n", "store.backend = \"postgres\" needs store.url"},
           {"[store]\nbackend = \"postgres\"\nurl = \"mysql://x:secretpw@h/db\"\n", "must be a URI starting with postgresql://"},
           {"[store]\nbackend = \"oracle\"\n", "store.backend must be \"sqlite\" or \"postgres\""},
           {"[store]\nurl = \"postgresql://h/db\"\n", "store.url is for the postgres backend"},
           {"[store]\nbackend = \"postgres\"\nurl = \"postgresql://h/db\"\nconnect_timeout = \"0s\"\n", "store.connect_timeout"},
           {"[store]\npool_size = 0\n", "store.pool_size"},
           {"[store]\nbackend = \"postgres\"\nurl = \"postgresql://h/db\"\npoolsize = 2\n", "store.poolsize"}}) {
    auto r = parse(b.text);
    ASSERT_FALSE(r) << b.text;
    EXPECT_NE(r.error().message.find(b.message), std::string::npos) << r.error().message;
    EXPECT_EQ(r.error().message.find("secretpw"), std::string::npos) << r.error().message;
  }
}

TEST(config, every_section_parses) {
  auto c = parse(R"(
[server]
listen = "[::1]:9000"
path = "/hooks/pd"
max_body_bytes = 2048
max_connections = 10
read_timeout = "500ms"
idle_timeout = 30
shutdown_timeout = "1m"
threads = 2
[auth]
user = "pd"
password = "pw"
[store]
path = "/tmp/x.db"
durability = "normal"
queue_capacity = 8
batch_max = 4
busy_timeout = "100ms"
retry_after = "30s"
[log]
level = "debug"
)");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->server.host, "::1");
  EXPECT_EQ(c->server.port, 9000);
  EXPECT_EQ(c->server.read_timeout_ms, 500);
  EXPECT_EQ(c->server.idle_timeout_ms, 30'000);
  EXPECT_EQ(c->server.shutdown_timeout_ms, 60'000);
  EXPECT_EQ(c->store.sync, config::durability::normal);
  EXPECT_EQ(c->store.retry_after_s, 30u);
  EXPECT_EQ(c->auth.password, "pw");
  EXPECT_TRUE(config::check_serve_ready(*c));
}

TEST(config, unknown_keys_and_bad_values_are_errors_naming_the_key) {
  struct row {
    std::string text, message;
  };
  const std::vector<row> rows = {
      {"[server]\nlisen = \"x\"", "unknown key 'server.lisen'"},
      {"[sever]\n", "unknown key 'sever'"},
      {"server = 5", "'server' must be a table"},
      {"[server]\nlisten = \"127.0.0.1\"", "server.listen must be \"host:port\""},
      {"[server]\nlisten = \"127.0.0.1:99999\"", "port from 0 to 65535"},
      {"[server]\nlisten = 8080", "server.listen must be a string"},
      {"[server]\npath = \"hooks\"", "server.path must start with '/'"},
      {"[server]\nmax_body_bytes = -1", "server.max_body_bytes must be between"},
      {"[server]\nread_timeout = \"soon\"", "server.read_timeout must be a duration"},
      {"[auth]\nenabled = \"no\"", "auth.enabled must be true or false"},
      {"[auth]\nuser = \"a:b\"", "auth.user must not contain ':'"},
      {"[auth]\npassword = \"a\"\npassword_file = \"/x\"", "both set"},
      {"[auth]\npassword_file = \"/nonexistent/pw\"", "auth.password_file: cannot read"},
      {"[store]\ndurability = \"extra\"", "store.durability must be \"full\" or \"normal\""},
      {"[store]\nqueue_capacity = 0", "store.queue_capacity must be between"},
      {"[log]\nlevel = \"loud\"", "log.level must be one of"},
      {"[server\n", "test.toml:"},
      {"[pipedrive]\napi_base = \"api.pipedrive.com/v1\"", "pipedrive.api_base \"api.pipedrive.com/v1\": must be an absolute"},
      {"[pipedrive]\napi_base = \"ftp://x/v1\"", "the scheme must be http or https"},
      {"[pipedrive]\napi_base = \"https://u:p@x/v1\"", "must not carry credentials"},
      {"[pipedrive]\napi_base = \"https://x:0/v1\"", "the port must be a number from 1 to 65535"},
      {"[pipedrive]\napi_token = \"a\"\noauth_token = \"b\"", "both set: keep one"},
      {"[pipedrive]\napi_token_file = \"/nonexistent/t\"", "pipedrive.api_token_file: cannot read"},
      {"[pipedrive]\nmax_attempts = 0", "pipedrive.max_attempts must be between 1 and 20"},
      {"[pipedrive]\nretry_base = \"10s\"\nretry_max = \"1s\"", "retry_max must not be shorter"},
      {"[registrar]\nenabled = true", "registrar.enabled needs registrar.subscription_url"},
      {"[registrar]\nenabled = true\nsubscription_url = \"https://h/x\"", "at least one [[registrar.webhooks]]"},
      {"[registrar]\nsubscription_url = \"/relative\"", "registrar.subscription_url \"/relative\": must be an absolute"},
      {"[registrar]\nversion = \"3.0\"", "registrar.version must be \"1.0\" or \"2.0\""},
      {"[registrar]\nresync_interval = \"5s\"", "at least 1m"},
      {"[[handlers]]\nname = \"h\"\ntype = \"log\"\nrate = \"fast\"", "handlers.h.rate = \"fast\": write deliveries per second"},
      {"[[handlers]]\nname = \"h\"\ntype = \"log\"\nrate = \"0/s\"", "handlers.h.rate = \"0/s\""},
      {"[[handlers]]\nname = \"h\"\ntype = \"log\"\nrate_burst = 3", "handlers.h.rate_burst needs handlers.h.rate"},
      {"[[handlers]]\nname = \"h\"\ntype = \"log\"\npause_for = \"1m\"\npause_max = \"10s\"",
       "handlers.h.pause_max must not be shorter than handlers.h.pause_for"},
      {"[[handlers]]\nname = \"h\"\ntype = \"log\"\npause_after = -1", "handlers.h.pause_after must be between 0 and"},
      {"[alerts]\nurl = \"alerts.example.com/in\"", "alerts.url \"alerts.example.com/in\": must be an absolute"},
      {"[alerts]\nurl = \"https://h/a\"\nsigning_secret = \"a\"\nsigning_secret_file = \"/x\"", "both set: keep one"},
      {"[alerts]\nmax_attempts = 0", "alerts.max_attempts must be between 1 and 10"},
      {"[alerts]\nemail = \"ops@example.com\"", "alerts.email"},
      {"[backfill]\nobjects = [\"lead\"]", "backfill.objects: \"lead\" is not an object Pipedrive's /recents lists"},
      {"[backfill]\nmax_calls = 0", "backfill.max_calls must be between 1 and"},
      {"[backfill]\npage_size = 501", "backfill.page_size must be between 1 and 500"},
      {"[backfill]\nmax_window = \"10s\"", "backfill.max_window"},
      {"[backfill]\nenable = true", "backfill.enable"},
      {"[registrar]\nwebhooks = [\"deal\"]", "registrar.webhooks must be a list of tables"},
      {"[[registrar.webhooks]]\nevent_action = \"added\"\nevent_object = \"deal\"",
       "registrar.webhooks[0].event_action must be one of create, change, delete, *"},
      {"[[registrar.webhooks]]\nevent_action = \"create\"\nevent_object = \"deal.s\"",
       "registrar.webhooks[0].event_object must be an object name like \"deal\""},
      {"[[registrar.webhooks]]\nevent_action = \"create\"\nevent_object = \"\"",
       "registrar.webhooks[0].event_object must be an object name"},
      {"[[registrar.webhooks]]\nevent_action = \"create\"\nevent_object = \"deal\"\nfilter = 1",
       "unknown key 'registrar.webhooks[0].filter'"},
      {"[[registrar.webhooks]]\nevent_action = \"*\"\nevent_object = \"deal\"\n"
       "[[registrar.webhooks]]\nevent_action = \"*\"\nevent_object = \"deal\"",
       "registrar.webhooks[1] repeats *.deal"},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.text);
    auto c = parse(r.text);
    ASSERT_FALSE(c);
    EXPECT_EQ(c.error().code, make_error_code(errc::invalid_config));
    EXPECT_NE(c.error().message.find(r.message), std::string::npos) << c.error().message;
  }
}

// Webhook objects: every one Pipedrive documents for a version is taken without a word; one that
// pipehook does not know (a typo, or an object newer than this build) is taken with a warning that
// names it and the version — Pipedrive's answer decides.
TEST(config, webhook_objects_known_per_version_and_unknown_ones_warned) {
  for (const char* version : {"1.0", "2.0"}) {
    SCOPED_TRACE(version);
    std::string text = std::string("[registrar]\nversion = \"") + version + "\"\n";
    for (auto o : pipedrive::known_event_objects(version))
      text += "[[registrar.webhooks]]\nevent_action = \"change\"\nevent_object = \"" + std::string(o) + "\"\n";
    auto c = parse(text);
    ASSERT_TRUE(c) << c.error().message;
    EXPECT_EQ(c->registrar.webhooks.size(), pipedrive::known_event_objects(version).size());
    EXPECT_TRUE(c->warnings.empty()) << c->warnings.front();
  }
  for (const char* o : {"activityType", "pipeline", "stage"}) EXPECT_TRUE(pipedrive::known_event_object("1.0", o)) << o;
  for (const char* o : {"lead", "deal_product", "deal_installment", "project", "task", "board", "phase"}) {
    EXPECT_TRUE(pipedrive::known_event_object("2.0", o)) << o;
    EXPECT_FALSE(pipedrive::known_event_object("1.0", o)) << o;
  }
  EXPECT_FALSE(pipedrive::known_event_object("2.0", "activityType"));

  auto lead_v1 = parse("[registrar]\nversion = \"1.0\"\n[[registrar.webhooks]]\nevent_action = \"*\"\nevent_object = \"lead\"\n"
                       "[[registrar.webhooks]]\nevent_action = \"change\"\nevent_object = \"gizmo\"\n");
  ASSERT_TRUE(lead_v1) << lead_v1.error().message;
  ASSERT_EQ(lead_v1->warnings.size(), 2u);
  EXPECT_NE(lead_v1->warnings[0].find("registrar.webhooks[0].event_object \"lead\" is not an object pipehook knows for webhooks "
                                      "1.0 (activity, activityType, deal,"),
            std::string::npos)
      << lead_v1->warnings[0];
  EXPECT_NE(lead_v1->warnings[1].find("\"gizmo\""), std::string::npos);
  EXPECT_NE(lead_v1->warnings[1].find("it is sent as is, and Pipedrive decides"), std::string::npos);
}

TEST(config, password_from_file_or_environment_and_never_printed) {
  test::temp_dir dir;
  test::write_file(dir.path / "pw", "from-file\n");
  auto c = parse("[auth]\npassword_file = \"" + dir.file("pw") + "\"");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->auth.password, "from-file");

  auto env = [](const std::string& k) -> std::optional<std::string> {
    if (k == "PIPEHOOK_AUTH_PASSWORD") return std::string("from-env");
    return std::nullopt;
  };
  auto e = parse("[auth]\npassword = \"inline\"", env);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->auth.password, "from-env");
  const std::string shown = config::render_effective(*e);
  EXPECT_EQ(shown.find("from-env"), std::string::npos);
  EXPECT_EQ(shown.find("inline"), std::string::npos);
  EXPECT_NE(shown.find("********"), std::string::npos);
}

TEST(config, pipedrive_and_registrar_sections) {
  std::string text = R"(
[auth]
password = "pw"
[pipedrive]
api_base = "https://example-ltd.pipedrive.com/api/v1/"
api_token = "from-file"
timeout = "3s"
max_attempts = 2
[registrar]
enabled = true
subscription_url = "https://hooks.example.com/webhooks/pipedrive"
name = "crm-sync"
user_id = 12
prune = true
delete_on_shutdown = true
resync_interval = "10m"
)";
  for (int i = 0; i < 41; ++i)
    text += "[[registrar.webhooks]]\nevent_action = \"change\"\nevent_object = \"" + std::string(i < 40 ? "x" : "deal") +
            "\"\n";
  auto over = parse(text);  // 41 entries (and "x" is no object): refused
  ASSERT_FALSE(over);

  text = text.substr(0, text.find("[[registrar.webhooks]]")) +
         "[[registrar.webhooks]]\nevent_action = \"*\"\nevent_object = \"deal\"\n"
         "[[registrar.webhooks]]\nevent_action = \"delete\"\nevent_object = \"lead\"\n";
  auto c = parse(text);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->pipedrive.api_base, "https://example-ltd.pipedrive.com/api/v1");  // trailing '/' dropped
  EXPECT_EQ(c->pipedrive.timeout_ms, 3'000);
  EXPECT_EQ(c->pipedrive.max_attempts, 2u);
  EXPECT_TRUE(c->registrar.enabled);
  EXPECT_EQ(c->registrar.name, "crm-sync");
  EXPECT_EQ(c->registrar.user_id, 12);
  EXPECT_EQ(c->registrar.resync_interval_ms, 600'000);
  ASSERT_EQ(c->registrar.webhooks.size(), 2u);
  EXPECT_EQ(c->registrar.webhooks[1].event_object, "lead");
  EXPECT_TRUE(config::check_registrar_ready(*c));
  const std::string shown = config::render_effective(*c);
  EXPECT_EQ(shown.find("from-file"), std::string::npos);
  EXPECT_NE(shown.find("[[registrar.webhooks]]\nevent_action = 'delete'\nevent_object = 'lead'"), std::string::npos);

  // PIPEDRIVE_API_TOKEN wins over any token in the file.
  auto env = [](const std::string& k) -> std::optional<std::string> {
    if (k == "PIPEDRIVE_API_TOKEN") return std::string("from-env");
    return std::nullopt;
  };
  auto e = parse("[pipedrive]\noauth_token = \"bearer\"", env);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->pipedrive.api_token, "from-env");
  EXPECT_TRUE(e->pipedrive.oauth_token.empty());
  EXPECT_EQ(config::render_effective(*e).find("from-env"), std::string::npos);
  // Without any token, the API cannot be used: the message says how to give one.
  auto none = parse("");
  ASSERT_TRUE(none);
  auto ready = config::check_pipedrive_ready(*none);
  ASSERT_FALSE(ready);
  EXPECT_NE(ready.error().message.find("PIPEDRIVE_API_TOKEN"), std::string::npos);
}

TEST(config, auth_can_be_disabled_only_explicitly) {
  auto c = parse("[auth]\nenabled = false");
  ASSERT_TRUE(c);
  EXPECT_TRUE(config::check_serve_ready(*c));
}

}  // namespace
}  // namespace pipehook
