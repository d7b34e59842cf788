#include "pipehook/core/task_group.hpp"

#include "pipehook/core/use_tuple.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>

#include <list>
#include <mutex>
#include <system_error>

namespace pipehook {

namespace asio = boost::asio;

struct task_group::impl {
  asio::any_io_executor ex;
  const char* what;
  mutable std::mutex mu;
  std::list<task_ptr> tasks;                 // under mu
  std::list<asio::steady_timer*> waiters;    // on ex: woken whenever a task ends

  void wake() {
    for (auto* w : waiters) w->cancel();
  }

  // Waits on ex until pred() holds or the deadline passes (false).
  template <class Pred>
  asio::awaitable<bool> wait_until(Pred pred, std::chrono::steady_clock::time_point deadline) {
    for (;;) {
      {
        std::lock_guard lk(mu);
        if (pred()) co_return true;
      }
      asio::steady_timer timer(ex, deadline);
      auto it = waiters.insert(waiters.end(), &timer);
      auto [ec] = co_await timer.async_wait(use_tuple);
      waiters.erase(it);
      if (!ec) co_return false;  // the deadline
    }
  }
};

void task_group::task::idle() {
  idle_since = std::chrono::steady_clock::now().time_since_epoch().count() | 1;  // never 0
}

task_group::task_group(asio::any_io_executor ex, const char* what) : impl_(std::make_shared<impl>()) {
  impl_->ex = std::move(ex);
  impl_->what = what;
}

task_group::task_ptr task_group::add(asio::any_io_executor ex) {
  auto t = std::make_shared<task>();
  t->ex = std::move(ex);
  std::lock_guard lk(impl_->mu);
  impl_->tasks.push_back(t);
  return t;
}

// Runs on the task's strand once its coroutine has ended.
void task_group::finisher::operator()(std::exception_ptr e) const {
  t->done = true;
  if (e) {
    try {
      std::rethrow_exception(e);
    } catch (const std::system_error& ex) {
      // Cancelled while suspended: the stop asked for it.
      if (ex.code() != std::errc::operation_canceled) spdlog::error("{} ended with an exception: {}", g->what, ex.what());
    } catch (const std::exception& ex) {
      spdlog::error("{} ended with an exception: {}", g->what, ex.what());
    } catch (...) {
      spdlog::error("{} ended with an unknown exception", g->what);
    }
  }
  {
    std::lock_guard lk(g->mu);
    g->tasks.remove(t);
  }
  asio::post(g->ex, [g = g] { g->wake(); });
}

void task_group::cancel(asio::cancellation_type type, bool idle_only) {
  std::list<task_ptr> snapshot;
  {
    std::lock_guard lk(impl_->mu);
    snapshot = impl_->tasks;
  }
  for (auto& t : snapshot)
    asio::post(t->ex, [t, type, idle_only] {
      if (!t->done && (!idle_only || t->idle_since.load() != 0)) t->signal.emit(type);
    });
}

bool task_group::cancel_longest_idle(std::function<void()> on_cancelled) {
  task_ptr oldest;
  std::int64_t since = 0;
  {
    std::lock_guard lk(impl_->mu);
    for (const auto& t : impl_->tasks) {
      const std::int64_t s = t->idle_since.load();
      if (s != 0 && (since == 0 || s < since)) since = s, oldest = t;
    }
  }
  if (!oldest) return false;
  // Still idle since then, seen on its own strand: work that began meanwhile is not cut.
  asio::post(oldest->ex, [oldest, since, on_cancelled = std::move(on_cancelled)] {
    if (oldest->done || oldest->idle_since.load() != since) return;
    oldest->signal.emit(asio::cancellation_type::terminal);
    if (on_cancelled) on_cancelled();
  });
  return true;
}

std::size_t task_group::size() const {
  std::lock_guard lk(impl_->mu);
  return impl_->tasks.size();
}

task_group::counts task_group::count() const {
  counts out;
  std::lock_guard lk(impl_->mu);
  for (const auto& t : impl_->tasks) {
    ++out.open;
    if (t->idle_since.load() == 0) ++out.busy;
  }
  return out;
}

asio::awaitable<bool> task_group::wait_fewer_than(std::size_t n, std::chrono::steady_clock::time_point deadline) {
  auto g = impl_;
  auto op = g->wait_until([&] { return g->tasks.size() < n; }, deadline);
  co_return co_await std::move(op);
}

asio::awaitable<bool> task_group::wait_empty(std::chrono::steady_clock::time_point deadline) {
  auto g = impl_;
  auto op = g->wait_until([&] { return g->tasks.empty(); }, deadline);
  co_return co_await std::move(op);
}

}  // namespace pipehook
