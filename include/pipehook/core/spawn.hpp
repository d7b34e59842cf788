#pragma once
// The completion for co_spawn'ed coroutines that nobody awaits: unlike asio::detached, an exception
// escaping the coroutine is logged (with what the coroutine was), never lost.

#include <exception>

namespace pipehook {

struct log_exception {
  const char* what;  // "webhook session", "dispatcher worker", ...: names the coroutine in the log
  void operator()(std::exception_ptr e) const;
};

}  // namespace pipehook
