#pragma once
// Backfill: what Pipedrive changed while its webhooks did not reach pipehook, read back through
// the API (GET /recents, one object at a time, paged) and stored as events like any other, through
// the event log's writer and the handlers' outbox.
//
// A recovered event (event::recovered): entity = the recents item, entity_id = its id, action
// "create" when the record was added inside the window (add_time >= since, whole seconds) else
// "change", occurred_at = the record's update_time, source_action = change_source = "backfill",
// version 1 (the body is the record as the v1 API returns it: the shape of a v1 webhook's
// `current`), host = "<company_domain>.pipedrive.com" from GET /users/me (so `url` links to it),
// event_key = 128 bits of SHA-256 over ("backfill", entity, id, update_time).
//
// Not stored again: a record whose latest update the log already knows — an event (webhook or
// recovered) about the same entity and id that occurred at or after its update_time less one
// second (Pipedrive's API times have whole seconds, webhook times milliseconds). A second
// backfill of a window therefore stores nothing. Deletions are not listed by /recents: they are
// not recoverable, and a run says so rather than guessing.
//
// A run saves its position (object, page offset) and counters after each page whose events are
// committed; an interrupted run (stop, crash, rate limit beyond pipedrive.retry_max, Pipedrive
// unreachable) resumes from there, re-reading at most one page (whose events are then known).

#include "pipehook/config/config.hpp"
#include "pipehook/core/error.hpp"
#include "pipehook/pipedrive/client.hpp"
#include "pipehook/pipedrive/registrar_service.hpp"
#include "pipehook/store/backfills.hpp"
#include "pipehook/store/event_log.hpp"
#include "pipehook/store/leadership.hpp"

#include <boost/asio/awaitable.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace pipehook::pipedrive {

// The replica id of a run `pipehook backfill` makes starts with this: serve leaves such runs alone.
inline constexpr const char* cli_replica_prefix = "cli-";

// The account a run stores events for (GET /users/me), asked once per run.
struct backfill_account {
  std::string company_id;
  std::string host;  // "<company_domain>.pipedrive.com", "" when unknown
};

struct backfill_context {
  client* api = nullptr;
  store::backfill_store* book = nullptr;
  store::event_log* log = nullptr;  // may be null for dry runs
  std::uint32_t max_calls = 500;
  std::uint32_t page_size = 500;
  std::string replica;  // who runs it, recorded on the run
  const std::atomic<bool>* stopping = nullptr;
  // After each page (and at the end): the run as saved. Optional.
  std::function<void(const store::backfill_run&)> progress;
};

// Carries `run` from its saved position to an end state (done, capped, failed) or, when
// stopped or cut off, to "interrupted" with its position saved. Never throws; errors are in
// run.error.
boost::asio::awaitable<void> run_backfill(backfill_context ctx, store::backfill_run& run);

// The recovered event for one listed record; nullopt when it has no usable update time.
std::optional<event::event> recovered_event(const recent_record& r, std::int64_t since_us, const backfill_account& account,
                                            std::int64_t received_at_us);

// The objects a backfill covers by default: backfill.objects, else the registrar's subscriptions
// that /recents can list ("*" -> all of them), else all of them.
std::vector<std::string> default_backfill_objects(const config::config& c);

// "2026-12-01 10:00:05" (UTC, whole seconds, floor) for since_timestamp.
std::string recents_timestamp(std::int64_t us);

// The backfill runner inside `pipehook serve`, on a thread of its own ("ph-backfill"): writes the
// heartbeat every backfill.heartbeat (always: the next start measures its downtime by it); with
// backfill.enabled and a token, resumes unfinished runs and backfills the downtime at start-up,
// and the registrar's webhook gaps; with a token, runs what request() queues (the admin API).
// Runs go one at a time, oldest first. With replicas only the one holding `leader` runs them.
class backfill_service {
 public:
  static outcome<std::unique_ptr<backfill_service>> create(const config::config& c, const store::location& where,
                                                           store::event_log& log, std::string replica,
                                                           std::unique_ptr<store::leadership> leader = nullptr);
  ~backfill_service();

  // Reads the heartbeat (the downtime gap) before writing the first beat, then starts.
  void start();
  // Writes the last heartbeat; a run in progress stops as "interrupted" (resumed next start).
  void stop();

  // Whether runs can be made here at all (a Pipedrive token is set).
  bool can_run() const;
  // Records a run (state queued) and wakes the runner; the run as recorded (with its id). Any thread.
  outcome<store::backfill_run> request(store::backfill_run run);
  // A gap the registrar saw (any thread): with backfill.enabled, a run since the webhook's last
  // delivery in the log (else since the registrar last saw it healthy), for its objects.
  void on_webhook_gap(const webhook_gap& gap);

  struct impl;

 private:
  explicit backfill_service(std::shared_ptr<impl> p);
  std::shared_ptr<impl> p_;
};

}  // namespace pipehook::pipedrive
