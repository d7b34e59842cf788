#pragma once
// A handler's breaker state as the processes on one event log share it (in the `meta` table, one
// key per handler): active, or paused by its circuit breaker (with a next probe) or by hand
// (`pipehook handlers pause`, no probes until resumed). The newest change wins: serve adopts a
// change another process (the CLI, a replica) wrote after its own.

#include "pipehook/core/error.hpp"
#include "pipehook/store/meta.hpp"

#include <cstdint>
#include <map>
#include <string>

namespace pipehook::store {

struct handler_state {
  bool paused = false;
  bool manual = false;              // paused by hand: no probes, only `handlers resume` ends it
  std::int64_t since_us = 0;        // when the current state began (0: never changed)
  std::int64_t next_probe_us = 0;   // paused by the breaker: when one delivery is tried
  std::int64_t pause_ms = 0;        // paused by the breaker: the current pause (doubles per failed probe)
  std::uint32_t failures = 0;       // consecutive failed attempts when it paused
  std::string reason;               // the last error, or who paused it by hand
  std::int64_t changed_at_us = 0;   // the version: the newest write wins
  std::string by;                   // the replica (or "cli") that wrote it

  std::string state_text() const { return !paused ? "active" : manual ? "paused_by_hand" : "paused"; }
  bool operator==(const handler_state&) const = default;
};

// `handlers pause|resume` (the CLI, the admin API): the state that follows `current`, written by
// `by`. Its version is newer than `current`'s, so serve adopts it at its next look (within a second).
handler_state changed_by_hand(const handler_state& current, bool pause, std::string by);

// All handlers' states (handlers never paused have none).
outcome<std::map<std::string, handler_state>> load_handler_states(meta_store& meta);
outcome<void> save_handler_state(meta_store& meta, const std::string& handler, const handler_state& st);

}  // namespace pipehook::store
