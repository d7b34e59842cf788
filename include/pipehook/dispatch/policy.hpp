#pragma once
// The dispatcher's rules as pure functions: which handlers an event goes to (match filters with
// '*' wildcards), and when a failed delivery is tried again or given up (retry schedule, jitter,
// max_age, max_attempts).

#include "pipehook/config/config.hpp"
#include "pipehook/event/event.hpp"
#include "pipehook/store/fields.hpp"

#include <chrono>
#include <map>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace pipehook::dispatch {

// '*' matches any run of characters (also none); everything else literally.
bool glob_match(std::string_view pattern, std::string_view text);

// Every non-empty list must have an entry matching the event's field.
// The cached field definitions by object ("deal" -> its fields), for when_changed by name.
using field_definitions = store::field_maps;

// `defs` (may be null): when_changed entries may then also be field names ("Region", any case).
bool matches(const config::match_config& m, const event::event& e, const field_definitions* defs = nullptr);
// when_changed alone (config::match_config::changed); reads the event's body.
bool changed_match(const std::vector<std::string>& fields, const event::event& e, const field_definitions* defs = nullptr);

// The wait before attempt `failures + 1`: the schedule's step for this failure count (the last
// step repeats), times a jitter factor in [0.8, 1.2) drawn from u in [0, 1).
std::chrono::milliseconds retry_delay(const config::retry_config& r, int failures, double u);

struct after_failure {
  bool dead = false;
  std::int64_t due_at_us = 0;
};
// Decides after a failed attempt (attempts counts it): dead when max_attempts is reached or the
// delivery has been queued longer than max_age; else due after retry_delay, or later if the
// receiver asked (Retry-After).
after_failure decide_after_failure(const config::retry_config& r, int attempts, std::int64_t created_at_us,
                                   std::int64_t now_us, std::optional<std::chrono::milliseconds> retry_after, double u);

}  // namespace pipehook::dispatch
