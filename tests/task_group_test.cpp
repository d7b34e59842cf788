// The task group behind every stop: cancelling idle tasks at once and busy ones at a deadline,
// making room by cancelling the longest-idle one, and logging (not losing) an escaped exception.

#include "pipehook/core/spawn.hpp"
#include "pipehook/core/task_group.hpp"
#include "pipehook/core/use_tuple.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <gtest/gtest.h>

#include <stdexcept>

namespace asio = boost::asio;
using namespace std::chrono_literals;
using pipehook::task_group;
using pipehook::use_tuple;

namespace {

// Waits for an hour (or until cancelled), idle or busy as asked; records how it ended.
asio::awaitable<void> sleeper(task_group::task_ptr t, bool idle, std::string* ended) {
  if (idle) t->idle();
  asio::steady_timer timer(co_await asio::this_coro::executor, 1h);
  auto [ec] = co_await timer.async_wait(use_tuple);
  *ended = ec == asio::error::operation_aborted ? "cancelled" : "expired";
}

// Runs the io_context until `done` holds (every step is queued work, never a wall-clock wait).
template <class Pred>
bool run_until(asio::io_context& ioc, Pred done) {
  for (int i = 0; i < 10'000 && !done(); ++i) ioc.run_one_for(1s);
  return done();
}

}  // namespace

TEST(task_group, stop_cancels_idle_tasks_at_once_and_busy_ones_when_asked) {
  asio::io_context ioc;
  task_group g(ioc.get_executor(), "a test task");
  std::string idle_end, busy_end;
  g.spawn(ioc.get_executor(), [&](task_group::task_ptr t) { return sleeper(t, true, &idle_end); });
  g.spawn(ioc.get_executor(), [&](task_group::task_ptr t) { return sleeper(t, false, &busy_end); });
  ASSERT_TRUE(run_until(ioc, [&] { return g.count().busy == 1 && g.count().open == 2; }));
  g.cancel(asio::cancellation_type::terminal, true);
  ASSERT_TRUE(run_until(ioc, [&] { return g.size() == 1; }));
  EXPECT_EQ(idle_end, "cancelled");
  EXPECT_EQ(busy_end, "");
  g.cancel(asio::cancellation_type::terminal);
  ASSERT_TRUE(run_until(ioc, [&] { return g.size() == 0; }));
  EXPECT_EQ(busy_end, "cancelled");
}

TEST(task_group, wait_empty_reports_the_deadline_or_the_last_task_ending) {
  asio::io_context ioc;
  task_group g(ioc.get_executor(), "a test task");
  std::string end;
  g.spawn(ioc.get_executor(), [&](task_group::task_ptr t) { return sleeper(t, false, &end); });
  std::optional<bool> first, second;
  asio::co_spawn(ioc, [&]() -> asio::awaitable<void> {
    first = co_await g.wait_empty(std::chrono::steady_clock::now() + 20ms);
    g.cancel(asio::cancellation_type::terminal);
    second = co_await g.wait_empty(std::chrono::steady_clock::now() + 1h);
  }, pipehook::log_exception{"a test waiter"});
  ASSERT_TRUE(run_until(ioc, [&] { return second.has_value(); }));
  EXPECT_FALSE(*first) << "the task was still running at the deadline";
  EXPECT_TRUE(*second);
  EXPECT_EQ(end, "cancelled");
}

TEST(task_group, a_full_group_makes_room_by_cancelling_the_longest_idle_task) {
  asio::io_context ioc;
  task_group g(ioc.get_executor(), "a test task");
  std::string older, newer, busy;
  g.spawn(ioc.get_executor(), [&](task_group::task_ptr t) { return sleeper(t, true, &older); });
  ASSERT_TRUE(run_until(ioc, [&] { return g.count().open == 1 && g.count().busy == 0; }));
  g.spawn(ioc.get_executor(), [&](task_group::task_ptr t) { return sleeper(t, true, &newer); });
  g.spawn(ioc.get_executor(), [&](task_group::task_ptr t) { return sleeper(t, false, &busy); });
  ASSERT_TRUE(run_until(ioc, [&] { return g.count().open == 3 && g.count().busy == 1; }));
  int closed = 0;
  std::optional<bool> room;
  asio::co_spawn(ioc, [&]() -> asio::awaitable<void> {
    EXPECT_TRUE(g.cancel_longest_idle([&] { ++closed; }));
    room = co_await g.wait_fewer_than(3, std::chrono::steady_clock::now() + 1h);
  }, pipehook::log_exception{"a test waiter"});
  ASSERT_TRUE(run_until(ioc, [&] { return room.has_value(); }));
  EXPECT_TRUE(*room);
  EXPECT_EQ(closed, 1);
  EXPECT_EQ(older, "cancelled");
  EXPECT_EQ(newer, "");
  g.cancel(asio::cancellation_type::terminal, true);  // newer: idle
  ASSERT_TRUE(run_until(ioc, [&] { return g.size() == 1; }));
  EXPECT_FALSE(g.cancel_longest_idle(nullptr)) << "only a busy task is left";
  g.cancel(asio::cancellation_type::terminal);
  ASSERT_TRUE(run_until(ioc, [&] { return g.size() == 0; }));
}

TEST(task_group, a_task_that_throws_leaves_the_group) {
  asio::io_context ioc;
  task_group g(ioc.get_executor(), "a test task");
  g.spawn(ioc.get_executor(), [](task_group::task_ptr) -> asio::awaitable<void> {
    throw std::runtime_error("boom");
    co_return;
  });
  ASSERT_TRUE(run_until(ioc, [&] { return g.size() == 0; }));
  // Cancelling after the end is harmless: the signal is not emitted into a finished coroutine.
  g.cancel(asio::cancellation_type::terminal);
  ioc.poll();
}
