#pragma once
// The completion token of pipehook's coroutines: `co_await op(..., use_tuple)` yields
// (error_code, results...) instead of throwing. (Boost 1.81 has no default token and no
// single-argument as_tuple.)

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace pipehook {

using tuple_awaitable_t = boost::asio::as_tuple_t<boost::asio::use_awaitable_t<>>;
inline constexpr tuple_awaitable_t use_tuple{};

}  // namespace pipehook
