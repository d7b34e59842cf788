// The PostgreSQL event log: the shared writer queue, each batch one transaction sent as one
// pipeline (BEGIN, every statement, COMMIT: one round trip), prepared statements, and a
// connection that is re-opened with backoff after it was lost (the batch it was lost in fails:
// nothing of it is acknowledged).

#include "pipehook/core/backoff.hpp"
#include "pipehook/core/time.hpp"
#include "pipehook/core/url.hpp"
#include "pipehook/store/event_log.hpp"
#include "../queued_event_log.hpp"
#include "pg.hpp"
#include "rows.hpp"
#include "schema.hpp"

#include <spdlog/spdlog.h>

#include <random>

namespace pipehook::store {
namespace {

using detail::probe_request;
using detail::purge_request;
using detail::reparse_request;
using detail::write_item;

// A repeat of an event_key counts a delivery instead of adding a row; RETURNING tells which.
constexpr std::string_view insert_event_sql = R"sql(
INSERT INTO events (event_key, version, entity, action, source_action, entity_id, company_id, user_id,
                    webhook_id, event_id, correlation_id, change_source, type, host, merged_to_id,
                    merged_from_id, occurred_at, received_at, attempt, is_bulk, body_z, body_dict,
                    last_attempt, last_received_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $19, $18)
ON CONFLICT (event_key) DO UPDATE SET
  deliveries = events.deliveries + 1,
  last_attempt = greatest(events.last_attempt, excluded.attempt),
  last_received_at = excluded.received_at
RETURNING id, deliveries)sql";

// The outbox row of one handler, for an event that this transaction stored (deliveries = 1 right
// after its insert; a repeat in the same batch has already made it 2). A row that the dispatcher
// gets in memory is claimed by this replica from the start ($5, with a lease of $6 microseconds);
// an ordered handler's rows are claimed in order from the outbox ($5 NULL).
constexpr std::string_view insert_delivery_sql = R"sql(
INSERT INTO deliveries (handler, event_id, state, attempts, due_at, created_at, updated_at, order_key, claimed_by, lease_until)
SELECT $1, id, 'pending', 0, $3, $3, $3, $4, $5::text,
       CASE WHEN $5::text IS NULL THEN NULL ELSE (extract(epoch FROM clock_timestamp()) * 1000000)::bigint + $6::bigint END
FROM events WHERE event_key = $2 AND deliveries = 1
ON CONFLICT (handler, event_id) DO NOTHING
RETURNING id)sql";

// A verdict applies only while the row is still this replica's claim ($7): once its lease ran out
// and another replica took it over, that replica's verdict is the one that counts. The claim ends
// with the verdict (a retry is anyone's to make).
constexpr std::string_view update_delivery_sql =
    "UPDATE deliveries SET state = $2, attempts = $3, due_at = $4, updated_at = $6, "
    "last_error = coalesce($5, last_error), last_error_at = CASE WHEN $5::text IS NULL THEN last_error_at ELSE $6 END, "
    "claimed_by = NULL, lease_until = NULL "
    "WHERE id = $1 AND claimed_by IS NOT DISTINCT FROM $7";

constexpr std::string_view insert_quarantine_sql =
    "INSERT INTO quarantine (received_at, reason, content_type, remote, body) VALUES ($1, $2, $3, $4, $5) RETURNING id";

// Compaction: only a row still plain (a purge or another replica's compaction may have come first).
constexpr std::string_view compact_sql =
    "UPDATE events SET body = NULL, body_z = $2, body_dict = $3 WHERE id = $1 AND body_dict IS NULL";

constexpr std::string_view probe_sql =
    "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value";

// What each statement of a pipeline stands for, to read its result.
enum class step_kind { control, event, delivery, quarantine, verdict, other, purge, compact };
struct step {
  step_kind kind;
  std::size_t item = 0;   // index in the batch
  std::string handler;    // delivery: its handler; "" for an ordered one (read in order from the outbox); verdict: the row's id
};

class postgres_event_log final : public detail::queued_event_log {
 public:
  postgres_event_log(pg::connection conn, const postgres_options& o)
      : queued_event_log(o), opts_pg_(o), conn_(std::move(conn)) {
    start("ph-writer");
  }
  ~postgres_event_log() override { close(); }

