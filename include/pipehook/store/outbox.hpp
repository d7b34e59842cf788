#pragma once
// The transactional outbox (DESIGN.md promise 5): one `deliveries` row per (handler, event),
// written in the same transaction as the event, so a handler never misses an event that was
// acknowledged. The writer thread inserts and updates the rows (store::event_log); this class is
// the dispatcher's and the operators' own connection to them: what is due, counts per handler,
// replay and retry.

#include "pipehook/core/error.hpp"
#include "pipehook/event/event.hpp"
#include "pipehook/store/presence.hpp"
#include "pipehook/store/reader.hpp"

#include <cstdint>
#include <utility>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace pipehook::store {

// Where a newly stored event goes: the handler, and whether it keeps per-entity order.
struct route {
  std::string handler;
  bool ordered = false;
};
// Called on the writer thread for each new (not duplicate) event; fills `out`.
using router = std::function<void(const event::event& ev, std::vector<route>& out)>;

enum class delivery_state { pending, done, dead };
std::string_view to_string(delivery_state s);

// The dispatcher's verdict on one delivery, applied by the writer thread.
struct delivery_update {
  std::int64_t id = 0;
  delivery_state state = delivery_state::done;
  int attempts = 0;
  std::int64_t due_at_us = 0;  // for pending: the next attempt
  std::string last_error;      // bounded by the caller
};

struct pending_delivery {
  std::int64_t id = 0;
  int attempts = 0;
  std::int64_t created_at_us = 0;  // queued at (max_age counts from here)
  std::string order_key;           // "" unless the handler is ordered
  std::string taken_from;          // the replica whose expired claim this one took over ("": none)
  bool already_mine = false;       // claimed by this replica before (stored here, or an earlier look)
  std::shared_ptr<const event::stored_event> ev;  // with its body; shared by the handlers of one event
  std::string unreadable;          // why the stored body cannot be read (the body is then empty): a dead letter
};

// Deliveries just committed for a new event, handed from the writer to the dispatcher in memory
// so the hot path needs no read of the outbox (the rows are in it all the same).
struct fresh_deliveries {
  std::vector<std::pair<std::string, std::int64_t>> rows;  // handler, delivery id
  std::int64_t created_at_us = 0;
  std::shared_ptr<const event::stored_event> ev;
};

// A delivery row as stored, for copying a log (`pipehook events copy`).
struct delivery_row {
  std::int64_t id = 0;
  std::string handler;
  std::int64_t event_id = 0;
  delivery_state state = delivery_state::pending;
  int attempts = 0;
  std::int64_t due_at_us = 0, created_at_us = 0, updated_at_us = 0;
  std::string order_key, last_error;
  std::int64_t last_error_at_us = 0;  // 0: none
};

struct handler_counts {
  std::string handler;
  std::int64_t pending = 0;   // not tried yet
  std::int64_t retrying = 0;  // failed at least once, will be tried again
  std::int64_t dead = 0;
  std::int64_t done = 0;
  std::optional<std::int64_t> oldest_pending_us;  // queued at, of the oldest pending or retrying
  std::string last_error;
  std::int64_t last_error_at_us = 0;
  // Replicas on PostgreSQL: pending rows held under a live lease, per replica id.
  std::vector<std::pair<std::string, std::int64_t>> claims;
};

// Events matched by a replay: the list filters, plus the handler's own match rule.
using event_predicate = std::function<bool(const event::event&)>;

class outbox {
 public:
  // Opens its own connection to the event log (read-write: replay and retry write). `claims`: who
  // claims rows through due() (PostgreSQL; a SQLite log has one process, which needs no claims).
  static outcome<std::unique_ptr<outbox>> open(const location& where, const claim_options& claims = {});
  virtual ~outbox() = default;

  // Claims due rows of a handler, oldest first, at most `limit`. For an ordered handler a row is
  // due only when no earlier row of its entity (order_key) is still pending. On PostgreSQL a row is
  // claimable when unclaimed, already this replica's, or its claim's lease ran out; the claim
  // (SELECT ... FOR UPDATE SKIP LOCKED, then claimed_by and lease_until) keeps the other replicas
  // off it until its verdict or the lease's end. Rows in `held` (the caller has them already) are
  // left out on PostgreSQL, so that a look does not claim again what it holds; SQLite may return them.
  virtual outcome<std::vector<pending_delivery>> due(const std::string& handler, std::int64_t now_us, int limit,
                                                     bool ordered, const std::vector<std::int64_t>& held = {}) = 0;
  // Hands rows this replica claimed but will not deliver soon back to the others (PostgreSQL).
  virtual outcome<void> release(const std::vector<std::int64_t>& ids) = 0;
  // The earliest due_at after `now_us` among the handler's pending rows (nullopt: none).
  virtual outcome<std::optional<std::int64_t>> next_due(const std::string& handler, std::int64_t now_us) = 0;
  virtual outcome<std::vector<handler_counts>> counts() = 0;

  // Events a replay would queue (the filter's limit is ignored: all of them).
  outcome<std::int64_t> count_matching(const event_filter& f, const event_predicate& p);
  // Queues (again) every matching event for `handler`: pending, attempts 0, due now. Writes in
  // small transactions so the daemon's writer is never held up long. Returns how many.
  outcome<std::int64_t> replay(const std::string& handler, bool ordered, const event_filter& f, const event_predicate& p);
  // Dead rows of `handler` back to pending. Returns how many.
  virtual outcome<std::int64_t> retry_dead(const std::string& handler) = 0;
  // The replicas that wrote a heartbeat in the last day, live ones first (PostgreSQL; SQLite
  // tracks none: empty).
  virtual outcome<std::vector<replica_info>> replicas() = 0;
  // Pending rows of every handler with ids above `after_id`, by id, at most `limit`.
  virtual outcome<std::vector<delivery_row>> pending_rows(std::int64_t after_id, int limit) = 0;

 protected:
  // What each backend provides for count_matching and replay.
  using each_event = std::function<void(const event::event& ev, std::int64_t id)>;
  // Every event matching the filter (its limit ignored; `q` included) and the predicate, oldest first.
  virtual outcome<void> for_each_matching(const event_filter& f, const event_predicate& p, const each_event& each) = 0;
  // (Re)queues these events (id, order key or "") for `handler`, in transactions of at most
  // `replay_chunk` rows.
  virtual outcome<void> requeue(const std::string& handler, const std::vector<std::pair<std::int64_t, std::string>>& rows) = 0;
  static constexpr std::size_t replay_chunk = 500;  // the daemon's writer waits at most for one
};

// The order key of an ordered handler's delivery: events of one entity share it.
std::string order_key_of(const event::event& ev);

}  // namespace pipehook::store
