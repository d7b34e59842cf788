// `pipehook events copy`: a log into PostgreSQL, batch by batch, keeping ids.

#include "pipehook/store/copy.hpp"

#include "pipehook/store/outbox.hpp"
#include "pipehook/store/reader.hpp"
#include "rows.hpp"
#include "../body.hpp"
#include "schema.hpp"

namespace pipehook::store {
namespace {

constexpr std::string_view copy_event_sql = R"sql(
INSERT INTO events (id, event_key, version, entity, action, source_action, entity_id, company_id, user_id,
                    webhook_id, event_id, correlation_id, change_source, type, host, merged_to_id,
                    merged_from_id, occurred_at, received_at, attempt, is_bulk, deliveries, last_attempt,
                    last_received_at, body_z, body_dict)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26)
ON CONFLICT (event_key) DO NOTHING
RETURNING id)sql";

constexpr std::string_view copy_quarantine_sql =
    "INSERT INTO quarantine (id, received_at, reason, content_type, remote, body) VALUES ($1, $2, $3, $4, $5, $6) "
    "ON CONFLICT (id) DO NOTHING RETURNING id";

constexpr std::string_view copy_delivery_sql = R"sql(
INSERT INTO deliveries (id, handler, event_id, state, attempts, due_at, created_at, updated_at, order_key, last_error, last_error_at)
VALUES ($1, $2, $3, 'pending', $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (handler, event_id) DO NOTHING
RETURNING id)sql";

// Runs a pipeline in one transaction; the number of statements that inserted a row.
outcome<std::int64_t> run_batch(PGconn* c, pg::pipeline& p, std::string_view what) {
  auto results = p.run(std::chrono::seconds(120));
  if (!results) {
    (void)pg::exec(c, "ROLLBACK");
    failure f = results.error();
    if (f.message.find("duplicate key value violates unique constraint \"events_pkey\"") != std::string::npos)
      f.message = "the target already holds a different event under an id of the source: copy into an empty log, or "
                  "one an earlier copy of this source began (" + f.message + ")";
    f.message = std::string(what) + ": " + f.message;
    return f;
  }
  std::int64_t inserted = 0;
  for (const auto& r : *results)
    if (PQresultStatus(r.get()) == PGRES_TUPLES_OK) inserted += PQntuples(r.get());
  return inserted;
}

}  // namespace

