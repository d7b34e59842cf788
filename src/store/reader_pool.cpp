#include "pipehook/store/reader_pool.hpp"

#include <condition_variable>
#include <mutex>
#include <vector>

namespace pipehook::store {

struct reader_pool::state {
  location where;
  std::size_t size = 1;
  std::mutex mu;
  std::condition_variable freed;
  std::vector<std::unique_ptr<reader>> idle;  // under mu
  std::size_t opened = 0;                     // under mu: idle + leased
};

outcome<std::unique_ptr<reader_pool>> reader_pool::open(const location& where, std::size_t size) {
  auto s = std::make_shared<state>();
  s->where = where;
  s->size = std::max<std::size_t>(1, size);
  auto first = reader::open(where);
  if (!first) return first.error();
  s->idle.push_back(std::move(*first));
  s->opened = 1;
  return std::unique_ptr<reader_pool>(new reader_pool(std::move(s)));
}

reader_pool::~reader_pool() = default;

std::size_t reader_pool::size() const { return s_->size; }

outcome<reader_pool::lease> reader_pool::acquire() {
  std::unique_lock lk(s_->mu);
  s_->freed.wait(lk, [&] { return !s_->idle.empty() || s_->opened < s_->size; });
  if (!s_->idle.empty()) {
    auto r = std::move(s_->idle.back());
    s_->idle.pop_back();
    return lease(s_, std::move(r));
  }
  ++s_->opened;  // reserved while it opens, outside the lock
  lk.unlock();
  auto r = reader::open(s_->where);
  if (!r) {
    lk.lock();
    --s_->opened;
    s_->freed.notify_one();
    return r.error();
  }
  return lease(s_, std::move(*r));
}

reader_pool::lease::lease(std::shared_ptr<state> s, std::unique_ptr<reader> r) : s_(std::move(s)), r_(std::move(r)) {}

reader_pool::lease::~lease() {
  if (!s_ || !r_) return;
  std::lock_guard lk(s_->mu);
  s_->idle.push_back(std::move(r_));
  s_->freed.notify_one();
}

}  // namespace pipehook::store
