#pragma once
// A group of coroutines stopped together, after Beast's example/advanced/server-flex-awaitable:
// each task runs with a cancellation slot of its own (bind_cancellation_slot) and a completion that
// leaves the group and logs an exception that escaped it, so that stopping is "emit cancellation,
// then wait until the group is empty". A task can say it is idle (waiting for work): stop cancels
// idle tasks at once and busy ones only at a deadline; a full group can make room by cancelling
// its longest-idle task.

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>

namespace pipehook {

class task_group {
 public:
  struct task {
    boost::asio::any_io_executor ex;         // the task's strand: its signal is emitted there
    boost::asio::cancellation_signal signal;  // on ex
    bool done = false;                        // on ex: a signal after the end is not emitted
    // steady_clock ticks since the task began waiting for work; 0 while busy. Written by the task,
    // read by the group to pick idle tasks.
    std::atomic<std::int64_t> idle_since{0};
    void idle();
    void busy() { idle_since = 0; }
  };
  using task_ptr = std::shared_ptr<task>;

  struct counts {
    std::size_t open = 0;
    std::size_t busy = 0;
  };

  // `ex` is the strand on which waits (wait_fewer_than, wait_empty) run; `what` names the tasks
  // in the log ("an HTTP session").
  task_group(boost::asio::any_io_executor ex, const char* what);

  // Runs make(task) as a coroutine on `ex` (a strand), a member of the group until it ends.
  template <class Make>
  void spawn(boost::asio::any_io_executor ex, Make make) {
    task_ptr t = add(ex);
    auto body = make(t);
    boost::asio::co_spawn(ex, std::move(body), boost::asio::bind_cancellation_slot(t->signal.slot(), finisher{impl_, t}));
  }

  // Emits `type` to every task, or only to the idle ones. Any thread.
  void cancel(boost::asio::cancellation_type type, bool idle_only = false);
  // Cancels (terminal) the task idle the longest, if it is still idle when its strand sees the
  // request; then calls on_cancelled there. False when no task is idle.
  bool cancel_longest_idle(std::function<void()> on_cancelled);

  std::size_t size() const;  // any thread
  counts count() const;      // any thread

  // On the group's strand: completes once fewer than n tasks remain (true) or at `deadline` (false).
  boost::asio::awaitable<bool> wait_fewer_than(std::size_t n, std::chrono::steady_clock::time_point deadline);
  // On the group's strand: completes once the group is empty (true) or at `deadline` (false).
  boost::asio::awaitable<bool> wait_empty(std::chrono::steady_clock::time_point deadline);

  struct impl;

 private:
  struct finisher {
    std::shared_ptr<impl> g;
    task_ptr t;
    void operator()(std::exception_ptr e) const;
  };
  task_ptr add(boost::asio::any_io_executor ex);
  std::shared_ptr<impl> impl_;
};

}  // namespace pipehook
