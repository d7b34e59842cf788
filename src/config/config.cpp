#include "pipehook/config/config.hpp"

#include "pipehook/core/time.hpp"

#include <toml++/toml.h>

#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

namespace pipehook::config {
namespace {

failure bad(std::string message) { return make_failure(errc::invalid_config, std::move(message)); }

// Rejects keys that are not in `allowed`, naming them with their section.
outcome<void> only_known(const toml::table& t, std::string_view section, std::initializer_list<std::string_view> allowed) {
  for (const auto& [key, node] : t) {
    bool ok = false;
    for (auto a : allowed) ok = ok || key.str() == a;
    if (!ok) {
      std::string full = section.empty() ? std::string(key.str()) : std::string(section) + "." + std::string(key.str());
      return bad("unknown key '" + full + "'");
    }
  }
  return {};
}

// Typed readers: each leaves `out` alone when the key is absent and names the key on a bad value.
struct reader {
  const toml::table& t;
  std::string section;

  std::string name(std::string_view key) const { return section + "." + std::string(key); }

  outcome<void> string(std::string_view key, std::string& out) const {
    const toml::node* n = t.get(key);
    if (!n) return {};
    if (!n->is_string()) return bad(name(key) + " must be a string");
    out = n->as_string()->get();
    return {};
  }
  outcome<void> boolean(std::string_view key, bool& out) const {
    const toml::node* n = t.get(key);
    if (!n) return {};
    if (!n->is_boolean()) return bad(name(key) + " must be true or false");
    out = n->as_boolean()->get();
    return {};
  }
  template <class Int>
  outcome<void> integer(std::string_view key, Int& out, std::int64_t min, std::int64_t max) const {
    const toml::node* n = t.get(key);
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
    const toml::node* n = t.get(key);
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

outcome<const toml::table*> section(const toml::table& root, std::string_view key) {
  const toml::node* n = root.get(key);
  if (!n) return nullptr;
  if (!n->is_table()) return bad("'" + std::string(key) + "' must be a table ([" + std::string(key) + "])");
  return n->as_table();
}

outcome<void> parse_listen(const std::string& text, server_config& s) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || colon + 1 == text.size())
    return bad("server.listen must be \"host:port\", like \"127.0.0.1:8080\" or \"[::1]:8080\" (got \"" + text + "\")");
  std::string host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  const std::string port = text.substr(colon + 1);
  char* end = nullptr;
  const long p = std::strtol(port.c_str(), &end, 10);
  if (host.empty() || *end != '\0' || p < 0 || p > 65535)
    return bad("server.listen must be \"host:port\" with a port from 0 to 65535 (got \"" + text + "\")");
  s.host = host;
  s.port = static_cast<std::uint16_t>(p);
  return {};
}

outcome<std::string> read_secret_file(const std::string& path, std::string_view key) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return bad(std::string(key) + ": cannot read \"" + path + "\"");
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  if (s.empty()) return bad(std::string(key) + ": \"" + path + "\" is empty");
  return s;
}

#define PIPEHOOK_TRY(expr)          \
  do {                              \
    auto _r = (expr);               \
    if (!_r) return _r.error();     \
  } while (0)

outcome<void> apply(const toml::table& root, config& c) {
  PIPEHOOK_TRY(only_known(root, "", {"server", "auth", "store", "log"}));

  auto server = section(root, "server");
  if (!server) return server.error();
  if (*server) {
    const toml::table& t = **server;
    PIPEHOOK_TRY(only_known(t, "server", {"listen", "path", "max_body_bytes", "max_connections", "read_timeout",
                                          "idle_timeout", "shutdown_timeout", "threads"}));
    reader r{t, "server"};
    std::string listen;
    PIPEHOOK_TRY(r.string("listen", listen));
    if (!listen.empty()) PIPEHOOK_TRY(parse_listen(listen, c.server));
    PIPEHOOK_TRY(r.string("path", c.server.path));
    if (c.server.path.empty() || c.server.path[0] != '/' || c.server.path.find_first_of("?# ") != std::string::npos)
      return bad("server.path must start with '/' and hold no query, fragment or space (got \"" + c.server.path + "\")");
    PIPEHOOK_TRY(r.integer("max_body_bytes", c.server.max_body_bytes, 1024, 64LL * 1024 * 1024));
    PIPEHOOK_TRY(r.integer("max_connections", c.server.max_connections, 1, 1'000'000));
    PIPEHOOK_TRY(r.duration("read_timeout", c.server.read_timeout_ms, 100, 3'600'000));
    PIPEHOOK_TRY(r.duration("idle_timeout", c.server.idle_timeout_ms, 100, 3'600'000));
    PIPEHOOK_TRY(r.duration("shutdown_timeout", c.server.shutdown_timeout_ms, 0, 3'600'000));
    PIPEHOOK_TRY(r.integer("threads", c.server.threads, 1, 64));
  }

  auto auth = section(root, "auth");
  if (!auth) return auth.error();
  if (*auth) {
    const toml::table& t = **auth;
    PIPEHOOK_TRY(only_known(t, "auth", {"enabled", "user", "password", "password_file"}));
    reader r{t, "auth"};
    PIPEHOOK_TRY(r.boolean("enabled", c.auth.enabled));
    PIPEHOOK_TRY(r.string("user", c.auth.user));
    if (c.auth.user.find(':') != std::string::npos) return bad("auth.user must not contain ':' (Basic auth)");
    std::string password, file;
    PIPEHOOK_TRY(r.string("password", password));
    PIPEHOOK_TRY(r.string("password_file", file));
    if (!password.empty() && !file.empty()) return bad("auth.password and auth.password_file are both set: keep one");
    if (!password.empty()) c.auth.password = password, c.auth.password_source = "auth.password";
    if (!file.empty()) {
      auto secret = read_secret_file(file, "auth.password_file");
      if (!secret) return secret.error();
      c.auth.password = *secret;
      c.auth.password_source = "auth.password_file (" + file + ")";
    }
  }

  auto store = section(root, "store");
  if (!store) return store.error();
  if (*store) {
    const toml::table& t = **store;
    PIPEHOOK_TRY(only_known(t, "store", {"path", "durability", "queue_capacity", "batch_max", "busy_timeout", "retry_after"}));
    reader r{t, "store"};
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
  }

  auto log = section(root, "log");
  if (!log) return log.error();
  if (*log) {
    const toml::table& t = **log;
    PIPEHOOK_TRY(only_known(t, "log", {"level"}));
    reader r{t, "log"};
    PIPEHOOK_TRY(r.string("level", c.log.level));
    static const std::set<std::string> levels{"trace", "debug", "info", "warn", "error", "critical", "off"};
    if (!levels.count(c.log.level))
      return bad("log.level must be one of trace, debug, info, warn, error, critical, off (got \"" + c.log.level + "\")");
  }
  return {};
}

void apply_env(config& c, const env_lookup& env) {
  if (auto pw = env("PIPEHOOK_AUTH_PASSWORD"); pw && !pw->empty()) {
    c.auth.password = *pw;
    c.auth.password_source = "PIPEHOOK_AUTH_PASSWORD";
  }
}

std::string quoted(std::string_view s) {
  std::ostringstream os;
  os << toml::value<std::string>(std::string(s));
  return os.str();
}

std::string duration_text(std::int64_t ms) {
  if (ms % 1000 == 0) return quoted(std::to_string(ms / 1000) + "s");
  return quoted(std::to_string(ms) + "ms");
}

}  // namespace

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
  apply_env(c, env);
  return c;
}

