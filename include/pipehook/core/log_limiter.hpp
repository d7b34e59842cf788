#pragma once
// Keeps a flood of like log lines to one per window: during a database outage every webhook is
// answered 503, and a line per request would bury everything else (the per-minute summary counts
// them all). Thread-safe; keys are a bounded set (status and outcome).

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>

namespace pipehook {

class log_limiter {
 public:
  explicit log_limiter(std::chrono::milliseconds window) : window_(window) {}
  // Whether a line of this kind may be logged now; if so, how many of its kind were held back
  // since the last one that was (0: none).
  std::optional<std::uint64_t> admit(const std::string& key,
                                     std::chrono::steady_clock::time_point now = std::chrono::steady_clock::now());

 private:
  struct slot {
    std::chrono::steady_clock::time_point next{};
    std::uint64_t held = 0;
  };
  std::chrono::milliseconds window_;
  std::mutex mu_;
  std::map<std::string, slot, std::less<>> slots_;
};

}  // namespace pipehook
