// One store interface, two backends: where a location leads (src/store/sqlite/ holds SQLite's SQL,
// src/store/postgres/ PostgreSQL's), and what both share.
#include "columns.hpp"
#include "pipehook/core/url.hpp"

#include <iterator>
#include "pipehook/store/leadership.hpp"
#include "pipehook/store/outbox.hpp"
#include "pipehook/store/presence.hpp"
#include "pipehook/store/reader.hpp"

#include <cstdio>
#include <unistd.h>
#include "pipehook/store/retention.hpp"

namespace pipehook::store {

// Each backend's own openers (src/store/sqlite/, src/store/postgres/).
outcome<std::unique_ptr<reader>> open_sqlite_reader(const std::string& path);
outcome<std::unique_ptr<reader>> open_postgres_reader(const location& where);
outcome<std::unique_ptr<outbox>> open_sqlite_outbox(const std::string& path);
outcome<std::unique_ptr<outbox>> open_postgres_outbox(const location& where, const claim_options& claims);
outcome<std::unique_ptr<presence>> open_postgres_presence(const location& where, const replica_identity& who,
                                                          std::chrono::milliseconds lease);
outcome<std::int64_t> purge_before_sqlite(const std::string& path, std::int64_t before_us, int batch);
outcome<std::int64_t> purge_before_postgres(const location& where, std::int64_t before_us, int batch);
std::unique_ptr<leadership> open_postgres_leadership(const location& where, const std::string& role,
                                                     std::chrono::milliseconds every);

namespace {
// A SQLite log belongs to one process: it has every role.
struct sole_process final : leadership {
  bool check() override { return true; }
};
// ... and it is the only replica: its claims never expire.
struct sole_replica final : presence {
  std::chrono::steady_clock::time_point claims_hold_until() const override { return std::chrono::steady_clock::time_point::max(); }
  outcome<int> others_live() override { return 0; }
  void leave() override {}
};
}  // namespace

replica_identity this_replica(const std::string& configured_id) {
  replica_identity who;
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0 || !host[0]) std::snprintf(host, sizeof host, "localhost");
  who.host = host;
  who.pid = static_cast<std::int64_t>(getpid());
  who.id = configured_id.empty() ? who.host + "-" + std::to_string(who.pid) : configured_id;
  who.version = PIPEHOOK_VERSION;
  return who;
}

outcome<std::unique_ptr<presence>> presence::open(const location& where, const replica_identity& who,
                                                  std::chrono::milliseconds lease) {
  if (where.is_postgres()) return open_postgres_presence(where, who, lease);
  return std::unique_ptr<presence>(std::make_unique<sole_replica>());
}

std::unique_ptr<leadership> leadership::open(const location& where, const std::string& role,
                                             std::chrono::milliseconds every) {
  if (where.is_postgres()) return open_postgres_leadership(where, role, every);
  return std::make_unique<sole_process>();
}

outcome<field_maps> reader::all_fields() {
  field_maps out;
  for (std::string_view object : field_objects) {
    auto f = fields(std::string(object));
    if (!f) return f.error();
    if (!f->empty()) out.emplace(object, std::move(*f));
  }
  return out;
}

outcome<std::unique_ptr<reader>> reader::open(const location& where) {
  return where.is_postgres() ? open_postgres_reader(where) : open_sqlite_reader(where.path);
}

outcome<std::unique_ptr<outbox>> outbox::open(const location& where, const claim_options& claims) {
  if (!where.is_postgres()) return open_sqlite_outbox(where.path);
  claim_options c = claims;
  if (c.replica_id.empty()) c.replica_id = this_replica().id;
  return open_postgres_outbox(where, c);
}

outcome<std::int64_t> purge_before(const location& where, std::int64_t before_us, int batch) {
  return where.is_postgres() ? purge_before_postgres(where, before_us, batch) : purge_before_sqlite(where.path, before_us, batch);
}

namespace detail {

std::string event_columns(std::string_view alias) {
  static constexpr std::string_view names[] = {
      "id",           "event_key",  "version",      "entity",         "action",    "source_action",
      "entity_id",    "company_id", "user_id",      "webhook_id",     "event_id",  "correlation_id",
      "change_source", "type",      "host",         "merged_to_id",   "merged_from_id", "occurred_at",
      "received_at",  "attempt",    "is_bulk",      "deliveries",     "last_attempt", "last_received_at"};
  static_assert(std::size(names) == event_column_count);
  std::string out;
  for (auto n : names) {
    if (!out.empty()) out += ", ";
    if (!alias.empty()) out += std::string(alias) + ".";
    out += n;
  }
  return out;
}

}  // namespace detail

outcome<std::int64_t> outbox::count_matching(const event_filter& f, const event_predicate& p) {
  std::int64_t n = 0;
  auto r = for_each_matching(f, p, [&](const event::event&, std::int64_t) { ++n; });
  if (!r) return r.error();
  return n;
}

outcome<std::int64_t> outbox::replay(const std::string& handler, bool ordered, const event_filter& f, const event_predicate& p) {
  std::vector<std::pair<std::int64_t, std::string>> rows;  // event id, order key
  auto r = for_each_matching(f, p, [&](const event::event& ev, std::int64_t id) {
    rows.emplace_back(id, ordered ? order_key_of(ev) : std::string());
  });
  if (!r) return r.error();
  if (auto q = requeue(handler, rows); !q) return q.error();
  return static_cast<std::int64_t>(rows.size());
}

std::optional<double> storage_stats::compression_ratio() const {
  if (sampled_raw_bytes <= 0) return std::nullopt;
  return static_cast<double>(sampled_stored_bytes) / static_cast<double>(sampled_raw_bytes);
}

std::optional<double> storage_stats::disk_per_raw_body() const {
  if (events <= 0 || sampled <= 0 || sampled_raw_bytes <= 0) return std::nullopt;
  return static_cast<double>(bytes_on_disk) * static_cast<double>(sampled) /
         (static_cast<double>(events) * static_cast<double>(sampled_raw_bytes));
}

std::string location::describe() const { return is_postgres() ? mask_url_password(url) : path; }

std::string_view to_string(delivery_state s) {
  switch (s) {
    case delivery_state::pending: return "pending";
    case delivery_state::done: return "done";
    case delivery_state::dead: return "dead";
  }
  return "pending";
}

std::string order_key_of(const event::event& ev) { return ev.entity + "/" + ev.entity_id; }

}  // namespace pipehook::store
