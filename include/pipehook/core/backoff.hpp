#pragma once
// Exponential backoff with "equal jitter", the one schedule for everything that retries a remote
// call (the Pipedrive client, the registrar).

#include <chrono>

namespace pipehook {

// base * 2^(attempt-1), at most `cap`, times a random factor in [0.5, 1): never less than half the
// step, so retries spread out without collapsing to zero. attempt counts from 1.
std::chrono::milliseconds backoff_delay(unsigned attempt, std::chrono::milliseconds base, std::chrono::milliseconds cap);

}  // namespace pipehook