outcome<copy_progress> copy_log(const location& from, const location& to, int batch,
                                const std::function<void(const copy_progress&)>& progress) {
  if (!to.is_postgres()) return make_failure(errc::invalid_argument, "the target must be a PostgreSQL log (store.backend = \"postgres\")");
  if (from.is_postgres() && from.url == to.url) return make_failure(errc::invalid_argument, "the source and the target are the same log");
  auto rd = reader::open(from);
  if (!rd) return rd.error();
  auto ob = outbox::open(from);
  if (!ob) return ob.error();
  auto target = pg::connect(pg::options_of(to));
  if (!target) return target.error();
  PGconn* c = target->get();
  if (auto m = pg::migrate(c); !m) return m.error();
  for (auto [name, sql] : {std::pair{"copy_event", copy_event_sql}, std::pair{"copy_quarantine", copy_quarantine_sql},
                           std::pair{"copy_delivery", copy_delivery_sql}})
    if (auto r = pg::prepare(c, name, sql); !r) return r.error();

  copy_progress out;
  auto total = (*rd)->count_events();
  if (!total) return total.error();
  out.total = *total;

  // Resume: after the highest id the target holds, when that event is the source's event too.
  event_filter f;
  f.ascending = true;
  f.limit = batch;
  auto top = pg::exec(c, "SELECT id, event_key FROM events ORDER BY id DESC LIMIT 1");
  if (!top) return top.error();
  if (PQntuples(top->get()) == 1) {
    const std::int64_t id = pg::integer(top->get(), 0, 0);
    auto same = (*rd)->get(id);
    if (same && same->ev.event_key == pg::text(top->get(), 0, 1)) {
      f.after_id = id;
      auto counted = pg::exec(c, "SELECT count(*) FROM events WHERE id <= " + std::to_string(id));
      if (counted) out.seen = pg::integer(counted->get(), 0, 0);
    }
  }

  for (;;) {
    auto page = (*rd)->list(f, true);
    if (!page) return page.error();
    if (page->empty()) break;
    pg::pipeline p(c);
    p.send("BEGIN");
    for (const auto& se : *page) {
      const auto& e = se.ev;
      pg::params ps;
      ps.integer(se.id).text(e.event_key).integer(e.version).text(e.entity).text(e.action).text(e.source_action);
      for (const std::string* s : {&e.entity_id, &e.company_id, &e.user_id, &e.webhook_id, &e.event_id, &e.correlation_id,
                                   &e.change_source, &e.type, &e.host, &e.merged_to_id, &e.merged_from_id})
        ps.text_or_null(*s);
      ps.integer(e.occurred_at_us).integer(e.received_at_us).integer(e.attempt).integer(e.is_bulk ? 1 : 0)
          .integer(se.deliveries).integer(se.last_attempt).integer(se.last_received_at_us);
      const detail::packed_body packed = detail::pack_body(e.body);
      ps.bytes(packed.bytes).integer(packed.dict);
      p.send_prepared("copy_event", ps);
    }
    p.send("COMMIT");
    auto inserted = run_batch(c, p, "copy events");
    if (!inserted) return inserted.error();
    out.copied += *inserted;
    out.seen += static_cast<std::int64_t>(page->size());
    f.after_id = page->back().id;
    if (progress) progress(out);
  }

  // Quarantined bodies (few): newest first from the source, each keeping its id.
  std::optional<std::int64_t> before;
  for (;;) {
    auto rows = (*rd)->quarantine(before, batch);
    if (!rows) return rows.error();
    if (rows->empty()) break;
    pg::pipeline p(c);
    p.send("BEGIN");
    for (const auto& row : *rows) {
      auto full = (*rd)->quarantined(row.id);
      if (!full) return full.error();
      pg::params ps;
      ps.integer(full->id).integer(full->received_at_us).text(full->reason).text_or_null(full->content_type)
          .text_or_null(full->remote).text(full->body);
      p.send_prepared("copy_quarantine", ps);
    }
    p.send("COMMIT");
    auto inserted = run_batch(c, p, "copy quarantine");
    if (!inserted) return inserted.error();
    out.quarantined += *inserted;
    before = rows->back().id;
  }

  // Deliveries still owed to a handler (settled ones have done their work).
  std::int64_t after = 0;
  for (;;) {
    auto rows = (*ob)->pending_rows(after, batch);
    if (!rows) return rows.error();
    if (rows->empty()) break;
    pg::pipeline p(c);
    p.send("BEGIN");
    for (const auto& d : *rows) {
      pg::params ps;
      ps.integer(d.id).text(d.handler).integer(d.event_id).integer(d.attempts).integer(d.due_at_us).integer(d.created_at_us)
          .integer(d.updated_at_us).text_or_null(d.order_key).text_or_null(d.last_error);
      if (d.last_error_at_us) ps.integer(d.last_error_at_us);
      else ps.null();
      p.send_prepared("copy_delivery", ps);
    }
    p.send("COMMIT");
    auto inserted = run_batch(c, p, "copy deliveries");
    if (!inserted) return inserted.error();
    out.deliveries += *inserted;
    after = rows->back().id;
  }

  // New rows written by pipehook on the target get ids after the copied ones.
  for (const char* table : {"events", "quarantine", "deliveries"}) {
    const std::string t(table);
    auto r = pg::exec(c, "SELECT setval(pg_get_serial_sequence('" + t + "', 'id'), greatest((SELECT max(id) FROM " + t +
                             "), 1))");
    if (!r) return r.error();
  }
  if (progress) progress(out);
  return out;
}

}  // namespace pipehook::store
