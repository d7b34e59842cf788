#include "pipehook/dispatch/handler.hpp"

#include "pipehook/core/time.hpp"

#include <cerrno>
#include <cstring>
#include <map>
#include <unistd.h>
#include <mutex>

namespace pipehook::dispatch {
namespace {

failure bad(std::string message) { return make_failure(errc::invalid_config, std::move(message)); }

struct registry {
  std::mutex mu;
  std::map<std::string, factory> types;
};

registry& the_registry() {
  static registry r;
  return r;
}

}  // namespace

const config::setting_value* settings_reader::find(const std::string& key) {
  used_.insert(key);
  auto it = h_.settings.find(key);
  return it == h_.settings.end() ? nullptr : &it->second;
}

outcome<std::string> settings_reader::string(const std::string& key, std::string fallback) {
  const auto* v = find(key);
  if (!v) return fallback;
  if (const auto* s = std::get_if<std::string>(v)) return *s;
  return bad(name(key) + " must be a string");
}

outcome<bool> settings_reader::boolean(const std::string& key, bool fallback) {
  const auto* v = find(key);
  if (!v) return fallback;
  if (const auto* b = std::get_if<bool>(v)) return *b;
  return bad(name(key) + " must be true or false");
}

outcome<std::int64_t> settings_reader::integer(const std::string& key, std::int64_t fallback, std::int64_t min,
                                               std::int64_t max) {
  const auto* v = find(key);
  if (!v) return fallback;
  const auto* i = std::get_if<std::int64_t>(v);
  if (!i) return bad(name(key) + " must be an integer");
  if (*i < min || *i > max)
    return bad(name(key) + " must be between " + std::to_string(min) + " and " + std::to_string(max));
  return *i;
}

outcome<std::int64_t> settings_reader::duration_ms(const std::string& key, std::int64_t fallback, std::int64_t min,
                                                   std::int64_t max) {
  const auto* v = find(key);
  if (!v) return fallback;
  std::optional<std::int64_t> ms;
  if (const auto* i = std::get_if<std::int64_t>(v)) ms = *i * 1000;
  if (const auto* s = std::get_if<std::string>(v)) ms = parse_duration_ms(*s);
  if (!ms) return bad(name(key) + " must be a duration like \"500ms\", \"10s\", \"5m\" or a number of seconds");
  if (*ms < min || *ms > max)
    return bad(name(key) + " must be between " + std::to_string(min) + "ms and " + std::to_string(max) + "ms");
  return *ms;
}

outcome<std::map<std::string, std::string>> settings_reader::table(const std::string& key) {
  const auto* v = find(key);
  if (!v) return std::map<std::string, std::string>{};
  if (const auto* t = std::get_if<std::map<std::string, std::string>>(v)) return *t;
  return bad(name(key) + " must be a table of strings, like { Authorization = \"${SINK_TOKEN}\" }");
}

outcome<std::string> settings_reader::one_of(const std::string& key, std::string fallback,
                                             std::initializer_list<std::string_view> allowed) {
  auto v = string(key, std::move(fallback));
  if (!v) return v;
  std::string list;
  for (auto a : allowed) {
    if (*v == a) return v;
    list += (list.empty() ? "" : ", ") + std::string(a);
  }
  return bad(name(key) + " must be one of " + list + " (got \"" + *v + "\")");
}

outcome<std::string> settings_reader::readable_file(const std::string& key) {
  auto path = string(key);
  if (!path || path->empty() || ::access(path->c_str(), R_OK) == 0) return path;
  return bad(name(key) + ": cannot read " + *path + ": " + std::strerror(errno));
}

outcome<settings_reader::tls_files> settings_reader::tls() {
  tls_files t;
  for (auto [key, out] : {std::pair<const char*, std::string*>{"ca_file", &t.ca_file}, {"client_cert", &t.client_cert},
                          {"client_key", &t.client_key}}) {
    auto v = readable_file(key);
    if (!v) return v.error();
    *out = *v;
  }
  if (t.client_cert.empty() != t.client_key.empty())
    return bad(name("client_cert") + " and " + name("client_key") + " go together");
  return t;
}

outcome<void> settings_reader::finish() const {
  for (const auto& [key, value] : h_.settings)
    if (!used_.count(key)) return bad("unknown key '" + name(key) + "' for a handler of type " + h_.type);
  return {};
}

void register_handler_type(const std::string& type, factory f) {
  auto& r = the_registry();
  std::lock_guard lk(r.mu);
  r.types[type] = std::move(f);
}

std::vector<std::string> handler_types() {
  auto& r = the_registry();
  std::lock_guard lk(r.mu);
  std::vector<std::string> out;
  for (const auto& [k, v] : r.types) out.push_back(k);
  return out;
}

outcome<std::unique_ptr<handler>> make_handler(const config::handler_config& h, boost::asio::any_io_executor ex) {
  factory f;
  {
    auto& r = the_registry();
    std::lock_guard lk(r.mu);
    auto it = r.types.find(h.type);
    if (it != r.types.end()) f = it->second;
  }
  if (!f) {
    std::string known;
    for (const auto& t : handler_types()) known += (known.empty() ? "" : ", ") + t;
    return bad(h.where + ".type \"" + h.type + "\" is not a handler type (known: " + known + ")");
  }
  settings_reader s(h);
  auto made = f(h, s, ex);
  if (!made) return made.error();
  if (auto done = s.finish(); !done) return done.error();
  return made;
}

outcome<std::string> expand_env(const std::string& value, const std::string& key_name, const config::env_lookup& env) {
  std::string out;
  std::size_t pos = 0;
  while (pos < value.size()) {
    const auto open = value.find("${", pos);
    if (open == std::string::npos) {
      out += value.substr(pos);
      break;
    }
    const auto close = value.find('}', open);
    if (close == std::string::npos) return bad(key_name + ": unclosed \"${\"");
    out += value.substr(pos, open - pos);
    const std::string var = value.substr(open + 2, close - open - 2);
    auto v = env(var);
    if (!v) return bad(key_name + " refers to the environment variable " + var + ", which is not set");
    out += *v;
    pos = close + 1;
  }
  return out;
}

}  // namespace pipehook::dispatch
