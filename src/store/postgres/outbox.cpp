// The outbox on PostgreSQL: the same rows and answers as SQLite's, on a connection of its own.

#include "pipehook/core/time.hpp"

#include <algorithm>
#include "pipehook/event/diff.hpp"
#include "pipehook/store/outbox.hpp"
#include "rows.hpp"
#include "schema.hpp"

namespace pipehook::store {
namespace {

// Claims due rows: the oldest claimable ones are locked (rows another replica is claiming at
// this moment are skipped, not waited for), then marked as this replica's until the lease ends.
// $1 handler, $2 now (due_at's clock), $3 limit, $4 this replica, $5 the lease in microseconds,
// $6 the rows the caller holds already.
std::string claim_sql(bool ordered) {
  const std::string now(pg::db_now_us);
  std::string sql = "WITH c AS (SELECT d.id, d.claimed_by AS previous FROM deliveries d "
                    "WHERE d.handler = $1 AND d.state = 'pending' AND d.due_at <= $2::bigint "
                    "AND (d.claimed_by IS NULL OR d.claimed_by = $4 OR d.lease_until < " + now + ") "
                    "AND d.id <> ALL($6::bigint[])";
  // Ordered: a row waits while an earlier row of its entity is pending (in flight on any replica,
  // or retrying): at most one row per entity is ever claimable.
  if (ordered)
    sql += " AND NOT EXISTS (SELECT 1 FROM deliveries p WHERE p.handler = d.handler AND p.state = 'pending' "
           "AND p.order_key IS NOT NULL AND p.order_key = d.order_key AND p.id < d.id)";
  sql += " ORDER BY d.id LIMIT $3::bigint FOR UPDATE OF d SKIP LOCKED) "
         "UPDATE deliveries d SET claimed_by = $4, lease_until = " + now + " + $5::bigint FROM c, events e "
         "WHERE d.id = c.id AND e.id = d.event_id "
         "RETURNING d.id, d.attempts, d.created_at, d.order_key, c.previous, " + pg::event_columns("e") + ", " + pg::body_columns("e");
  return sql;
}

// A bigint[] parameter as text: {1,2,3}.
std::string id_array(const std::vector<std::int64_t>& ids) {
  std::string out = "{";
  for (auto id : ids) out += (out.size() > 1 ? "," : "") + std::to_string(id);
  return out + "}";
}

class postgres_outbox final : public outbox {
 public:
  postgres_outbox(std::unique_ptr<pg::session> s, claim_options claims) : s_(std::move(s)), claims_(std::move(claims)) {}

  outcome<std::vector<pending_delivery>> due(const std::string& handler, std::int64_t now_us, int limit, bool ordered,
                                             const std::vector<std::int64_t>& held) override {
    pg::params p;
    p.text(handler).integer(now_us).integer(limit).text(claims_.replica_id).integer(claims_.lease.count() * 1000);
    p.text(id_array(held));
    auto r = run(claim_sql(ordered), p);
    if (!r) return r.error();
    std::vector<pending_delivery> out;
    for (int row = 0; row < PQntuples(r->get()); ++row) {
      pending_delivery d;
      d.id = pg::integer(r->get(), row, 0);
      d.attempts = static_cast<int>(pg::integer(r->get(), row, 1));
      d.created_at_us = pg::integer(r->get(), row, 2);
      d.order_key = pg::text(r->get(), row, 3);
      if (std::string prev = pg::text(r->get(), row, 4); prev == claims_.replica_id) d.already_mine = true;
      else d.taken_from = std::move(prev);
      auto se = std::make_shared<event::stored_event>(pg::read_event(r->get(), row, 5));
      if (auto body = pg::read_body(r->get(), row, 5 + pg::event_column_count, se->id)) se->ev.body = std::move(*body);
      else d.unreadable = body.error().message;
      d.ev = std::move(se);
      out.push_back(std::move(d));
    }
    // UPDATE ... RETURNING keeps no order: oldest first, as promised.
    std::sort(out.begin(), out.end(), [](const pending_delivery& a, const pending_delivery& b) { return a.id < b.id; });
    return out;
  }

  outcome<std::vector<replica_info>> replicas() override {
    auto r = run("SELECT id, host, pid, version, started_at, heartbeat_at, lease_ms, heartbeat_at + lease_ms * 1000 > " +
                 std::string(pg::db_now_us) + " AS live FROM replicas ORDER BY live DESC, started_at, id");
    if (!r) return r.error();
    std::vector<replica_info> out;
    for (int row = 0; row < PQntuples(r->get()); ++row) {
      replica_info i;
      i.who.id = pg::text(r->get(), row, 0);
      i.who.host = pg::text(r->get(), row, 1);
      i.who.pid = pg::integer(r->get(), row, 2);
      i.who.version = pg::text(r->get(), row, 3);
      i.started_at_us = pg::integer(r->get(), row, 4);
      i.heartbeat_at_us = pg::integer(r->get(), row, 5);
      i.lease_ms = pg::integer(r->get(), row, 6);
      i.live = pg::text(r->get(), row, 7) == "t";
      out.push_back(std::move(i));
    }
    return out;
  }