 private:
  outcome<void> prepare_all(PGconn* c) {
    for (auto [name, sql] : {std::pair{"insert_event", insert_event_sql}, std::pair{"insert_delivery", insert_delivery_sql},
                             std::pair{"update_delivery", update_delivery_sql}, std::pair{"insert_quarantine", insert_quarantine_sql},
                             std::pair{"probe", probe_sql}, std::pair{"purge", pg::purge_sql}, std::pair{"compact", compact_sql},
                             std::pair{"delete_quarantined", std::string_view("DELETE FROM quarantine WHERE id = $1")}})
      if (auto r = pg::prepare(c, name, sql); !r) return r;
    return {};
  }

  // A usable connection: the current one, or a new one once the backoff since the last failure
  // has passed. Meanwhile batches fail at once (503 with Retry-After) instead of waiting.
  outcome<PGconn*> usable() {
    if (conn_ && !prepared_) {
      if (auto r = prepare_all(conn_.get()); !r) {
        conn_.reset();
        return r.error();
      }
      prepared_ = true;
    }
    if (conn_ && pg::still_open(conn_.get())) return conn_.get();
    conn_.reset();
    prepared_ = false;
    const auto now = std::chrono::steady_clock::now();
    if (now < next_connect_)
      return make_failure(errc::store_io, "PostgreSQL is unreachable (" + last_error_ + "); reconnecting");
    auto c = pg::connect({opts_pg_.url, opts_pg_.password, opts_pg_.connect_timeout_ms, opts_pg_.lock_timeout_ms, "pipehook/writer"});
    if (!c) {
      next_connect_ = std::chrono::steady_clock::now() +
                      backoff_delay(++connect_failures_, std::chrono::milliseconds(200), std::chrono::seconds(5));
      last_error_ = c.error().message;
      spdlog::error("event log: {}", last_error_);
      return c.error();
    }
    if (auto r = prepare_all(c->get()); !r) return r.error();
    if (connect_failures_ > 0) spdlog::info("event log: reconnected to PostgreSQL at {}", mask_url_password(opts_pg_.url));
    connect_failures_ = 0;
    conn_ = std::move(*c);
    prepared_ = true;
    return conn_.get();
  }

  void send_event(pg::pipeline& p, std::vector<step>& steps, std::size_t i, const event::event& e,
                  const detail::packed_body& packed, std::int64_t now) {
    pg::params ps;
    ps.text(e.event_key).integer(e.version).text(e.entity).text(e.action).text(e.source_action);
    for (const std::string* s : {&e.entity_id, &e.company_id, &e.user_id, &e.webhook_id, &e.event_id, &e.correlation_id,
                                 &e.change_source, &e.type, &e.host, &e.merged_to_id, &e.merged_from_id})
      ps.text_or_null(*s);
    ps.integer(e.occurred_at_us).integer(e.received_at_us).integer(e.attempt).integer(e.is_bulk ? 1 : 0);
    ps.bytes(packed.bytes).integer(packed.dict);
    p.send_prepared("insert_event", ps);
    steps.push_back({step_kind::event, i, {}});
    if (!opts_.route) return;
    routes_.clear();
    opts_.route(e, routes_);
    for (const auto& r : routes_) {
      pg::params d;
      d.text(r.handler).text(e.event_key).integer(now);
      if (r.ordered) d.text(order_key_of(e)).null().null();
      else d.null().text(opts_pg_.replica_id).integer(opts_pg_.lease_ms * 1000);
      p.send_prepared("insert_delivery", d);
      steps.push_back({step_kind::delivery, i, r.ordered ? std::string() : r.handler});
    }
  }

