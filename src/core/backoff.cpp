#include "pipehook/core/backoff.hpp"

#include <algorithm>
#include <cmath>
#include <random>

namespace pipehook {

std::chrono::milliseconds backoff_delay(unsigned attempt, std::chrono::milliseconds base, std::chrono::milliseconds cap) {
  static thread_local std::mt19937 rng{std::random_device{}()};
  const double step = static_cast<double>(base.count()) * std::pow(2.0, std::clamp(attempt, 1u, 40u) - 1);
  const double full = std::min(static_cast<double>(cap.count()), step);
  std::uniform_real_distribution<double> jitter(0.5, 1.0);
  return std::chrono::milliseconds(static_cast<std::int64_t>(full * jitter(rng)));
}

}  // namespace pipehook
