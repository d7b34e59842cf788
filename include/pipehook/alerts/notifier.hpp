#pragma once
// Alerts: a JSON notice to [alerts] url when something needs a person (a handler paused or resumed,
// a handler's first dead letter after a quiet period, the registrar failing to reconcile). Each is
// logged at warning level whether or not a url is set. Sending is never in anyone's way: send()
// only queues; a thread of its own posts (signed per Standard Webhooks when a secret is set),
// retries a few times, and drops what exceeds max_per_hour (the next notice sent counts them).

#include "pipehook/config/config.hpp"
#include "pipehook/core/error.hpp"

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace pipehook::alerts {

struct notice {
  std::string type;     // "handler.paused", "handler.resumed", "handler.dead_letter", "registrar.failed"
  std::string subject;  // the handler's name, or "registrar"
  std::string message;  // one line, for people
  std::vector<std::pair<std::string, std::string>> details;
};

class notifier {
 public:
  // Fails on a config that cannot work (a bad CA file); no I/O yet.
  static outcome<std::unique_ptr<notifier>> create(const config::alerts_config& c, std::string replica);
  ~notifier();

  // Any thread; never blocks.
  void send(notice n);
  // Posts what is queued within `grace`, then drops the rest (logged). Any thread; idempotent.
  void stop(std::chrono::milliseconds grace);

  struct counters {
    std::uint64_t sent = 0;     // accepted (2xx) by the url
    std::uint64_t failed = 0;   // given up after max_attempts, or refused (4xx)
    std::uint64_t dropped = 0;  // over max_per_hour, or left at the stop
  };
  counters stats() const;

  struct impl;

 private:
  explicit notifier(std::unique_ptr<impl> p);
  std::unique_ptr<impl> p_;
};

}  // namespace pipehook::alerts
