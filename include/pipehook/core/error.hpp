#pragma once
// The project's error values: an error code in pipehook's category plus a message meant for a
// person (it names what was wrong: the key, the field, the file). Fallible functions return
// outcome<T>; exceptions are only a last-resort safety net.

#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>

#include <string>

namespace pipehook {

enum class errc {
  ok = 0,
  invalid_config,    // a config file or value is wrong
  invalid_argument,  // a CLI flag or API parameter is wrong
  queue_full,        // the event log's write queue is at capacity
  store_busy,        // the database is locked by someone else
  store_full,        // disk (or the database's page limit) is full
  store_io,          // any other storage failure
  store_closed,      // the writer has shut down
  not_found,
  io_error,          // sockets, files
};

const boost::system::error_category& pipehook_category() noexcept;
boost::system::error_code make_error_code(errc e) noexcept;

// An error value with a message for people.
struct failure {
  boost::system::error_code code;
  std::string message;
};

failure make_failure(errc e, std::string message);

// Called by boost::system::result::value() on an error: throws std::runtime_error(message).
[[noreturn]] void throw_exception_from_error(const failure& f, const boost::source_location& loc);

template <class T>
using outcome = boost::system::result<T, failure>;

}  // namespace pipehook

template <>
struct boost::system::is_error_code_enum<pipehook::errc> : std::true_type {};
