#pragma once
// The event log's `meta` table as a small key-value store, for state that processes sharing one log
// (serve, the CLI, replicas on PostgreSQL) hand to each other: e.g. a handler paused by
// `pipehook handlers pause`, or by a replica's circuit breaker. One connection of its own; both
// backends. Values are short texts (JSON where they have fields).

#include "pipehook/core/error.hpp"
#include "pipehook/store/location.hpp"

#include <map>
#include <memory>
#include <string>

namespace pipehook::store {

class meta_store {
 public:
  static outcome<std::unique_ptr<meta_store>> open(const location& where);
  virtual ~meta_store() = default;
  // Every key that starts with `prefix`, with its value.
  virtual outcome<std::map<std::string, std::string>> with_prefix(const std::string& prefix) = 0;
  virtual outcome<void> put(const std::string& key, const std::string& value) = 0;
};

}  // namespace pipehook::store
