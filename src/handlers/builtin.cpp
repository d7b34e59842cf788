#include "pipehook/handlers/builtin.hpp"

#include "handlers.hpp"

#include <mutex>

namespace pipehook::handlers {

void register_builtin() {
  static std::once_flag once;
  std::call_once(once, [] {
    register_http();
    register_log();
    register_nats();
    register_rabbitmq();
  });
}

}  // namespace pipehook::handlers
