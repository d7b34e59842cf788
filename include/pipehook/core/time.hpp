#pragma once
// Time values as integer microseconds since the Unix epoch (UTC), and their text forms.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace pipehook {

// Microseconds since the epoch, from the system clock.
std::int64_t now_us() noexcept;

// Parses ISO-8601 / RFC 3339 date-times: "2022-11-24T15:11:55.724Z", "...T15:11:55Z",
// "...T15:11:55+02:00", "2022-06-29 07:53:43" (no zone = UTC), "2022-11-24" (midnight UTC).
// Fractions are kept to the microsecond. nullopt when the text is not such a time.
std::optional<std::int64_t> parse_iso8601_us(std::string_view text) noexcept;

// RFC 3339 in UTC: "2022-11-24T15:11:55Z", "...55.724Z" or "...55.724123Z" (shortest exact fraction).
std::string format_rfc3339_us(std::int64_t us);

// Durations: "250ms", "10s", "5m", "2h", "7d"; a bare number is seconds. nullopt when malformed.
std::optional<std::int64_t> parse_duration_ms(std::string_view text) noexcept;

}  // namespace pipehook
