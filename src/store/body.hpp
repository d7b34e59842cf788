#pragma once
// Stored bodies (internal to the store module): a webhook body is kept as a zstd frame (level 3,
// with a content checksum), compressed with the newest dictionary compiled into pipehook
// (src/store/dictionary/, trained by scripts/train-dictionary.py). The row keeps the id of the
// dictionary its frame needs (events.body_dict): 0 for none, NULL for a body stored as plain text
// by a pipehook before compression (such rows stay readable, and are compressed in the
// background: store::compact_bodies). Unpacking returns the exact bytes received.

#include "pipehook/core/error.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace pipehook::store::detail {

struct packed_body {
  std::string bytes;       // the zstd frame
  std::int64_t dict = 0;   // the dictionary id it needs (0: none)
};

// The dictionary new bodies are compressed with.
std::int64_t current_dictionary();

// Compresses `raw` (any bytes, any size) with the current dictionary. Thread-safe.
packed_body pack_body(std::string_view raw);

// The body as received. `dict`: the row's body_dict (nullopt: stored as plain text). Errors
// (errc::store_io) name the event: a frame that does not decode or fails its checksum, a dictionary
// this build does not have, or a frame that asks for another dictionary than its row says.
outcome<std::string> unpack_body(std::string_view stored, std::optional<std::int64_t> dict, std::int64_t event_id);

// The size of the body as received, from the frame's header (the stored size for plain text);
// -1 when the frame is unreadable.
std::int64_t unpacked_size(std::string_view stored, std::optional<std::int64_t> dict);

// The events.event_key column: the 32 lower-case hex digits every event key has are stored as
// their 16 bytes (a BLOB); anything else (keys written by other tools) stays text (nullopt here).
// key_text reverses it.
std::optional<std::string> key_blob(std::string_view key);
std::string key_text(std::string_view stored, bool is_blob);

// The same for UUIDs (events.event_id, correlation_id): a canonical lower-case UUID is stored as
// its 16 bytes; uuid_text reverses it (8-4-4-4-12 hex digits).
std::optional<std::string> uuid_blob(std::string_view text);
std::string uuid_text(std::string_view stored, bool is_blob);

}  // namespace pipehook::store::detail
