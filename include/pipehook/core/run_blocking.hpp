#pragma once
// Runs one coroutine to completion on an io_context and returns its result: the bridge from the
// asynchronous API client to the blocking CLI commands (and tests). Exceptions propagate.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <exception>
#include <optional>

namespace pipehook {

namespace detail {
template <class T>
boost::asio::awaitable<void> store_result(boost::asio::awaitable<T> op, std::optional<T>* out) {
  *out = co_await std::move(op);
}
}  // namespace detail

template <class T>
T run_blocking(boost::asio::io_context& ioc, boost::asio::awaitable<T> op) {
  std::optional<T> out;
  boost::asio::co_spawn(ioc, detail::store_result(std::move(op), &out), [](std::exception_ptr e) {
    if (e) std::rethrow_exception(e);
  });
  ioc.restart();
  ioc.run();
  return std::move(*out);
}

}  // namespace pipehook
