#pragma once
// One replica at a time for a role (the registrar, retention): on PostgreSQL, the process that
// holds a session-level advisory lock on a connection of its own has it, and loses it with that
// connection (a replica that dies, or whose connection drops, lets another take over). A SQLite
// log belongs to one process: it always has every role.

#include "pipehook/core/error.hpp"
#include "pipehook/store/location.hpp"

#include <memory>
#include <string>

namespace pipehook::store {

class leadership {
 public:
  // `role` names it in logs and picks the lock ("registrar", "retention").
  static std::unique_ptr<leadership> open(const location& where, const std::string& role);
  virtual ~leadership() = default;
  // Keeps the role, or tries to take it: true while this process has it. One round trip at most;
  // any thread, one at a time.
  virtual bool check() = 0;
};

}  // namespace pipehook::store
