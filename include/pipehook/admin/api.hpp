#pragma once
// The admin listener's routes: the query API (/api/v1/...), the web page, and /metrics. Meant for
// a server of its own on its own thread (cli::daemon runs it on "ph-admin"): its SQLite reads
// never stall the webhook listener, and WAL readers never block the writer.

#include "pipehook/core/error.hpp"
#include "pipehook/http/types.hpp"
#include "pipehook/store/backfills.hpp"
#include "pipehook/store/event_log.hpp"
#include "pipehook/store/outbox.hpp"

#include <boost/json/object.hpp>

#include <functional>
#include <memory>
#include "pipehook/store/location.hpp"

#include <string>
#include <vector>

namespace pipehook::admin {

struct api_options {
  store::location store;  // where the event log is (its own reader and outbox connections)
  std::size_t pool_size = 4;  // worker threads and read connections for queries (store.pool_size)
  std::string token;  // "" = no token asked for (loopback only; config refuses otherwise)
  // Host names (besides localhost and the listener's own address) that requests may name: a
  // browser reaching the listener under any other name may be a DNS-rebinding page.
  std::vector<std::string> allowed_hosts;
  // Prometheus text for GET /metrics, given the handlers' outbox counts and the event log's size in
  // bytes (-1 when it could not be read) (empty: no /metrics route).
  std::function<std::string(const std::vector<store::handler_counts>&, std::int64_t log_bytes)> metrics;
  // Extra members for GET /api/v1/stats that only the running process knows (rejected requests).
  std::function<boost::json::object()> runtime_stats;
  // Called (on a query thread) when an event shows a custom field the cached definitions of its
  // object do not name: the fields may have changed in Pipedrive. Optional.
  std::function<void(const std::string& object)> fields_stale;
  // This process, for GET /api/v1/replicas on a log that tracks no replicas (SQLite: it is the only one).
  // Queues a backfill run (POST /api/v1/backfills); unset: this process cannot run one (no token).
  std::function<outcome<store::backfill_run>(store::backfill_run)> backfill_request;
  store::replica_identity self;
  std::int64_t started_at_us = 0;
  // The configured handlers: POST /api/v1/handlers/{name}/pause|resume accepts only these.
  std::vector<std::string> handler_names;
  // Told (on a query thread) when a handler was paused or resumed through the API (for alerts).
  std::function<void(const std::string& handler, bool paused)> paused_by_hand;
};

class api {
 public:
  // Opens the read connections; `log` takes re-parsed quarantined bodies.
  static outcome<std::unique_ptr<api>> create(api_options opt, store::event_log& log);
  ~api();
  std::vector<http::route> routes();

  // The listener's own check on every request (http::server_options::admit): without a token (or
  // with allowed_hosts set), 421 for a Host that is neither localhost, the listener's address (any
  // IP literal on a wildcard listener) nor in allowed_hosts; always 403 for a POST/PUT/PATCH/DELETE that Origin or Sec-Fetch-Site says comes from
  // another site. Call set_listen_address once the listener is bound.
  std::optional<http::response> admit(const http::request_head& head) const;
  void set_listen_address(const std::string& ip);

  struct impl;

 private:
  explicit api(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

}  // namespace pipehook::admin
