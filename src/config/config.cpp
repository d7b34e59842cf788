#include "pipehook/config/config.hpp"

#include "pipehook/core/cidr.hpp"
#include "pipehook/core/time.hpp"
#include "pipehook/core/url.hpp"
#include "pipehook/pipedrive/vocabulary.hpp"

#include <toml++/toml.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cctype>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

namespace pipehook::config {
namespace {

failure bad(std::string message) { return make_failure(errc::invalid_config, std::move(message)); }

outcome<void> string_list_node(const toml::node& n, const std::string& name, std::vector<std::string>& out);

// The settings of one table: typed getters that leave `out` alone when the key is absent and name
// the key on a bad value, and remember what they were asked for; finish() refuses every key nobody
// asked for ("unknown key 'server.lisen'"). No list of allowed keys restates what the getters read.
struct reader {
  const toml::table& t;
  std::string section;  // "" for the root
  mutable std::set<std::string, std::less<>> used;

  reader(const toml::table& table, std::string name) : t(table), section(std::move(name)) {}

  std::string name(std::string_view key) const { return section.empty() ? std::string(key) : section + "." + std::string(key); }

  // The node under `key` (nullptr when absent), counted as read.
  const toml::node* node(std::string_view key) const {
    used.emplace(key);
    return t.get(key);
  }
  // A sub-table ([section.key]); nullptr when absent.
  outcome<const toml::table*> table(std::string_view key) const {
    const toml::node* n = node(key);
    if (!n) return nullptr;
    if (!n->is_table()) return bad("'" + name(key) + "' must be a table ([" + name(key) + "])");
    return n->as_table();
  }
  // A string or a list of strings (a single value is a list of one).
  outcome<void> list(std::string_view key, std::vector<std::string>& out) const {
    const toml::node* n = node(key);
    return n ? string_list_node(*n, name(key), out) : outcome<void>{};
  }
  outcome<void> finish() const {
    for (const auto& [key, value] : t)
      if (!used.count(key.str())) return bad("unknown key '" + name(key.str()) + "'");
    return {};
  }

  outcome<void> string(std::string_view key, std::string& out) const {
    const toml::node* n = node(key);
    if (!n) return {};
    if (!n->is_string()) return bad(name(key) + " must be a string");
    out = n->as_string()->get();
    return {};
  }
  outcome<void> boolean(std::string_view key, bool& out) const {
    const toml::node* n = node(key);
    if (!n) return {};
    if (!n->is_boolean()) return bad(name(key) + " must be true or false");
    out = n->as_boolean()->get();
    return {};
  }
  template <class Int>
  outcome<void> integer(std::string_view key, Int& out, std::int64_t min, std::int64_t max) const {
    const toml::node* n = node(key);
    if (!n) return {};
    if (!n->is_integer()) return bad(name(key) + " must be an integer");
    const std::int64_t v = n->as_integer()->get();
    if (v < min || v > max)
      return bad(name(key) + " must be between " + std::to_string(min) + " and " + std::to_string(max) + " (got " +
                 std::to_string(v) + ")");
    out = static_cast<Int>(v);
    return {};
  }
  // "250ms", "10s", "5m", "1h" or an integer number of seconds.
  outcome<void> duration(std::string_view key, std::int64_t& out_ms, std::int64_t min_ms, std::int64_t max_ms) const {
    const toml::node* n = node(key);
    if (!n) return {};
    std::optional<std::int64_t> ms;
    if (n->is_integer()) ms = n->as_integer()->get() * 1000;
    else if (n->is_string()) ms = parse_duration_ms(n->as_string()->get());
    if (!ms) return bad(name(key) + " must be a duration like \"500ms\", \"10s\", \"5m\" or a number of seconds");
    if (*ms < min_ms || *ms > max_ms)
      return bad(name(key) + " must be between " + std::to_string(min_ms) + "ms and " + std::to_string(max_ms) + "ms");
    out_ms = *ms;
    return {};
  }
};

// "500MB", "10GB", "2GiB", "1048576": bytes (decimal and binary units).
std::optional<std::uint64_t> parse_size(std::string_view text) {
  std::size_t i = 0;
  std::uint64_t value = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
    if (value > 1'000'000'000'000ULL) return std::nullopt;
    value = value * 10 + static_cast<std::uint64_t>(text[i++] - '0');
  }
  if (i == 0) return std::nullopt;
  std::string unit(text.substr(i));
  for (char& ch : unit) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  for (auto [name, factor] : {std::pair{"", 1ULL}, {"B", 1ULL}, {"KB", 1000ULL}, {"MB", 1000ULL * 1000},
                              {"GB", 1000ULL * 1000 * 1000}, {"KIB", 1024ULL}, {"MIB", 1024ULL * 1024},
                              {"GIB", 1024ULL * 1024 * 1024}})
    if (unit == name) return value * factor;
  return std::nullopt;
}

bool is_loopback_host(const std::string& host) {
  return host.rfind("127.", 0) == 0 || host == "::1" || host == "localhost";
}


outcome<void> parse_listen(const std::string& text, std::string_view key, std::string& out_host, std::uint16_t& out_port) {
  const std::string k(key);
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || colon + 1 == text.size())
    return bad(k + " must be \"host:port\", like \"127.0.0.1:8080\" or \"[::1]:8080\" (got \"" + text + "\")");
  std::string host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  const std::string port = text.substr(colon + 1);
  char* end = nullptr;
  const long p = std::strtol(port.c_str(), &end, 10);
  if (host.empty() || *end != '\0' || p < 0 || p > 65535)
    return bad(k + " must be \"host:port\" with a port from 0 to 65535 (got \"" + text + "\")");
  // The address serve binds: checked here, so that check-config refuses what serve would.
  if (host == "localhost") host = "127.0.0.1";
  const auto addr = parse_address(host);
  if (!addr)
    return bad(k + ": \"" + host + "\" is not an IP address (write one out, like 127.0.0.1 or ::1, or use localhost)");
  out_host = addr->to_string();
  out_port = static_cast<std::uint16_t>(p);
  return {};
}

// "mode 0644" when the file at `path` can be read by its group or others, else "".
std::string readable_by_others(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || (st.st_mode & (S_IRGRP | S_IROTH)) == 0) return {};
  char mode[8];
  std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
  return std::string("mode ") + mode;
}

outcome<void> secret_pair(const reader& r, const std::string& key, std::string& out, std::string& source, config& c);
outcome<void> parse_handler(const toml::table& t, std::string where, handler_config& h);