  void send(pg::pipeline& p, std::vector<step>& steps, std::size_t i, write_item& it, std::int64_t now) {
    if (auto* e = std::get_if<event::event>(&it.record)) {
      send_event(p, steps, i, *e, it.packed, now);
    } else if (auto* q = std::get_if<quarantined>(&it.record)) {
      pg::params ps;
      ps.integer(q->received_at_us).text(q->reason).text_or_null(q->content_type).text_or_null(q->remote).text(q->body);
      p.send_prepared("insert_quarantine", ps);
      steps.push_back({step_kind::quarantine, i, {}});
    } else if (auto* r = std::get_if<reparse_request>(&it.record)) {
      send_event(p, steps, i, r->ev, it.packed, now);
      pg::params ps;
      ps.integer(r->quarantine_id);
      p.send_prepared("delete_quarantined", ps);
      steps.push_back({step_kind::other, i, {}});
    } else if (auto* u = std::get_if<std::vector<delivery_update>>(&it.record)) {
      for (const auto& d : *u) {
        pg::params ps;
        ps.integer(d.id).text(to_string(d.state)).integer(d.attempts).integer(d.due_at_us).text_or_null(d.last_error).integer(now);
        ps.text(opts_pg_.replica_id);
        p.send_prepared("update_delivery", ps);
        steps.push_back({step_kind::verdict, i, std::to_string(d.id)});
      }
    } else if (auto* rows = std::get_if<std::vector<compacted_body>>(&it.record)) {
      for (const auto& row : *rows) {  // keys stay text here
        pg::params ps;
        ps.integer(row.id).bytes(row.body).integer(row.body_dict);
        p.send_prepared("compact", ps);
        steps.push_back({step_kind::compact, i, {}});
      }
    } else if (auto* pr = std::get_if<purge_request>(&it.record)) {
      pg::params ps;
      ps.integer(pr->before_us).integer(pr->limit);
      p.send_prepared("purge", ps);
      steps.push_back({step_kind::purge, i, {}});
    } else if (auto* probe = std::get_if<probe_request>(&it.record)) {
      pg::params ps;
      ps.text("last_probe_us").integer(now);
      p.send_prepared("probe", ps);
      steps.push_back({step_kind::other, i, {}});
      // The room row: as many bytes as the event that failed, not compressible (TOAST would
      // shrink a repeated byte), so the probe fails where that event failed for want of space.
      if (probe->room > 0) {
        std::string room(probe->room, '0');
        static constexpr char hex[] = "0123456789abcdef";
        for (auto& ch : room) ch = hex[rng_() & 15];
        pg::params rp;
        rp.text("probe_room").text(room);
        p.send_prepared("probe", rp);
      } else {
        p.send("DELETE FROM meta WHERE key = 'probe_room'");
      }
      steps.push_back({step_kind::other, i, {}});
    }
  }