outcome<config> load_config(const std::string& path, const env_lookup& env) {
  if (path.empty()) {
    config c;
    c.source = "(defaults)";
    apply_env(c, env);
    return c;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return bad("cannot read config file \"" + path + "\"");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_config(ss.str(), path, env);
}

outcome<void> check_serve_ready(const config& c) {
  if (c.auth.enabled && c.auth.password.empty())
    return bad("no webhook password: set PIPEHOOK_AUTH_PASSWORD, auth.password or auth.password_file "
               "(or disable Basic auth explicitly with auth.enabled = false)");
  return {};
}

std::string render_effective(const config& c) {
  std::ostringstream os;
  const bool v6 = c.server.host.find(':') != std::string::npos;
  os << "# effective configuration (source: " << c.source << ")\n"
     << "[server]\n"
     << "listen = " << quoted((v6 ? "[" + c.server.host + "]" : c.server.host) + ":" + std::to_string(c.server.port)) << "\n"
     << "path = " << quoted(c.server.path) << "\n"
     << "max_body_bytes = " << c.server.max_body_bytes << "\n"
     << "max_connections = " << c.server.max_connections << "\n"
     << "read_timeout = " << duration_text(c.server.read_timeout_ms) << "\n"
     << "idle_timeout = " << duration_text(c.server.idle_timeout_ms) << "\n"
     << "shutdown_timeout = " << duration_text(c.server.shutdown_timeout_ms) << "\n"
     << "threads = " << c.server.threads << "\n\n"
     << "[auth]\n"
     << "enabled = " << (c.auth.enabled ? "true" : "false") << "\n"
     << "user = " << quoted(c.auth.user) << "\n"
     << "password = " << (c.auth.password.empty() ? "\"\"  # not set" : "\"********\"  # from " + c.auth.password_source)
     << "\n\n"
     << "[store]\n"
     << "path = " << quoted(c.store.path) << "\n"
     << "durability = " << (c.store.sync == durability::full ? "\"full\"" : "\"normal\"") << "\n"
     << "queue_capacity = " << c.store.queue_capacity << "\n"
     << "batch_max = " << c.store.batch_max << "\n"
     << "busy_timeout = " << duration_text(c.store.busy_timeout_ms) << "\n"
     << "retry_after = " << duration_text(c.store.retry_after_s * 1000LL) << "\n\n"
     << "[log]\n"
     << "level = " << quoted(c.log.level) << "\n";
  return os.str();
}

}  // namespace pipehook::config
