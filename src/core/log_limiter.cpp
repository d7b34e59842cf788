#include "pipehook/core/log_limiter.hpp"

namespace pipehook {

std::optional<std::uint64_t> log_limiter::admit(const std::string& key, std::chrono::steady_clock::time_point now) {
  std::lock_guard lk(mu_);
  slot& s = slots_[key];
  if (now < s.next) {
    ++s.held;
    return std::nullopt;
  }
  const std::uint64_t held = s.held;
  s.held = 0;
  s.next = now + window_;
  return held;
}

}  // namespace pipehook
