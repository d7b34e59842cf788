#pragma once
// The PostgreSQL schema: the same tables as SQLite's (times as microseconds since the epoch, so
// every query answers with the same JSON), versioned in pipehook_schema and migrated under an
// advisory lock so that processes starting together take turns.

#include "pg.hpp"

namespace pipehook::store::pg {

inline constexpr int schema_version = 5;

// The database's clock in microseconds since the epoch: leases and heartbeats are compared on one
// clock, whatever the replicas' own clocks say.
inline constexpr std::string_view db_now_us = "(extract(epoch FROM clock_timestamp()) * 1000000)::bigint";

// Creates or upgrades the schema; refuses a database whose schema is newer than this build.
outcome<void> migrate(PGconn* c);

// For readers: the schema must exist and not be newer than this build.
outcome<void> check_schema(PGconn* c, const std::string& where);

}  // namespace pipehook::store::pg
