#pragma once
// A replica's presence on a shared event log (PostgreSQL): its heartbeat row in `replicas`, and
// the leases on the outbox rows it has claimed, renewed together by a thread of its own. A replica
// that dies stops renewing both: its heartbeat goes stale and its claims expire, and the other
// replicas claim those rows again. On SQLite, where one process owns the log, it is always the
// only replica and its claims never expire.

#include "pipehook/core/error.hpp"
#include "pipehook/store/location.hpp"

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace pipehook::store {

struct replica_identity {
  std::string id;       // server.replica_id: unique among the replicas of one database
  std::string host;
  std::int64_t pid = 0;
  std::string version;  // pipehook's
};

// This process: host name and pid, with `id` the configured one or "<host>-<pid>".
replica_identity this_replica(const std::string& configured_id = {});

// A row of `replicas` as the admin API shows it.
struct replica_info {
  replica_identity who;
  std::int64_t started_at_us = 0;
  std::int64_t heartbeat_at_us = 0;  // the database's clock
  std::int64_t lease_ms = 0;
  bool live = false;                 // heartbeat_at + lease is still ahead
};

// How a replica claims outbox rows.
struct claim_options {
  std::string replica_id;  // "" : this_replica().id
  std::chrono::milliseconds lease{30'000};
};

class presence {
 public:
  // PostgreSQL: takes this replica's id (refused while a live process holds the same id), writes
  // the first heartbeat, then renews heartbeat and leases every lease/3 on its thread.
  static outcome<std::unique_ptr<presence>> open(const location& where, const replica_identity& who,
                                                 std::chrono::milliseconds lease);
  virtual ~presence() = default;
  // Until when (steady clock) every claim of this replica holds for sure: the last renewal that
  // went through, plus most of the lease. Past it another replica may hold this replica's rows,
  // so none of them is started. Any thread.
  virtual std::chrono::steady_clock::time_point claims_hold_until() const = 0;
  // Replicas other than this one with a live heartbeat (a query; SQLite: 0).
  virtual outcome<int> others_live() = 0;
  // A clean stop, after the last verdicts were committed: hands this replica's remaining claims
  // back (others need not wait for the lease) and removes its heartbeat. Idempotent.
  virtual void leave() = 0;
};

}  // namespace pipehook::store
