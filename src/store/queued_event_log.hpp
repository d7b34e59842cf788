#pragma once
// The part of an event log that does not depend on the database: a bounded queue of writes and one
// writer thread that takes them in batches (group commit). A backend commits each batch in one
// transaction and completes every write of it after COMMIT returned (or failed).

#include "pipehook/store/event_log.hpp"
#include "body.hpp"

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <variant>
#include <vector>

namespace pipehook::store::detail {

struct probe_request {
  std::size_t room = 0;
};
struct reparse_request {
  std::int64_t quarantine_id = 0;
  event::event ev;
};
struct purge_request {
  std::int64_t before_us = 0;
  int limit = 0;
};

struct write_item {
  std::variant<event::event, quarantined, probe_request, std::vector<delivery_update>, reparse_request, purge_request,
               std::vector<compacted_body>>
      record;
  append_callback done;
  // An event's body as stored, compressed on the caller's thread (so that the writer does not).
  packed_body packed = {};
};

class queued_event_log : public event_log {
 public:
  void append(event::event ev, append_callback done) final {
    packed_body packed = pack_body(ev.body);
    enqueue(write_item{std::move(ev), std::move(done), std::move(packed)});
  }
  void append(quarantined q, append_callback done) final { enqueue(write_item{std::move(q), std::move(done)}); }
  void probe(std::size_t room, append_callback done) final { enqueue(write_item{probe_request{room}, std::move(done)}); }
  void update_deliveries(std::vector<delivery_update> updates, append_callback done) final {
    enqueue(write_item{std::move(updates), std::move(done)}, false);
  }
  void append_reparsed(std::int64_t quarantine_id, event::event ev, append_callback done) final {
    packed_body packed = pack_body(ev.body);
    enqueue(write_item{reparse_request{quarantine_id, std::move(ev)}, std::move(done), std::move(packed)});
  }
  void purge(std::int64_t before_us, int limit, append_callback done) final {
    enqueue(write_item{purge_request{before_us, limit}, std::move(done)}, false);
  }
  void compact(std::vector<compacted_body> rows, append_callback done) final {
    enqueue(write_item{std::move(rows), std::move(done)}, false);
  }
  // Stops taking writes, commits everything already queued, joins the writer. A backend's
  // destructor calls it first (the writer uses the backend's members).
  void close() final;
  std::size_t queue_depth() const final;

 protected:
  queued_event_log(const writer_options& o);
  ~queued_event_log() override = default;
  // Starts the writer thread: the last step of a backend's constructor.
  void start(const char* thread_name);
  // One transaction for the batch; each item's `done` runs after it (writer thread).
  virtual void commit_batch(std::vector<write_item>& batch) = 0;
  // After the writer ended (close()).
  virtual void after_close() {}

  const writer_options opts_;

 private:
  void enqueue(write_item it, bool bounded = true);
  void run();

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<write_item> queue_;
  bool closing_ = false;
  std::thread writer_;
};

}  // namespace pipehook::store::detail
