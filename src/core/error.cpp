#include "pipehook/core/error.hpp"

#include <stdexcept>

namespace pipehook {
namespace {

class category_impl final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "pipehook"; }
  std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
      case errc::ok: return "success";
      case errc::invalid_config: return "invalid configuration";
      case errc::invalid_argument: return "invalid argument";
      case errc::queue_full: return "event log write queue is full";
      case errc::store_busy: return "event log database is locked";
      case errc::store_full: return "event log storage is full";
      case errc::store_io: return "event log storage error";
      case errc::store_closed: return "event log is closed";
      case errc::not_found: return "not found";
      case errc::io_error: return "I/O error";
    }
    return "unknown pipehook error";
  }
};

}  // namespace

const boost::system::error_category& pipehook_category() noexcept {
  static const category_impl instance;
  return instance;
}

boost::system::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), pipehook_category()};
}

failure make_failure(errc e, std::string message) { return failure{make_error_code(e), std::move(message)}; }

void throw_exception_from_error(const failure& f, const boost::source_location&) {
  throw std::runtime_error(f.message.empty() ? f.code.message() : f.message);
}

}  // namespace pipehook
