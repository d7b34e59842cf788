#pragma once
// Internal to src/handlers: each handler file's registration function.

#include "pipehook/dispatch/handler.hpp"

#include <cerrno>
#include <cstring>

namespace pipehook::handlers {

void register_http();
void register_log();
void register_nats();

}  // namespace pipehook::handlers
