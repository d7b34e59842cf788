#pragma once
// Awaiting a write through the event log from a coroutine.

#include "pipehook/store/event_log.hpp"

#include <boost/asio/awaitable.hpp>

#include <functional>

namespace pipehook::store {

// The awaitable for one write through the event log: `submit` hands the callback to the log (its
// append/probe/purge/...); the result comes back on the awaiting coroutine's executor, which is
// kept from finishing meanwhile. Callers build it in a statement of its own and co_await the named
// object (GCC 12, see STYLE.md).
boost::asio::awaitable<append_result> await_commit(std::function<void(append_callback)> submit);

}  // namespace pipehook::store
