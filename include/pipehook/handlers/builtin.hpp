#pragma once
// The handler types that ship with pipehook. A new type is one file in src/handlers/ plus one
// line in builtin.cpp; no other handler and no ingest code changes.

namespace pipehook::handlers {

// Registers http, nats and log with the dispatch registry (idempotent).
void register_builtin();

}  // namespace pipehook::handlers