  void commit_batch(std::vector<write_item>& batch) override {
    auto fail_all = [&](const failure& f) {
      for (auto& it : batch) it.done(f);
    };
    auto c = usable();
    if (!c) return fail_all(c.error());
    const std::int64_t now = now_us();
    pg::pipeline p(*c);
    std::vector<step> steps;
    p.send("BEGIN");
    steps.push_back({step_kind::control});
    for (std::size_t i = 0; i < batch.size(); ++i) send(p, steps, i, batch[i], now);
    const auto commit_start = std::chrono::steady_clock::now();
    p.send("COMMIT");
    steps.push_back({step_kind::control});
    auto results = p.run(std::chrono::seconds(60));
    if (!results) {
      if (pg::broken(*c) || PQpipelineStatus(*c) != PQ_PIPELINE_OFF) {
        // Lost, or left mid-pipeline (the server did not answer in time): the next batch starts
        // on a new connection.
        last_error_ = results.error().message;
        spdlog::error("event log: {}", last_error_);
        conn_.reset();
        prepared_ = false;
      } else {
        (void)pg::exec(*c, "ROLLBACK");  // the failed statement aborted the transaction; COMMIT never ran
      }
      return fail_all(results.error());
    }
    if (opts_.on_commit)
      opts_.on_commit(batch.size(), std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - commit_start));
    // Read back what each statement did.
    std::vector<appended> out(batch.size());
    std::vector<fresh_deliveries> fresh;
    fresh.reserve(batch.size());  // fresh_of points into it
    std::vector<fresh_deliveries*> fresh_of(batch.size(), nullptr);
    bool touched = false;
    for (std::size_t s = 0; s < steps.size(); ++s) {
      const PGresult* r = (*results)[s].get();
      const step& st = steps[s];
      switch (st.kind) {
        case step_kind::control: break;
        case step_kind::event:
          out[st.item].id = pg::integer(r, 0, 0);
          out[st.item].status = pg::integer(r, 0, 1) == 1 ? append_status::stored : append_status::duplicate;
          break;
        case step_kind::delivery:
          if (PQntuples(r) == 0) break;
          touched = true;
          if (!st.handler.empty()) {
            if (!fresh_of[st.item]) {
              fresh.emplace_back();
              fresh_of[st.item] = &fresh.back();
            }
            fresh_of[st.item]->rows.emplace_back(st.handler, pg::integer(r, 0, 0));
          }
          break;
        case step_kind::quarantine:
          out[st.item].status = append_status::quarantined;
          out[st.item].id = pg::integer(r, 0, 0);
          break;
        case step_kind::verdict:
          out[st.item].status = append_status::updated;
          touched = true;
          if (std::string_view(PQcmdTuples(const_cast<PGresult*>(r))) == "0")
            spdlog::warn("outbox: delivery {} is no longer this replica's claim (its lease ran out and another replica took "
                         "it over, or a replay queued it again): this verdict is dropped",
                         st.handler);
          break;
        case step_kind::purge:
          out[st.item].status = append_status::purged;
          out[st.item].id = pg::integer(r, 0, 0);
          break;
        case step_kind::compact:
          out[st.item].status = append_status::compacted;
          out[st.item].id += std::atoll(PQcmdTuples(const_cast<PGresult*>(r)));
          break;
        case step_kind::other: {
          auto& rec = batch[st.item].record;
          if (std::holds_alternative<probe_request>(rec)) {
            out[st.item].status = append_status::probed;
          }
          break;
        }
      }
    }
    // The new events move to the dispatcher with their deliveries (after the commit).
    for (std::size_t i = 0; i < batch.size(); ++i) {
      if (!fresh_of[i]) continue;
      event::event* e = std::get_if<event::event>(&batch[i].record);
      if (!e)
        if (auto* r = std::get_if<reparse_request>(&batch[i].record)) e = &r->ev;
      auto se = std::make_shared<event::stored_event>();
      se->id = out[i].id;
      se->ev = std::move(*e);
      se->last_attempt = se->ev.attempt;
      se->last_received_at_us = se->ev.received_at_us;
      fresh_of[i]->created_at_us = now;
      fresh_of[i]->ev = std::move(se);
    }
    for (std::size_t i = 0; i < batch.size(); ++i) batch[i].done(out[i]);
    if (touched && opts_.on_deliveries) opts_.on_deliveries(std::move(fresh));
  }

  const postgres_options opts_pg_;
  pg::connection conn_;
  bool prepared_ = false;
  unsigned connect_failures_ = 0;
  std::chrono::steady_clock::time_point next_connect_{};
  std::string last_error_;
  std::vector<route> routes_;  // writer thread only
  std::minstd_rand rng_{std::random_device{}()};
};

}  // namespace

outcome<std::unique_ptr<event_log>> open_postgres_event_log(const postgres_options& options) {
  postgres_options o = options;
  if (o.replica_id.empty()) o.replica_id = this_replica().id;
  auto c = pg::connect({o.url, o.password, o.connect_timeout_ms, o.lock_timeout_ms, "pipehook/writer"});
  if (!c) return c.error();
  if (auto r = pg::migrate(c->get()); !r) {
    failure f = r.error();
    f.message = mask_url_password(o.url) + ": " + f.message;
    return f;
  }
  // An acknowledged event survives a server crash only if COMMIT waited for the WAL flush.
  if (auto sc = pg::exec(c->get(), "SHOW synchronous_commit"); sc && pg::text(sc->get(), 0, 0) == "off")
    spdlog::warn("event log: the PostgreSQL server runs with synchronous_commit = off: an acknowledged event may be "
                 "lost if the server crashes; set it to on (the default)");
  return std::unique_ptr<event_log>(new postgres_event_log(std::move(*c), o));
}

}  // namespace pipehook::store
