#pragma once
// Read connections for queries that run at once (the admin API's worker threads): up to `size`
// readers, opened as needed, each used by one thread at a time through a lease.

#include "pipehook/store/reader.hpp"

#include <memory>

namespace pipehook::store {

class reader_pool {
 public:
  // Opens the first reader now (so that a wrong location is an error at start-up).
  static outcome<std::unique_ptr<reader_pool>> open(const location& where, std::size_t size);
  ~reader_pool();

  struct state;
  // A reader for as long as the lease lives; it goes back to the pool then. Movable, and it keeps
  // the pool's state alive (an export streaming after the API is gone still has its reader).
  class lease {
   public:
    lease(std::shared_ptr<state> s, std::unique_ptr<reader> r);
    lease(lease&&) noexcept = default;
    lease& operator=(lease&&) noexcept = default;
    ~lease();
    reader& operator*() const { return *r_; }
    reader* operator->() const { return r_.get(); }

   private:
    std::shared_ptr<state> s_;
    std::unique_ptr<reader> r_;
  };

  // A free reader, waiting while all `size` are leased; opens a new one while fewer exist.
  outcome<lease> acquire();
  std::size_t size() const;

 private:
  explicit reader_pool(std::shared_ptr<state> s) : s_(std::move(s)) {}
  std::shared_ptr<state> s_;
};

}  // namespace pipehook::store
