#pragma once
// The registrar inside `pipehook serve`: reconciles once the server listens, again every
// registrar.resync_interval (Pipedrive deletes webhooks after 3 days without a successful
// delivery), retries with backoff while Pipedrive is unreachable or rate-limits, and on a graceful
// stop deletes the webhooks it manages when registrar.delete_on_shutdown is set.

#include "pipehook/config/config.hpp"
#include "pipehook/core/error.hpp"
#include "pipehook/store/leadership.hpp"

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <memory>

namespace pipehook::pipedrive {

// A managed webhook that has not been delivering: deleted at Pipedrive (after 3 days of failures,
// or by someone), inactive (banned for 30 minutes), or whose last delivery failed.
struct webhook_gap {
  std::int64_t webhook_id = 0;
  std::string event_object;  // "*" or one object
  std::string why;
  std::int64_t seen_ok_us = 0;  // when the registrar last saw it in place and healthy (0: never)
};

class registrar_service {
 public:
  // Fails on a config that cannot work (no token, bad CA file); no I/O here. After a transient
  // failure it tries again after `retry_floor`, doubling (with jitter) up to 5 minutes.
  // With several replicas on one database only the one whose `leader` check passes reconciles
  // (and deletes on shutdown); the others stand by and check again every
  // registrar.takeover_check. Without `leader`, this process is the only one.
  static outcome<std::unique_ptr<registrar_service>> create(boost::asio::any_io_executor ex, const config::config& c,
                                                            std::chrono::milliseconds retry_floor = std::chrono::seconds(2),
                                                            std::unique_ptr<store::leadership> leader = nullptr);
  ~registrar_service();

  // Called on the service's strand when its state changes: "starting", "ok", "retrying" (a
  // transient failure, trying again soon), "failed" (until the next resync) or "standby"
  // (another replica registers), with what failed ("" otherwise). Set before start().
  void set_observer(std::function<void(std::string_view state, std::string_view why)> o);
  // delete_on_shutdown deletes only if this returns true at the stop (replicas: no other one is
  // live, so a rolling restart keeps the webhooks). Unset: always. Set before start().
  void set_last_replica_check(std::function<bool()> f);
  // Called on the service's strand after a reconcile that found a webhook it manages gone (since
  // the previous reconcile), inactive, or with a failing last_http_status; once per webhook until
  // it is seen healthy again. Set before start().
  // Instead of registrar.resync_interval (tests reconcile more often than the config allows).
  void set_resync_interval(std::chrono::milliseconds every);
  void set_gap_observer(std::function<void(const webhook_gap&)> f);

  void start();
  // Stops retrying; with delete_on_shutdown, deletes the managed webhooks (bounded by `deadline`)
  // before the service's work ends. Callable from any thread.
  void stop(std::chrono::milliseconds deadline);

  struct impl;

 private:
  explicit registrar_service(std::shared_ptr<impl> p);
  std::shared_ptr<impl> p_;
};

}  // namespace pipehook::pipedrive