  outcome<void> release(const std::vector<std::int64_t>& ids) override {
    if (ids.empty()) return {};
    pg::params p;
    p.text(id_array(ids)).text(claims_.replica_id);
    auto r = run("UPDATE deliveries SET claimed_by = NULL, lease_until = NULL WHERE id = ANY($1::bigint[]) AND claimed_by = $2", p);
    if (!r) return r.error();
    return {};
  }

  outcome<std::optional<std::int64_t>> next_due(const std::string& handler, std::int64_t now_us) override {
    pg::params p;
    p.text(handler).integer(now_us);
    auto r = run("SELECT min(due_at) FROM deliveries WHERE handler = $1 AND state = 'pending' AND due_at > $2::bigint", p);
    if (!r) return r.error();
    std::optional<std::int64_t> out;
    if (!PQgetisnull(r->get(), 0, 0)) out = pg::integer(r->get(), 0, 0);
    return out;
  }

  outcome<std::vector<handler_counts>> counts() override {
    auto r = run(R"sql(
SELECT handler,
       count(*) FILTER (WHERE state = 'pending' AND attempts = 0), count(*) FILTER (WHERE state = 'pending' AND attempts > 0),
       count(*) FILTER (WHERE state = 'dead'), count(*) FILTER (WHERE state = 'done'),
       min(created_at) FILTER (WHERE state = 'pending'),
       (SELECT last_error FROM deliveries l WHERE l.handler = d.handler AND l.last_error_at IS NOT NULL
        ORDER BY l.last_error_at DESC LIMIT 1),
       (SELECT max(last_error_at) FROM deliveries l WHERE l.handler = d.handler)
FROM deliveries d GROUP BY handler ORDER BY handler COLLATE "C")sql");
    if (!r) return r.error();
    std::vector<handler_counts> out;
    for (int row = 0; row < PQntuples(r->get()); ++row) {
      handler_counts c;
      c.handler = pg::text(r->get(), row, 0);
      c.pending = pg::integer(r->get(), row, 1);
      c.retrying = pg::integer(r->get(), row, 2);
      c.dead = pg::integer(r->get(), row, 3);
      c.done = pg::integer(r->get(), row, 4);
      if (!PQgetisnull(r->get(), row, 5)) c.oldest_pending_us = pg::integer(r->get(), row, 5);
      c.last_error = pg::text(r->get(), row, 6);
      c.last_error_at_us = pg::integer(r->get(), row, 7);
      out.push_back(std::move(c));
    }
    auto claimed = run("SELECT handler, claimed_by, count(*) FROM deliveries WHERE state = 'pending' AND claimed_by IS NOT NULL "
                       "AND lease_until >= " + std::string(pg::db_now_us) + " GROUP BY 1, 2 ORDER BY 1, 2");
    if (!claimed) return claimed.error();
    for (int row = 0; row < PQntuples(claimed->get()); ++row)
      for (auto& c : out)
        if (c.handler == pg::text(claimed->get(), row, 0))
          c.claims.emplace_back(pg::text(claimed->get(), row, 1), pg::integer(claimed->get(), row, 2));
    return out;
  }

  outcome<void> requeue(const std::string& handler, const std::vector<std::pair<std::int64_t, std::string>>& rows) override {
    constexpr std::string_view upsert = R"sql(
INSERT INTO deliveries (handler, event_id, state, attempts, due_at, created_at, updated_at, order_key)
VALUES ($1, $2::bigint, 'pending', 0, $3::bigint, $3::bigint, $3::bigint, $4)
ON CONFLICT (handler, event_id) DO UPDATE SET
  state = 'pending', attempts = 0, due_at = excluded.due_at, created_at = excluded.created_at,
  updated_at = excluded.updated_at, order_key = excluded.order_key, claimed_by = NULL, lease_until = NULL)sql";
    for (std::size_t start = 0; start < rows.size(); start += replay_chunk) {
      const std::int64_t now = now_us();
      auto c = s_->get();
      if (!c) return c.error();
      pg::pipeline pl(*c);
      pl.send("BEGIN");
      for (std::size_t i = start; i < std::min(rows.size(), start + replay_chunk); ++i) {
        pg::params ps;
        ps.text(handler).integer(rows[i].first).integer(now);
        ps.text_or_null(rows[i].second);
        pl.send(upsert, ps);
      }
      pl.send("COMMIT");
      if (auto done = pl.run(std::chrono::seconds(60)); !done) {
        if (PQpipelineStatus(*c) != PQ_PIPELINE_OFF) s_->discard();
        else (void)run("ROLLBACK");
        failure f2 = done.error();
        f2.message = "queue replay: " + f2.message;
        return f2;
      }
    }
    return {};
  }