#define PIPEHOOK_TRY(expr)          \
  do {                              \
    auto _r = (expr);               \
    if (!_r) return _r.error();     \
  } while (0)

outcome<void> apply_server(const reader& r, config& c) {
  std::string listen;
  PIPEHOOK_TRY(r.string("listen", listen));
  if (listen.rfind("unix:", 0) == 0) {
    c.server.unix_path = listen.substr(5);
    if (c.server.unix_path.empty() || c.server.unix_path.front() != '/')
      return bad("server.listen = \"" + listen + "\": a Unix socket needs an absolute path (unix:/run/pipehook/pipehook.sock)");
    if (c.server.unix_path.size() > 107) return bad("server.listen: the Unix socket path is longer than 107 bytes");
  } else if (!listen.empty()) {
    PIPEHOOK_TRY(parse_listen(listen, "server.listen", c.server.host, c.server.port));
  }
  std::string mode;
  PIPEHOOK_TRY(r.string("socket_mode", mode));
  if (!mode.empty()) {
    char* end = nullptr;
    const unsigned long m = std::strtoul(mode.c_str(), &end, 8);
    if (*end != '\0' || m > 0777 || mode.size() > 4)
      return bad("server.socket_mode must be octal permissions like \"0660\" (got \"" + mode + "\")");
    c.server.socket_mode = static_cast<unsigned>(m);
  }
  PIPEHOOK_TRY(r.string("path", c.server.path));
  if (c.server.path.empty() || c.server.path[0] != '/' || c.server.path.find_first_of("?# ") != std::string::npos)
    return bad("server.path must start with '/' and hold no query, fragment or space (got \"" + c.server.path + "\")");
  PIPEHOOK_TRY(r.integer("max_body_bytes", c.server.max_body_bytes, 1024, 64LL * 1024 * 1024));
  PIPEHOOK_TRY(r.integer("max_connections", c.server.max_connections, 1, 1'000'000));
  PIPEHOOK_TRY(r.duration("read_timeout", c.server.read_timeout_ms, 100, 3'600'000));
  PIPEHOOK_TRY(r.duration("idle_timeout", c.server.idle_timeout_ms, 100, 3'600'000));
  PIPEHOOK_TRY(r.duration("shutdown_timeout", c.server.shutdown_timeout_ms, 0, 3'600'000));
  PIPEHOOK_TRY(r.integer("threads", c.server.threads, 1, 64));
  PIPEHOOK_TRY(r.string("replica_id", c.server.replica_id));
  if (r.node("replica_id") && (c.server.replica_id.empty() || c.server.replica_id.size() > 128 ||
                               std::any_of(c.server.replica_id.begin(), c.server.replica_id.end(),
                                           [](unsigned char ch) { return ch <= ' ' || ch >= 0x7f; })))
    return bad("server.replica_id must be 1 to 128 printable characters without spaces (got \"" + c.server.replica_id + "\")");
  for (auto [key, list] : {std::pair{"trusted_proxies", &c.server.trusted_proxies},
                           std::pair{"allow_from", &c.server.allow_from}}) {
    PIPEHOOK_TRY(r.list(key, *list));
    for (const auto& range : *list) {
      if (range == "unix" && std::string_view(key) == "trusted_proxies") continue;  // Unix-socket peers
      auto parsed = parse_cidr(range, std::string("server.") + key);
      if (!parsed) return parsed.error();
    }
  }
  return r.finish();
}

outcome<void> apply_auth(const reader& r, config& c) {
  PIPEHOOK_TRY(r.boolean("enabled", c.auth.enabled));
  PIPEHOOK_TRY(r.string("user", c.auth.user));
  if (c.auth.user.find(':') != std::string::npos) return bad("auth.user must not contain ':' (Basic auth)");
  std::string password, file;
  PIPEHOOK_TRY(r.string("password", password));
  PIPEHOOK_TRY(r.string("password_file", file));
  if (!password.empty() && !file.empty()) return bad("auth.password and auth.password_file are both set: keep one");
  if (!password.empty()) {
    c.auth.password = password, c.auth.password_source = "auth.password";
    c.inline_secrets.push_back("auth.password");
  }
  if (!file.empty()) {
    auto secret = read_secret_file(file, "auth.password_file", c.warnings);
    if (!secret) return secret.error();
    c.auth.password = *secret;
    c.auth.password_source = "auth.password_file (" + file + ")";
  }
  return r.finish();
}

outcome<void> apply_admin(const reader& r, config& c) {
  PIPEHOOK_TRY(r.boolean("enabled", c.admin.enabled));
  std::string listen;
  PIPEHOOK_TRY(r.string("listen", listen));
  if (!listen.empty()) PIPEHOOK_TRY(parse_listen(listen, "admin.listen", c.admin.host, c.admin.port));
  PIPEHOOK_TRY(secret_pair(r, "token", c.admin.token, c.admin.token_source, c));
  PIPEHOOK_TRY(r.list("allowed_hosts", c.admin.allowed_hosts));
  for (const auto& h : c.admin.allowed_hosts)
    if (h.empty() || h.find_first_of(" /[]") != std::string::npos)
      return bad("admin.allowed_hosts: \"" + h + "\" is not a host name (like \"admin.example.com\" or \".example.com\")");
  return r.finish();
}

