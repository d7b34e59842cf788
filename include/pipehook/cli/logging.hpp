#pragma once
// The process's logging: spdlog set up from [log].

#include "pipehook/config/config.hpp"
#include "pipehook/core/error.hpp"

namespace pipehook::cli {

// Sets up spdlog as log.* says: level, text or JSON lines, stderr or a file (opened anew: call it
// again after log rotation). Fails when the file cannot be opened.
outcome<void> setup_logging(const config::log_config& c);

}  // namespace pipehook::cli