  outcome<std::int64_t> retry_dead(const std::string& handler) override {
    pg::params p;
    p.text(handler).integer(now_us());
    auto r = run("UPDATE deliveries SET state = 'pending', attempts = 0, due_at = $2::bigint, created_at = $2::bigint, "
                      "updated_at = $2::bigint WHERE handler = $1 AND state = 'dead'",
                      p);
    if (!r) return r.error();
    return std::strtoll(PQcmdTuples(r->get()), nullptr, 10);
  }

  outcome<std::vector<delivery_row>> pending_rows(std::int64_t after_id, int limit) override {
    pg::params p;
    p.integer(after_id).integer(limit);
    auto r = run("SELECT " + std::string(detail::delivery_columns) +
                 " FROM deliveries WHERE state = 'pending' AND id > $1::bigint ORDER BY id LIMIT $2::bigint", p);
    if (!r) return r.error();
    std::vector<delivery_row> out;
    for (int row = 0; row < PQntuples(r->get()); ++row) out.push_back(detail::read_delivery_row(pg::pg_row{r->get(), row}));
    return out;
  }

 private:
  // One statement on the session's connection (re-opened if it was lost).
  outcome<pg::result> run(std::string_view sql, const pg::params& p = {}) {
    auto c = s_->get();
    if (!c) return c.error();
    return pg::exec(*c, sql, p);
  }

  // A page at a time; `q` is matched here, on the bodies.
  outcome<void> for_each_matching(const event_filter& f, const event_predicate& pred, const each_event& each) override {
    event_filter page = f;
    page.ascending = true;
    constexpr int chunk = 1000;
    const bool scan = !f.q.empty() || pred;  // `q`, and the predicate (when_changed), look at the body
    if (!f.q.empty() && page.q_keys.empty()) {  // `q` also finds fields by their names in Pipedrive
      pg::params kp;
      kp.text(f.q);
      auto keys = run(pg::keys_named_sql, kp);
      if (!keys) return keys.error();
      for (int row = 0; row < PQntuples(keys->get()); ++row) page.q_keys.push_back(pg::text(keys->get(), row, 0));
    }
    for (;;) {
      pg::params p;
      std::string sql = "SELECT " + pg::event_columns() + (scan ? ", " + pg::body_columns() : "") + " FROM events WHERE true";
      pg::append_filter(sql, page, p);
      p.integer(chunk);
      sql += " ORDER BY id LIMIT $" + std::to_string(p.size()) + "::bigint";
      auto r = run(sql, p);
      if (!r) return r.error();
      const int n = PQntuples(r->get());
      for (int row = 0; row < n; ++row) {
        event::stored_event se = pg::read_event(r->get(), row, 0);
        if (scan) {
          auto body = pg::read_body(r->get(), row, pg::event_column_count, se.id);
          if (!body) return body.error();
          se.ev.body = std::move(*body);
        }
        if (!f.q.empty() && !event::changes_match(se.ev.body, se.ev.version, f.q, page.q_keys)) continue;
        if (!pred || pred(se.ev)) each(se.ev, se.id);
      }
      if (n < chunk) return {};
      page.after_id = pg::integer(r->get(), n - 1, 0);
    }
  }

  std::unique_ptr<pg::session> s_;
  claim_options claims_;
};

}  // namespace

outcome<std::unique_ptr<outbox>> open_postgres_outbox(const location& where, const claim_options& claims) {
  auto s = std::make_unique<pg::session>(pg::options_of(where));
  if (auto r = s->open(); !r) return r.error();
  if (auto ok = pg::check_schema(*s->get(), where.describe()); !ok) return ok.error();
  return std::unique_ptr<outbox>(new postgres_outbox(std::move(s), claims));
}

}  // namespace pipehook::store

namespace pipehook::store {

// `pipehook events purge` on PostgreSQL: the daemon's retention batch, each its own transaction.
outcome<std::int64_t> purge_before_postgres(const location& where, std::int64_t before_us, int batch) {
  auto c = pg::connect(pg::options_of(where));
  if (!c) return c.error();
  if (auto ok = pg::check_schema(c->get(), where.describe()); !ok) return ok.error();
  std::int64_t total = 0;
  for (;;) {
    pg::params p;
    p.integer(before_us).integer(batch);
    auto r = pg::exec(c->get(), pg::purge_sql, p);
    if (!r) return r.error();
    const std::int64_t n = pg::integer(r->get(), 0, 0);
    total += n;
    if (n == 0) return total;
  }
}

}  // namespace pipehook::store