outcome<void> apply_store(const reader& r, config& c) {
  auto retention = r.table("retention");
  if (!retention) return retention.error();
  if (*retention) {
    const reader rr{**retention, "store.retention"};
    PIPEHOOK_TRY(rr.duration("max_age", c.store.retention_max_age_ms, 60'000, 100LL * 365 * 86'400'000));
    PIPEHOOK_TRY(rr.duration("interval", c.store.retention_interval_ms, 100, 86'400'000));
    if (const toml::node* n = rr.node("max_bytes")) {
      std::optional<std::uint64_t> bytes;
      if (n->is_integer() && n->as_integer()->get() > 0) bytes = static_cast<std::uint64_t>(n->as_integer()->get());
      else if (n->is_string()) bytes = parse_size(n->as_string()->get());
      if (!bytes) return bad("store.retention.max_bytes must be a size like \"500MB\", \"10GB\" or a number of bytes");
      if (*bytes < 1024 * 1024) return bad("store.retention.max_bytes must be at least 1MB");
      c.store.retention_max_bytes = *bytes;
    }
    PIPEHOOK_TRY(rr.finish());
  }
  std::string backend;
  PIPEHOOK_TRY(r.string("backend", backend));
  if (backend == "postgres" || backend == "postgresql") c.store.backend = store_backend::postgres;
  else if (backend == "sqlite" || backend.empty()) c.store.backend = store_backend::sqlite;
  else return bad("store.backend must be \"sqlite\" or \"postgres\" (got \"" + backend + "\")");
  PIPEHOOK_TRY(r.string("url", c.store.url));
  PIPEHOOK_TRY(secret_pair(r, "password", c.store.password, c.store.password_source, c));
  PIPEHOOK_TRY(r.duration("connect_timeout", c.store.connect_timeout_ms, 1'000, 300'000));
  PIPEHOOK_TRY(r.duration("claim_lease", c.store.claim_lease_ms, 1'000, 3'600'000));
  PIPEHOOK_TRY(r.integer("pool_size", c.store.pool_size, 1, 64));
  if (c.store.backend == store_backend::postgres) {
    if (c.store.url.empty())
      return bad("store.backend = \"postgres\" needs store.url, a connection URI like \"postgresql://pipehook@db.internal:5432/pipehook\"");
    if (c.store.url.rfind("postgresql://", 0) != 0 && c.store.url.rfind("postgres://", 0) != 0)
      return bad("store.url must be a URI starting with postgresql:// (got \"" + mask_url_password(c.store.url) + "\")");
    if (mask_url_password(c.store.url) != c.store.url) c.inline_secrets.push_back("store.url");
  } else {
    for (const char* k : {"url", "password", "password_file", "connect_timeout", "claim_lease"})
      if (r.node(k)) return bad(std::string("store.") + k + " is for the postgres backend; store.backend is \"sqlite\"");
  }
  PIPEHOOK_TRY(r.string("path", c.store.path));
  if (c.store.path.empty()) return bad("store.path must not be empty");
  std::string sync;
  PIPEHOOK_TRY(r.string("durability", sync));
  if (sync == "full") c.store.sync = durability::full;
  else if (sync == "normal") c.store.sync = durability::normal;
  else if (!sync.empty()) return bad("store.durability must be \"full\" or \"normal\" (got \"" + sync + "\")");
  PIPEHOOK_TRY(r.integer("queue_capacity", c.store.queue_capacity, 1, 1'000'000));
  PIPEHOOK_TRY(r.integer("batch_max", c.store.batch_max, 1, 100'000));
  PIPEHOOK_TRY(r.duration("busy_timeout", c.store.busy_timeout_ms, 0, 60'000));
  std::int64_t retry_after_ms = c.store.retry_after_s * 1000LL;
  PIPEHOOK_TRY(r.duration("retry_after", retry_after_ms, 1000, 3'600'000));
  c.store.retry_after_s = static_cast<std::uint32_t>(retry_after_ms / 1000);
  return r.finish();
}

outcome<void> apply_log(const reader& r, config& c) {
  PIPEHOOK_TRY(r.string("level", c.log.level));
  PIPEHOOK_TRY(r.string("format", c.log.format));
  if (c.log.format != "text" && c.log.format != "json")
    return bad("log.format must be \"text\" or \"json\" (got \"" + c.log.format + "\")");
  PIPEHOOK_TRY(r.string("file", c.log.file));
  static const std::set<std::string> levels{"trace", "debug", "info", "warn", "error", "critical", "off"};
  if (!levels.count(c.log.level))
    return bad("log.level must be one of trace, debug, info, warn, error, critical, off (got \"" + c.log.level + "\")");
  return r.finish();
}

outcome<void> apply_pipedrive(const reader& r, config& c) {
  auto& p = c.pipedrive;
  PIPEHOOK_TRY(r.string("api_base", p.api_base));
  auto base = parse_url(p.api_base, "pipedrive.api_base");
  if (!base) return base.error();
  while (!p.api_base.empty() && p.api_base.back() == '/') p.api_base.pop_back();
  PIPEHOOK_TRY(secret_pair(r, "api_token", p.api_token, p.api_token_source, c));
  PIPEHOOK_TRY(secret_pair(r, "oauth_token", p.oauth_token, p.oauth_token_source, c));
  if (!p.api_token.empty() && !p.oauth_token.empty())
    return bad("pipedrive.api_token and pipedrive.oauth_token are both set: keep one");
  PIPEHOOK_TRY(r.string("ca_file", p.ca_file));
  PIPEHOOK_TRY(r.duration("connect_timeout", p.connect_timeout_ms, 100, 600'000));
  PIPEHOOK_TRY(r.duration("timeout", p.timeout_ms, 100, 600'000));
  PIPEHOOK_TRY(r.integer("max_attempts", p.max_attempts, 1, 20));
  PIPEHOOK_TRY(r.duration("retry_base", p.retry_base_ms, 1, 600'000));
  PIPEHOOK_TRY(r.duration("retry_max", p.retry_max_ms, 1, 3'600'000));
  if (p.retry_max_ms < p.retry_base_ms) return bad("pipedrive.retry_max must not be shorter than pipedrive.retry_base");
  PIPEHOOK_TRY(r.duration("fields_refresh", p.fields_refresh_ms, 0, 7LL * 24 * 3'600'000));
  if (p.fields_refresh_ms != 0 && p.fields_refresh_ms < 60'000)
    return bad("pipedrive.fields_refresh must be 0 (never) or at least 1m: each refresh costs API tokens");
  return r.finish();
}

outcome<void> apply_registrar(const reader& r, config& c) {
  auto& g = c.registrar;
  PIPEHOOK_TRY(r.boolean("enabled", g.enabled));
  PIPEHOOK_TRY(r.string("subscription_url", g.subscription_url));
  if (!g.subscription_url.empty()) {
    auto u = parse_url(g.subscription_url, "registrar.subscription_url", true);
    if (!u) return u.error();
  }
  PIPEHOOK_TRY(r.string("version", g.version));
  if (g.version != "1.0" && g.version != "2.0")
    return bad("registrar.version must be \"1.0\" or \"2.0\" (got \"" + g.version + "\")");
  PIPEHOOK_TRY(r.string("name", g.name));
  if (g.name.empty() || g.name.size() > 255) return bad("registrar.name must be 1 to 255 characters");
  PIPEHOOK_TRY(r.integer("user_id", g.user_id, 0, std::numeric_limits<std::int64_t>::max()));
  PIPEHOOK_TRY(r.boolean("prune", g.prune));
  PIPEHOOK_TRY(r.boolean("delete_on_shutdown", g.delete_on_shutdown));
  PIPEHOOK_TRY(r.duration("resync_interval", g.resync_interval_ms, 0, 7LL * 24 * 3'600'000));
  PIPEHOOK_TRY(r.duration("takeover_check", g.takeover_check_ms, 100, 3'600'000));
  if (g.resync_interval_ms != 0 && g.resync_interval_ms < 60'000)
    return bad("registrar.resync_interval must be 0 (off) or at least 1m: each check costs API tokens");
  if (const toml::node* n = r.node("webhooks")) {
    const toml::array* arr = n->as_array();
    if (!arr || !arr->is_array_of_tables())
      return bad("registrar.webhooks must be a list of tables: [[registrar.webhooks]] with event_action and event_object");
    std::size_t i = 0;
    for (const toml::node& item : *arr) {
      const std::string where = "registrar.webhooks[" + std::to_string(i++) + "]";
      const reader wr{*item.as_table(), where};
      webhook_subscription sub;
      PIPEHOOK_TRY(wr.string("event_action", sub.event_action));
      PIPEHOOK_TRY(wr.string("event_object", sub.event_object));
      PIPEHOOK_TRY(wr.finish());
      if (!pipedrive::valid_event_action(sub.event_action))
        return bad(where + ".event_action must be one of create, change, delete, * (got \"" + sub.event_action + "\")");
      if (!pipedrive::plausible_event_object(sub.event_object))
        return bad(where + ".event_object must be an object name like \"deal\" or \"*\": letters, digits and '_' (got \"" +
                   sub.event_object + "\")");
      if (std::find(g.webhooks.begin(), g.webhooks.end(), sub) != g.webhooks.end())
        return bad(where + " repeats " + sub.event_action + "." + sub.event_object);
      g.webhooks.push_back(sub);
    }
    if (g.webhooks.size() > 40)
      return bad("registrar.webhooks lists " + std::to_string(g.webhooks.size()) +
                 " subscriptions; Pipedrive allows 40 webhooks per user");
  }
  // An object pipehook does not know for this version is sent all the same: Pipedrive adds objects
  // every few months, and its answer (a 400 naming the subscription, if it refuses) is the authority.
  for (std::size_t i = 0; i < g.webhooks.size(); ++i) {
    const auto& w = g.webhooks[i];
    if (pipedrive::known_event_object(g.version, w.event_object)) continue;
    std::string known;
    for (auto o : pipedrive::known_event_objects(g.version))
      if (o != "*") known += (known.empty() ? "" : ", ") + std::string(o);
    c.warnings.push_back("registrar.webhooks[" + std::to_string(i) + "].event_object \"" + w.event_object +
                         "\" is not an object pipehook knows for webhooks " + g.version + " (" + known +
                         "); it is sent as is, and Pipedrive decides");
  }
  if (g.enabled) {
    if (g.subscription_url.empty()) return bad("registrar.enabled needs registrar.subscription_url");
    if (g.webhooks.empty()) return bad("registrar.enabled needs at least one [[registrar.webhooks]] table");
  }
  return r.finish();
}

outcome<void> apply_backfill(const reader& r, config& c) {
  auto& b = c.backfill;
  PIPEHOOK_TRY(r.boolean("enabled", b.enabled));
  PIPEHOOK_TRY(r.duration("min_gap", b.min_gap_ms, 1, 7LL * 24 * 3'600'000));
  PIPEHOOK_TRY(r.duration("max_window", b.max_window_ms, 60'000, 90LL * 24 * 3'600'000));
  PIPEHOOK_TRY(r.integer("max_calls", b.max_calls, 1, 1'000'000));
  PIPEHOOK_TRY(r.integer("page_size", b.page_size, 1, 500));
  PIPEHOOK_TRY(r.list("objects", b.objects));
  for (const auto& o : b.objects)
    if (!pipedrive::recoverable_object(o))
      return bad("backfill.objects: \"" + o + "\" is not an object Pipedrive's /recents lists (" +
                 pipedrive::recoverable_objects_text() + ")");
  PIPEHOOK_TRY(r.duration("heartbeat", b.heartbeat_ms, 100, 3'600'000));
  if (b.enabled && b.heartbeat_ms >= b.min_gap_ms)
    c.warnings.push_back("backfill.heartbeat is not shorter than backfill.min_gap: a crash may go unnoticed as a gap");
  return r.finish();
}

outcome<void> apply_alerts(const reader& r, config& c) {
  auto& a = c.alerts;
  PIPEHOOK_TRY(r.string("url", a.url));
  if (!a.url.empty()) {
    auto u = parse_url(a.url, "alerts.url", true);
    if (!u) return u.error();
  }
  PIPEHOOK_TRY(secret_pair(r, "signing_secret", a.signing_secret, a.signing_secret_source, c));
  PIPEHOOK_TRY(r.string("ca_file", a.ca_file));
  PIPEHOOK_TRY(r.duration("timeout", a.timeout_ms, 100, 600'000));
  PIPEHOOK_TRY(r.integer("max_attempts", a.max_attempts, 1, 10));
  PIPEHOOK_TRY(r.integer("max_per_hour", a.max_per_hour, 1, 100'000));
  PIPEHOOK_TRY(r.duration("quiet", a.quiet_ms, 0, 30LL * 24 * 3'600'000));
  if (a.url.empty() && !a.signing_secret.empty()) c.warnings.push_back("alerts.signing_secret is set but alerts.url is not: no alerts are sent");
  return r.finish();
}

// The whole file: each section by its own function, each refusing the keys it did not read.
outcome<void> apply(const toml::table& root, config& c) {
  const reader top{root, ""};
  using section_fn = outcome<void> (*)(const reader&, config&);
  for (auto [name, fn] : {std::pair<const char*, section_fn>{"server", apply_server}, {"auth", apply_auth}, {"admin", apply_admin},
                          {"store", apply_store}, {"log", apply_log}, {"pipedrive", apply_pipedrive}, {"registrar", apply_registrar},
                          {"backfill", apply_backfill}, {"alerts", apply_alerts}}) {
    auto t = top.table(name);
    if (!t) return t.error();
    if (*t) PIPEHOOK_TRY(fn(reader{**t, name}, c));
  }
  if (const toml::node* n = top.node("handlers")) {
    const toml::array* arr = n->as_array();
    if (!arr || !arr->is_array_of_tables()) return bad("handlers must be a list of tables: [[handlers]] with name and type");
    std::size_t i = 0;
    for (const toml::node& item : *arr) {
      handler_config h;
      PIPEHOOK_TRY(parse_handler(*item.as_table(), "handlers[" + std::to_string(i++) + "]", h));
      for (const auto& other : c.handlers)
        if (other.name == h.name) return bad(h.where + ": the name \"" + h.name + "\" is used twice");
      // A signing secret written out (not "${ENV}") is a secret held by the file.
      if (auto it = h.settings.find("signing_secret"); it != h.settings.end())
        if (auto* v = std::get_if<std::string>(&it->second); v && !v->empty() && v->find("${") == std::string::npos)
          c.inline_secrets.push_back(h.where + ".signing_secret");
      c.handlers.push_back(std::move(h));
    }
  }
  return top.finish();
}

outcome<void> string_list_node(const toml::node& n, const std::string& name, std::vector<std::string>& out) {
  if (n.is_string()) {  // a single value is a list of one
    out.push_back(n.as_string()->get());
    return {};
  }
  const toml::array* arr = n.as_array();
  if (!arr) return bad(name + " must be a string or a list of strings");
  for (const toml::node& v : *arr) {
    if (v.is_string()) out.push_back(v.as_string()->get());
    else if (v.is_integer()) out.push_back(std::to_string(v.as_integer()->get()));  // company ids
    else return bad(name + " must be a list of strings");
  }
  return {};
}

outcome<void> parse_handler(const toml::table& t, std::string where, handler_config& h) {
  reader r{t, where};
  PIPEHOOK_TRY(r.string("name", h.name));
  if (h.name.empty()) return bad(where + ".name is required");
  for (char ch : h.name)
    if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '-' && ch != '_')
      return bad(where + ".name \"" + h.name + "\" may hold only letters, digits, '-' and '_'");
  where = "handlers." + h.name;
  h.where = where;
  r.section = where;
  PIPEHOOK_TRY(r.string("type", h.type));
  if (h.type.empty()) return bad(where + ".type is required (http, nats or log)");
  PIPEHOOK_TRY(r.boolean("ordered", h.ordered));
  PIPEHOOK_TRY(r.integer("concurrency", h.concurrency, 1, 256));
  PIPEHOOK_TRY(r.string("rate", h.rate_text));
  if (!h.rate_text.empty()) {
    const auto rate = parse_rate(h.rate_text);
    if (!rate) return bad(where + ".rate = \"" + h.rate_text + "\": write deliveries per second, minute or hour, like \"50/s\", \"600/m\"");
    h.rate_per_s = *rate;
  }
  PIPEHOOK_TRY(r.integer("rate_burst", h.rate_burst, 1, 100'000));
  if (h.rate_burst && h.rate_text.empty()) return bad(where + ".rate_burst needs " + where + ".rate");
  if (h.rate_per_s > 0 && h.rate_burst == 0) h.rate_burst = static_cast<std::uint32_t>(std::max(1.0, std::floor(h.rate_per_s)));
  PIPEHOOK_TRY(r.integer("pause_after", h.pause_after, 0, 1'000'000));
  PIPEHOOK_TRY(r.duration("pause_for", h.pause_for_ms, 100, 24LL * 3'600'000));
  PIPEHOOK_TRY(r.duration("pause_max", h.pause_max_ms, 100, 7LL * 24 * 3'600'000));
  if (h.pause_max_ms < h.pause_for_ms) return bad(where + ".pause_max must not be shorter than " + where + ".pause_for");
  PIPEHOOK_TRY(r.boolean("backfill", h.match.backfill));
  PIPEHOOK_TRY(r.list("when_changed", h.match.changed));
  if (r.node("when_changed") && h.match.changed.empty())
    return bad(where + ".when_changed must list at least one field (leave it out for every event)");
  for (const auto& f : h.match.changed)
    if (f.empty() || (f[0] == '*' && f != "*created" && f != "*deleted"))
      return bad(where + ".when_changed: \"" + f + "\" is not a field name (or \"*created\", \"*deleted\")");
  auto match = r.table("match");
  if (!match) return match.error();
  if (*match) {
    const reader mr{**match, where + ".match"};
    PIPEHOOK_TRY(mr.list("entity", h.match.entity));
    PIPEHOOK_TRY(mr.list("action", h.match.action));
    PIPEHOOK_TRY(mr.list("company_id", h.match.company_id));
    PIPEHOOK_TRY(mr.finish());
    for (const auto& a : h.match.action)
      if (a != "create" && a != "change" && a != "delete" && a != "*")
        return bad(where + ".match.action: \"" + a + "\" is not create, change, delete or *");
  }
  auto retry = r.table("retry");
  if (!retry) return retry.error();
  if (*retry) {
    const reader rr{**retry, where + ".retry"};
    if (const toml::node* sch = rr.node("schedule")) {
      const toml::array* arr = sch->as_array();
      if (!arr || arr->empty()) return bad(where + ".retry.schedule must be a non-empty list of durations");
      h.retry.schedule_ms.clear();
      for (const toml::node& v : *arr) {
        std::optional<std::int64_t> ms;
        if (v.is_integer()) ms = v.as_integer()->get() * 1000;
        else if (v.is_string()) ms = parse_duration_ms(v.as_string()->get());
        if (!ms || *ms < 0 || *ms > 7LL * 24 * 3'600'000)
          return bad(where + ".retry.schedule: each step must be a duration like \"5s\" or \"2m\" (up to 7 days)");
        h.retry.schedule_ms.push_back(*ms);
      }
    }
    PIPEHOOK_TRY(rr.duration("max_age", h.retry.max_age_ms, 1'000, 365LL * 24 * 3'600'000));
    PIPEHOOK_TRY(rr.integer("max_attempts", h.retry.max_attempts, 0, 1'000'000));
    PIPEHOOK_TRY(rr.finish());
  }
  // The rest belongs to the handler type, which checks it (unknown keys included) when built.
  for (const auto& [key, node] : t) {
    const std::string k(key.str());
    if (r.used.count(k)) continue;
    const std::string name = where + "." + k;
    if (node.is_string()) h.settings[k] = node.as_string()->get();
    else if (node.is_integer()) h.settings[k] = node.as_integer()->get();
    else if (node.is_floating_point()) h.settings[k] = node.as_floating_point()->get();
    else if (node.is_boolean()) h.settings[k] = node.as_boolean()->get();
    else if (node.is_array()) {
      std::vector<std::string> list;
      PIPEHOOK_TRY(string_list_node(node, name, list));
      h.settings[k] = std::move(list);
    } else if (node.is_table()) {
      std::map<std::string, std::string> table;
      for (const auto& [tk, tv] : *node.as_table()) {
        if (!tv.is_string()) return bad(name + "." + std::string(tk.str()) + " must be a string");
        table[std::string(tk.str())] = tv.as_string()->get();
      }
      h.settings[k] = std::move(table);
    } else {
      return bad(name + " has an unsupported value type");
    }
  }
  return {};
}

// A secret given inline (`key`) or as a file (`key_file`), not both.
outcome<void> secret_pair(const reader& r, const std::string& key, std::string& out, std::string& source, config& c) {
  std::string inline_value, file;
  PIPEHOOK_TRY(r.string(key, inline_value));
  PIPEHOOK_TRY(r.string(key + "_file", file));
  if (!inline_value.empty() && !file.empty())
    return bad(r.name(key) + " and " + r.name(key + "_file") + " are both set: keep one");
  if (!inline_value.empty()) {
    out = inline_value, source = r.name(key);
    c.inline_secrets.push_back(r.name(key));
  }
  if (!file.empty()) {
    auto secret = read_secret_file(file, r.name(key + "_file"), c.warnings);
    if (!secret) return secret.error();
    out = *secret;
    source = r.name(key + "_file") + " (" + file + ")";
  }
  return {};
}

outcome<void> apply_env(config& c, const env_lookup& env) {
  if (auto tok = env("PIPEHOOK_ADMIN_TOKEN"); tok && !tok->empty()) {
    c.admin.token = *tok;
    c.admin.token_source = "PIPEHOOK_ADMIN_TOKEN";
  }
  // libpq's own variable: it would win inside libpq anyway, so it wins here and is shown as such.
  if (auto pw = env("PGPASSWORD"); pw && !pw->empty() && c.store.backend == store_backend::postgres) {
    c.store.password = *pw;
    c.store.password_source = "PGPASSWORD";
  }
  if (auto pw = env("PIPEHOOK_AUTH_PASSWORD"); pw && !pw->empty()) {
    c.auth.password = *pw;
    c.auth.password_source = "PIPEHOOK_AUTH_PASSWORD";
  }
  // An API token from the environment replaces whichever token the file set.
  if (auto tok = env("PIPEDRIVE_API_TOKEN"); tok && !tok->empty()) {
    c.pipedrive.api_token = *tok;
    c.pipedrive.api_token_source = "PIPEDRIVE_API_TOKEN";
    c.pipedrive.oauth_token.clear();
    c.pipedrive.oauth_token_source.clear();
  }
  // The proxies a container's network puts in front (its compose file knows their addresses).
  if (auto list = env("PIPEHOOK_TRUSTED_PROXIES"); list && list->find_first_not_of(" ,") != std::string::npos) {
    c.server.trusted_proxies.clear();
    std::string item;
    std::istringstream in(*list);
    while (std::getline(in, item, ',')) {
      item.erase(0, item.find_first_not_of(' '));
      item.erase(item.find_last_not_of(' ') + 1);
      if (item.empty()) continue;
      if (item != "unix")
        if (auto r = parse_cidr(item, "PIPEHOOK_TRUSTED_PROXIES"); !r) return r.error();
      c.server.trusted_proxies.push_back(item);
    }
  }
  return {};
}

bool blank(const std::string& s) { return s.find_first_not_of(" \t\r\n") == std::string::npos; }

// What is allowed but unwise about secrets, once the file and the environment are both applied.
void secret_warnings(config& c, const std::string& path) {
  if (!path.empty() && !c.inline_secrets.empty()) {
    if (const auto mode = readable_by_others(path); !mode.empty()) {
      std::string keys;
      for (const auto& k : c.inline_secrets) keys += (keys.empty() ? "" : ", ") + k;
      c.warnings.push_back("config file \"" + path + "\" holds secrets (" + keys + ") and is readable by group or others (" +
                           mode + "): chmod 600 it, or move them to *_file keys or the environment");
    }
  }
  if (c.auth.enabled && !blank(c.auth.password) && c.auth.password.size() < 16)
    c.warnings.push_back("the webhook password (" + c.auth.password_source + ") is " + std::to_string(c.auth.password.size()) +
                         " characters long: use 16 or more (Pipedrive stores it; nobody types it)");
}

// A duration as the config writes it: "2h", "10m", "30s", "250ms".
std::string duration_value(std::int64_t ms) {
  if (ms != 0 && ms % 3'600'000 == 0) return std::to_string(ms / 3'600'000) + "h";
  if (ms != 0 && ms % 60'000 == 0) return std::to_string(ms / 60'000) + "m";
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

}  // namespace

outcome<std::string> read_secret_file(const std::string& path, std::string_view key, std::vector<std::string>& warnings) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return bad(std::string(key) + ": cannot read \"" + path + "\"");
  if (const auto mode = readable_by_others(path); !mode.empty())
    warnings.push_back(std::string(key) + ": \"" + path + "\" holds a secret and is readable by group or others (" + mode +
                       "): chmod 600 it");
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  if (s.empty()) return bad(std::string(key) + ": \"" + path + "\" is empty");
  return s;
}


env_lookup process_env() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (!v) return std::nullopt;
    return std::string(v);
  };
}

outcome<config> parse_config(std::string_view text, std::string_view source_name, const env_lookup& env) {
  config c;
  c.source = std::string(source_name);
  toml::table parsed;
  try {  // Debian's toml++ is built with exceptions: turn its parse error into a value here
    parsed = toml::parse(text, source_name);
  } catch (const toml::parse_error& err) {
    std::ostringstream os;
    os << source_name << ":" << err.source().begin.line << ":" << err.source().begin.column << ": "
       << err.description();
    return bad(os.str());
  }
  auto applied = apply(parsed, c);
  if (!applied) {
    failure f = applied.error();
    f.message = std::string(source_name) + ": " + f.message;
    return f;
  }
  if (auto r = apply_env(c, env); !r) return r.error();
  return c;
}

outcome<config> load_config(const std::string& path, const env_lookup& env) {
  if (path.empty()) {
    config c;
    c.source = "(defaults)";
    if (auto r = apply_env(c, env); !r) return r.error();
    secret_warnings(c, path);
    return c;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return bad("cannot read config file \"" + path + "\"");
  std::stringstream ss;
  ss << in.rdbuf();
  auto c = parse_config(ss.str(), path, env);
  if (c) secret_warnings(*c, path);
  return c;
}

outcome<void> check_serve_ready(const config& c) {
  if (c.auth.enabled && c.auth.password.empty())
    return bad("no webhook password: set PIPEHOOK_AUTH_PASSWORD, auth.password or auth.password_file "
               "(or disable Basic auth explicitly with auth.enabled = false)");
  if (c.auth.enabled && blank(c.auth.password))
    return bad("the webhook password (" + c.auth.password_source + ") is only white space");
  if (c.admin.enabled && !c.admin.token.empty() && blank(c.admin.token))
    return bad("the admin token (" + c.admin.token_source + ") is only white space");
  if (c.admin.enabled && c.admin.token.empty() && !is_loopback_host(c.admin.host))
    return bad("admin.listen = " + c.admin.host + " is reachable beyond this machine: set an admin token "
               "(PIPEHOOK_ADMIN_TOKEN, admin.token or admin.token_file), or listen on 127.0.0.1");
  if (c.admin.enabled && c.admin.host == c.server.host && c.admin.port == c.server.port && c.admin.port != 0)
    return bad("admin.listen and server.listen are the same address: the admin API needs its own listener");
  return {};
}

outcome<void> check_pipedrive_ready(const config& c) {
  if (c.pipedrive.api_token.empty() && c.pipedrive.oauth_token.empty())
    return bad("no Pipedrive token: set PIPEDRIVE_API_TOKEN, pipedrive.api_token(_file) or pipedrive.oauth_token(_file)");
  return {};
}

outcome<void> check_registrar_ready(const config& c) {
  if (auto ready = check_pipedrive_ready(c); !ready) return ready;
  if (c.registrar.subscription_url.empty())
    return bad("registrar.subscription_url is not set: the public URL Pipedrive should call");
  if (c.registrar.webhooks.empty()) return bad("registrar.webhooks is empty: list the [[registrar.webhooks]] to create");
  if (c.auth.enabled && c.auth.password.empty())
    return bad("no webhook password to give Pipedrive: set PIPEHOOK_AUTH_PASSWORD, auth.password or auth.password_file");
  return {};
}

namespace {

toml::array string_array(const std::vector<std::string>& v) {
  toml::array a;
  for (const auto& s : v) a.push_back(s);
  return a;
}

toml::array duration_array(const std::vector<std::int64_t>& v) {
  toml::array a;
  for (auto ms : v) a.push_back(duration_value(ms));
  return a;
}

std::string listen_value(const std::string& host, std::uint16_t port) {
  return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

bool secret_key(std::string_view k) {
  return k.find("secret") != std::string::npos || k.find("password") != std::string::npos || k.find("token") != std::string::npos;
}

// A secret as shown: masked when set. Where it came from goes to the header comment.
std::string masked(const std::string& v) { return v.empty() ? "" : "********"; }

toml::table handler_table(const handler_config& h) {
  toml::table t{{"name", h.name}, {"type", h.type}, {"ordered", h.ordered}, {"concurrency", static_cast<std::int64_t>(h.concurrency)}};
  if (!h.rate_text.empty()) {
    t.insert_or_assign("rate", h.rate_text);
    t.insert_or_assign("rate_burst", static_cast<std::int64_t>(h.rate_burst));
  }
  t.insert_or_assign("pause_after", static_cast<std::int64_t>(h.pause_after));
  t.insert_or_assign("pause_for", duration_value(h.pause_for_ms));
  t.insert_or_assign("pause_max", duration_value(h.pause_max_ms));
  for (const auto& [k, v] : h.settings) {
    if (secret_key(k)) {
      t.insert_or_assign(k, "********");
    } else if (auto* sv = std::get_if<std::string>(&v)) {
      t.insert_or_assign(k, *sv);
    } else if (auto* iv = std::get_if<std::int64_t>(&v)) {
      t.insert_or_assign(k, *iv);
    } else if (auto* dv = std::get_if<double>(&v)) {
      t.insert_or_assign(k, *dv);
    } else if (auto* bv = std::get_if<bool>(&v)) {
      t.insert_or_assign(k, *bv);
    } else if (auto* lv = std::get_if<std::vector<std::string>>(&v)) {
      t.insert_or_assign(k, string_array(*lv));
    } else if (auto* mv = std::get_if<std::map<std::string, std::string>>(&v)) {
      toml::table m;
      // Header values often carry credentials: shown only when they reference the environment.
      for (const auto& [mk, mvv] : *mv) m.insert_or_assign(mk, mvv.rfind("${", 0) == 0 ? mvv : std::string("********"));
      t.insert_or_assign(k, std::move(m));
    }
  }
  if (!h.match.changed.empty()) t.insert_or_assign("when_changed", string_array(h.match.changed));
  t.insert_or_assign("backfill", h.match.backfill);
  t.insert_or_assign("match", toml::table{{"entity", string_array(h.match.entity)},
                                          {"action", string_array(h.match.action)},
                                          {"company_id", string_array(h.match.company_id)}});
  t.insert_or_assign("retry", toml::table{{"schedule", duration_array(h.retry.schedule_ms)},
                                          {"max_age", duration_value(h.retry.max_age_ms)},
                                          {"max_attempts", static_cast<std::int64_t>(h.retry.max_attempts)}});
  return t;
}

// The effective configuration as a TOML document that load_config reads back as the same
// configuration (secrets masked). Keys at their defaults are written too: it says what runs.
toml::table effective_table(const config& c) {
  toml::table server{{"listen", c.server.unix_path.empty() ? listen_value(c.server.host, c.server.port) : "unix:" + c.server.unix_path},
                     {"path", c.server.path},
                     {"max_body_bytes", static_cast<std::int64_t>(c.server.max_body_bytes)},
                     {"max_connections", static_cast<std::int64_t>(c.server.max_connections)},
                     {"read_timeout", duration_value(c.server.read_timeout_ms)},
                     {"idle_timeout", duration_value(c.server.idle_timeout_ms)},
                     {"shutdown_timeout", duration_value(c.server.shutdown_timeout_ms)},
                     {"threads", static_cast<std::int64_t>(c.server.threads)},
                     {"trusted_proxies", string_array(c.server.trusted_proxies)},
                     {"allow_from", string_array(c.server.allow_from)}};
  if (!c.server.replica_id.empty()) server.insert_or_assign("replica_id", c.server.replica_id);  // else "<host>-<pid>"
  if (!c.server.unix_path.empty()) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", c.server.socket_mode);
    server.insert_or_assign("socket_mode", std::string(mode));
  }
  toml::table retention{{"interval", duration_value(c.store.retention_interval_ms)}};
  if (c.store.retention_max_age_ms) retention.insert_or_assign("max_age", duration_value(c.store.retention_max_age_ms));
  if (c.store.retention_max_bytes) retention.insert_or_assign("max_bytes", static_cast<std::int64_t>(c.store.retention_max_bytes));
  const auto& p = c.pipedrive;
  const auto& g = c.registrar;
  toml::array webhooks;
  for (const auto& w : g.webhooks) webhooks.push_back(toml::table{{"event_action", w.event_action}, {"event_object", w.event_object}});
  toml::array handlers;
  for (const auto& h : c.handlers) handlers.push_back(handler_table(h));
  toml::table registrar{{"enabled", g.enabled},
                        {"subscription_url", g.subscription_url},
                        {"version", g.version},
                        {"name", g.name},
                        {"user_id", g.user_id},
                        {"prune", g.prune},
                        {"delete_on_shutdown", g.delete_on_shutdown},
                        {"resync_interval", duration_value(g.resync_interval_ms)},
                        {"takeover_check", duration_value(g.takeover_check_ms)}};
  if (!webhooks.empty()) registrar.insert_or_assign("webhooks", std::move(webhooks));
  toml::table doc{
      {"server", std::move(server)},
      {"auth", toml::table{{"enabled", c.auth.enabled}, {"user", c.auth.user}, {"password", masked(c.auth.password)}}},
      {"admin", toml::table{{"enabled", c.admin.enabled},
                            {"listen", listen_value(c.admin.host, c.admin.port)},
                            {"token", masked(c.admin.token)},
                            {"allowed_hosts", string_array(c.admin.allowed_hosts)}}},
      {"store", toml::table{{"backend", c.store.backend == store_backend::postgres ? "postgres" : "sqlite"},
                            {"path", c.store.path},
                            {"durability", c.store.sync == durability::full ? "full" : "normal"},
                            {"queue_capacity", static_cast<std::int64_t>(c.store.queue_capacity)},
                            {"pool_size", static_cast<std::int64_t>(c.store.pool_size)},
                            {"batch_max", static_cast<std::int64_t>(c.store.batch_max)},
                            {"busy_timeout", duration_value(c.store.busy_timeout_ms)},
                            {"retry_after", duration_value(c.store.retry_after_s * 1000LL)},
                            {"retention", std::move(retention)}}},
      {"log", toml::table{{"level", c.log.level}, {"format", c.log.format}, {"file", c.log.file}}},
      {"pipedrive", toml::table{{"api_base", p.api_base},
                                {"api_token", masked(p.api_token)},
                                {"oauth_token", masked(p.oauth_token)},
                                {"ca_file", p.ca_file},
                                {"connect_timeout", duration_value(p.connect_timeout_ms)},
                                {"timeout", duration_value(p.timeout_ms)},
                                {"max_attempts", static_cast<std::int64_t>(p.max_attempts)},
                                {"retry_base", duration_value(p.retry_base_ms)},
                                {"retry_max", duration_value(p.retry_max_ms)},
                                {"fields_refresh", duration_value(p.fields_refresh_ms)}}},
      {"registrar", std::move(registrar)},
      {"backfill", toml::table{{"enabled", c.backfill.enabled},
                               {"min_gap", duration_value(c.backfill.min_gap_ms)},
                               {"max_window", duration_value(c.backfill.max_window_ms)},
                               {"max_calls", static_cast<std::int64_t>(c.backfill.max_calls)},
                               {"page_size", static_cast<std::int64_t>(c.backfill.page_size)},
                               {"objects", string_array(c.backfill.objects)},
                               {"heartbeat", duration_value(c.backfill.heartbeat_ms)}}},
      {"alerts", toml::table{{"url", c.alerts.url},
                             {"signing_secret", masked(c.alerts.signing_secret)},
                             {"ca_file", c.alerts.ca_file},
                             {"timeout", duration_value(c.alerts.timeout_ms)},
                             {"max_attempts", static_cast<std::int64_t>(c.alerts.max_attempts)},
                             {"max_per_hour", static_cast<std::int64_t>(c.alerts.max_per_hour)},
                             {"quiet", duration_value(c.alerts.quiet_ms)}}}};
  if (!handlers.empty()) doc.insert_or_assign("handlers", std::move(handlers));
  if (c.store.backend == store_backend::postgres) {
    auto* store = doc["store"].as_table();
    store->insert_or_assign("url", mask_url_password(c.store.url));
    store->insert_or_assign("password", masked(c.store.password));
    store->insert_or_assign("connect_timeout", duration_value(c.store.connect_timeout_ms));
    store->insert_or_assign("claim_lease", duration_value(c.store.claim_lease_ms));
  }
  return doc;
}

}  // namespace

std::string render_effective(const config& c) {
  std::ostringstream os;
  os << "# effective configuration (source: " << c.source << ")\n";
  auto secret = [&](const char* key, const std::string& v, const std::string& from) {
    os << "# " << key << ": " << (v.empty() ? "not set" : "set, from " + from) << "\n";
  };
  secret("auth.password", c.auth.password, c.auth.password_source);
  secret("admin.token", c.admin.token, c.admin.token_source);
  secret("pipedrive.api_token", c.pipedrive.api_token, c.pipedrive.api_token_source);
  secret("pipedrive.oauth_token", c.pipedrive.oauth_token, c.pipedrive.oauth_token_source);
  if (c.store.backend == store_backend::postgres) {
    const bool in_url = mask_url_password(c.store.url) != c.store.url;
    secret("store.password", c.store.password.empty() && in_url ? std::string("*") : c.store.password,
           c.store.password.empty() ? "store.url" : c.store.password_source);
  }
  os << "\n" << toml::toml_formatter(effective_table(c), toml::toml_formatter::default_flags & ~toml::format_flags::indentation) << "\n";
  return os.str();
}

std::optional<double> parse_rate(std::string_view text) {
  const auto slash = text.find('/');
  if (slash == std::string_view::npos || slash == 0) return std::nullopt;
  double n = 0;
  const auto number = text.substr(0, slash);
  const auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), n);
  if (ec != std::errc() || end != number.data() + number.size() || !(n > 0) || n > 1e6) return std::nullopt;
  const auto unit = text.substr(slash + 1);
  if (unit == "s") return n;
  if (unit == "m") return n / 60.0;
  if (unit == "h") return n / 3600.0;
  return std::nullopt;
}

}  // namespace pipehook::config
