#pragma once
// One replica at a time for a role (the registrar, retention): on PostgreSQL, the process that
// holds a session-level advisory lock on a connection of its own has it, and loses it with that
// connection (a replica that dies, or whose connection drops, lets another take over). A SQLite
// log belongs to one process: it always has every role.

#include "pipehook/core/error.hpp"
#include "pipehook/store/location.hpp"

#include <chrono>
#include <memory>
#include <string>

namespace pipehook::store {

class leadership {
 public:
  // `role` names it in logs and picks the lock ("registrar", "retention"). On PostgreSQL a thread
  // of its own keeps the lock's connection and tries to take the role every `every`, so that
  // check() never waits on the database (a server that is down does not stall the caller).
  static std::unique_ptr<leadership> open(const location& where, const std::string& role,
                                          std::chrono::milliseconds every = std::chrono::seconds(1));
  virtual ~leadership() = default;
  // Whether this process has the role, as last seen. Any thread.
  virtual bool check() = 0;
};

}  // namespace pipehook::store
