#include "common.hpp"

#include "pipehook/core/time.hpp"

#include <algorithm>
#include <iostream>

namespace pipehook::cli {

int fail(int code, const std::string& message) {
  std::cerr << "pipehook: " << message << "\n";
  return code;
}

int fail_with(const failure& f) {
  return fail(f.code == errc::invalid_argument || f.code == errc::invalid_config ? exit_usage : exit_failed, f.message);
}

outcome<config::config> load(const std::string& path) {
  return config::load_config(path, config::process_env());
}

std::string relative(std::int64_t us) {
  const std::int64_t secs = (now_us() - us) / 1'000'000;
  if (secs < 0) return "in the future";
  if (secs < 60) return std::to_string(secs) + "s ago";
  if (secs < 3600) return std::to_string(secs / 60) + "m ago";
  if (secs < 86400) return std::to_string(secs / 3600) + "h ago";
  return std::to_string(secs / 86400) + "d ago";
}

void print_cells(const std::vector<std::vector<std::string>>& cells) {
  std::vector<std::size_t> width(cells[0].size(), 0);
  for (const auto& row : cells)
    for (std::size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  for (const auto& row : cells) {
    std::string line;
    for (std::size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(width[i] - row[i].size() + 2, ' ');
    }
    std::cout << line << "\n";
  }
}

std::string age(std::int64_t since_us) {
  std::string r = relative(since_us);
  return r.size() > 4 && r.compare(r.size() - 4, 4, " ago") == 0 ? r.substr(0, r.size() - 4) : r;
}

const config::handler_config* find_handler(const config::config& c, const std::string& name) {
  for (const auto& h : c.handlers)
    if (h.name == name) return &h;
  return nullptr;
}

std::string handler_names(const config::config& c) {
  std::string out;
  for (const auto& h : c.handlers) out += (out.empty() ? "" : ", ") + h.name;
  return out.empty() ? "none configured" : out;
}

store::location store_location(const config::config& c) {
  if (c.store.backend == config::store_backend::postgres)
    return store::location::postgres(c.store.url, c.store.password, c.store.connect_timeout_ms);
  return store::location(c.store.path);
}

outcome<std::unique_ptr<store::event_log>> open_event_log(const config::config& c, const store::writer_options& writer,
                                                          const std::string& replica_id) {
  if (c.store.backend == config::store_backend::postgres) {
    store::postgres_options o;
    static_cast<store::writer_options&>(o) = writer;
    o.url = c.store.url;
    o.password = c.store.password;
    o.connect_timeout_ms = c.store.connect_timeout_ms;
    o.lock_timeout_ms = c.store.busy_timeout_ms;
    o.replica_id = replica_id.empty() ? store::this_replica(c.server.replica_id).id : replica_id;
    o.lease_ms = c.store.claim_lease_ms;
    return store::open_postgres_event_log(o);
  }
  store::sqlite_options o;
  static_cast<store::writer_options&>(o) = writer;
  o.path = c.store.path;
  o.synchronous_full = c.store.sync == config::durability::full;
  o.busy_timeout_ms = c.store.busy_timeout_ms;
  return store::open_sqlite_event_log(o);
}

}  // namespace pipehook::cli
