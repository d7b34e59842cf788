#pragma once
// The event log's writes as Asio asynchronous operations: each takes a completion token
// (`co_await store::async_append(log, ev, asio::use_awaitable)`, a callback bound to an
// executor, ...). The result arrives on the handler's associated executor, which is kept busy
// (outstanding work) until it does, so io_context::run() never returns with a commit in flight.
// Included only where writes are awaited (ingest, admin, retention, the dispatcher).

#include "pipehook/store/event_log.hpp"

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>

#include <memory>
#include <utility>

namespace pipehook::store {
namespace detail {

// The one initiation behind every operation below: hands the log a callback that posts the
// result to the handler's own executor, where the handler is moved out and invoked, so nothing of
// the waiting coroutine is touched or destroyed on the writer thread. A named function object,
// not a lambda (GCC 12 and coroutines, see STYLE.md).
struct initiate_write {
  template <class Handler, class Submit>
  void operator()(Handler handler, Submit submit) const {
    auto shared = std::make_shared<Handler>(std::move(handler));
    auto ex = boost::asio::prefer(boost::asio::get_associated_executor(*shared),
                                  boost::asio::execution::outstanding_work.tracked);
    std::move(submit)(append_callback([shared, ex](append_result r) {
      boost::asio::post(ex, [shared, r = std::move(r)]() mutable {
        Handler h = std::move(*shared);
        std::move(h)(std::move(r));
      });
    }));
  }
};

template <class Token, class Submit>
auto async_write(Submit submit, Token&& token) {
  return boost::asio::async_initiate<Token, void(append_result)>(initiate_write{}, token, std::move(submit));
}

struct append_event {
  event_log* log;
  event::event ev;
  void operator()(append_callback cb) && { log->append(std::move(ev), std::move(cb)); }
};
struct append_quarantined {
  event_log* log;
  quarantined q;
  void operator()(append_callback cb) && { log->append(std::move(q), std::move(cb)); }
};
struct append_reparsed_event {
  event_log* log;
  std::int64_t quarantine_id;
  event::event ev;
  void operator()(append_callback cb) && { log->append_reparsed(quarantine_id, std::move(ev), std::move(cb)); }
};
struct probe_log {
  event_log* log;
  std::size_t room;
  void operator()(append_callback cb) && { log->probe(room, std::move(cb)); }
};
struct purge_log {
  event_log* log;
  std::int64_t before_us;
  int limit;
  void operator()(append_callback cb) && { log->purge(before_us, limit, std::move(cb)); }
};
struct update_log {
  event_log* log;
  std::vector<delivery_update> updates;
  void operator()(append_callback cb) && { log->update_deliveries(std::move(updates), std::move(cb)); }
};

}  // namespace detail

// Stores an event (or counts a duplicate): completes after its transaction committed or failed.
template <class Token>
auto async_append(event_log& log, event::event ev, Token&& token) {
  return detail::async_write(detail::append_event{&log, std::move(ev)}, std::forward<Token>(token));
}

// Stores a body that is not a Pipedrive event.
template <class Token>
auto async_append(event_log& log, quarantined q, Token&& token) {
  return detail::async_write(detail::append_quarantined{&log, std::move(q)}, std::forward<Token>(token));
}

// Stores an event re-parsed from a quarantined row and deletes the row, in one transaction.
template <class Token>
auto async_append_reparsed(event_log& log, std::int64_t quarantine_id, event::event ev, Token&& token) {
  return detail::async_write(detail::append_reparsed_event{&log, quarantine_id, std::move(ev)}, std::forward<Token>(token));
}

// A write through the same path as events (readiness): see event_log::probe.
template <class Token>
auto async_probe(event_log& log, std::size_t room, Token&& token) {
  return detail::async_write(detail::probe_log{&log, room}, std::forward<Token>(token));
}

// One retention batch: see event_log::purge.
template <class Token>
auto async_purge(event_log& log, std::int64_t before_us, int limit, Token&& token) {
  return detail::async_write(detail::purge_log{&log, before_us, limit}, std::forward<Token>(token));
}

// The dispatcher's verdicts, committed with the next batch.
template <class Token>
auto async_update_deliveries(event_log& log, std::vector<delivery_update> updates, Token&& token) {
  return detail::async_write(detail::update_log{&log, std::move(updates)}, std::forward<Token>(token));
}

}  // namespace pipehook::store
