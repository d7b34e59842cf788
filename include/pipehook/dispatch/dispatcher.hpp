#pragma once
// The dispatcher: feeds each handler from the outbox (DESIGN.md promise 5). It runs on a thread
// and io_context of its own, so slow or failing handlers never touch the ingest path. Per handler a
// worker takes due rows (bounded by the handler's concurrency; for ordered handlers, only the first
// pending row of each entity), delivers them, and hands the verdict (done, retry at a time, dead)
// to the event log's writer, which commits it with the next batch. The writer wakes the workers
// after each commit that queued deliveries; a one-second poll (jittered) also picks up CLI replays
// and, with replicas on PostgreSQL, the rows other replicas committed or left behind. There each row
// is claimed by one replica at a time (store::outbox::due), under a lease its presence renews.

#include "pipehook/alerts/notifier.hpp"
#include "pipehook/config/config.hpp"
#include "pipehook/core/error.hpp"
#include "pipehook/store/event_log.hpp"
#include "pipehook/store/handler_state.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <string_view>
#include <memory>
#include <string>
#include <vector>

namespace pipehook::dispatch {

// The event log's router for these handlers: their match filters and accepts(), evaluated on the
// writer thread for each new event.
class dispatcher {
 public:
  // Builds every handler (errors name the [[handlers]] key); no I/O yet. `poll_interval`: how often
  // workers look at the outbox beyond the wake-ups after each commit (rows queued by the CLI's
  // replay or retry; tests shorten it).
  static outcome<std::unique_ptr<dispatcher>> create(const std::vector<config::handler_config>& handlers,
                                                     std::chrono::milliseconds poll_interval = std::chrono::seconds(1));
  ~dispatcher();

  store::router router();
  // The cached field definitions of an object, for when_changed by name (any thread: the router
  // reads a snapshot). Set at start-up from the cache, and after each fetch from Pipedrive.
  void set_fields(const std::string& object, store::field_map fields);

  // Called on the dispatcher's thread after each delivery attempt: handler, "done" / "retry" /
  // "dead", and how long the attempt took. Set before start().
  using observer = std::function<void(const std::string& handler, std::string_view result, std::chrono::microseconds)>;
  void set_observer(observer o);
  // Called on the dispatcher's thread after each look at the outbox: handler, rows claimed (new to
  // this worker), of which taken over from a replica whose claim expired. Set before start().
  using look_observer = std::function<void(const std::string& handler, std::size_t claimed, std::size_t taken_over)>;
  void set_look_observer(look_observer o);
  // Called on the dispatcher's thread each time a handler's next delivery waits for its rate
  // (handler.rate). Set before start().
  void set_throttle_observer(std::function<void(const std::string& handler)> o);
  // Called on the dispatcher's thread with each handler's breaker state at start() and whenever it
  // changes (paused, resumed; here or adopted from the CLI or a replica). Set before start().
  using state_observer = std::function<void(const std::string& handler, const store::handler_state&)>;
  void set_state_observer(state_observer o);
  // Where alerts go (called on the dispatcher's thread; must not block): a handler paused by its
  // breaker or resumed, and its first dead letter after `quiet` without one. Set before start().
  void set_alert_sink(std::function<void(alerts::notice)> send, std::chrono::milliseconds quiet);

  // SIGHUP: new settings, retry rules and concurrency for the same handlers (same names in the same
  // order, same type, match and ordering; anything else needs a restart and is refused whole).
  // The new handlers are built (and validated) first; then deliveries that start use them, those in
  // flight finish with the old ones. Returns the names of the handlers that changed.
  outcome<std::vector<std::string>> reload(const std::vector<config::handler_config>& fresh);

  // Opens the outbox (after the event log migrated it) and starts the workers, claiming rows as
  // `claims` says. `presence` (may be null) renews those claims: past its claims_hold_until() no
  // queued delivery starts.
  outcome<void> start(store::event_log& log, const store::location& where, const store::claim_options& claims = {},
                      const store::presence* presence = nullptr);
  // Deliveries were committed (any thread): the new events' rows go straight to their workers
  // (within a bound; beyond it, and for ordered handlers, the workers read the outbox).
  void notify(std::vector<store::fresh_deliveries> fresh);
  // Stops taking rows; deliveries in flight get `drain` to finish, then are cancelled. Any thread.
  void stop(std::chrono::milliseconds drain);
  // Waits for the workers' thread to end (after stop). Their last verdicts are queued in the log.
  void join();

  struct impl;

 private:
  explicit dispatcher(std::unique_ptr<impl> p);
  std::unique_ptr<impl> p_;
};

}  // namespace pipehook::dispatch
