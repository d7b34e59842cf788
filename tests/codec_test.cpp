// The codecs, SHA-256 and the backoff schedule: each written once and used everywhere.
#include "pipehook/core/backoff.hpp"
#include "pipehook/core/codec.hpp"
#include "pipehook/core/log_limiter.hpp"

#include <boost/json/serialize.hpp>
#include <boost/json/string.hpp>
#include <gtest/gtest.h>

#include <string>

namespace pipehook {
namespace {

TEST(codec, base64_round_trips_and_decodes_strictly) {
  // RFC 4648 §10 test vectors.
  const std::pair<std::string, std::string> vectors[] = {{"", ""},         {"f", "Zg=="},         {"fo", "Zm8="},
                                                         {"foo", "Zm9v"}, {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="},
                                                         {"foobar", "Zm9vYmFy"}};
  for (const auto& [plain, encoded] : vectors) {
    EXPECT_EQ(base64_encode(plain), encoded);
    EXPECT_EQ(base64_decode(encoded), plain) << encoded;
  }
  const std::string bytes("\x00\xff\xfe\x01 binary", 10);
  EXPECT_EQ(base64_decode(base64_encode(bytes)), bytes);
  for (const char* bad : {"Zm9", "Zm9v!A==", "Z=9v", "Zg=a", "====", "Zm9vYg="})
    EXPECT_FALSE(base64_decode(bad)) << bad;
}

TEST(codec, base64url_is_unpadded_and_refuses_the_other_alphabet) {
  const std::string bytes("\xfb\xff\xbf?>", 5);
  EXPECT_EQ(base64_encode(bytes), "+/+/Pz4=");
  EXPECT_EQ(base64url_encode(bytes), "-_-_Pz4");
  EXPECT_EQ(base64url_decode("-_-_Pz4"), bytes);
  EXPECT_EQ(base64url_encode("d:42"), "ZDo0Mg");  // an admin cursor, as earlier versions wrote it
  EXPECT_EQ(base64url_decode("ZDo0Mg"), "d:42");
  for (const char* bad : {"+/+/Pz4", "ZDo0Mg==", "Z", "ZD!0"}) EXPECT_FALSE(base64url_decode(bad)) << bad;
}

TEST(codec, sha256_and_hex) {
  const auto empty = sha256("");
  EXPECT_EQ(to_hex(empty.data(), empty.size()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  const auto abc = sha256("abc");
  EXPECT_EQ(to_hex(abc.data(), 4), "ba7816bf");
}

TEST(codec, json_escaping_matches_boost_json) {
  const std::string s = std::string("plain \"q\" \\ \b\f\n\r\t \x01\x1f \xc3\xa9 ") + '\0' + " end";
  std::string out;
  append_json_escaped(out, s);
  EXPECT_EQ(out, "plain \\\"q\\\" \\\\ \\b\\f\\n\\r\\t \\u0001\\u001f \xc3\xa9 \\u0000 end");
  EXPECT_EQ("\"" + out + "\"", boost::json::serialize(boost::json::string(s)));
}

TEST(backoff, doubles_with_jitter_never_below_half_and_stops_at_the_cap) {
  using std::chrono::milliseconds;
  for (unsigned attempt = 1; attempt <= 8; ++attempt) {
    const double step = std::min(100.0 * (1u << (attempt - 1)), 5000.0);
    for (int i = 0; i < 50; ++i) {
      const auto d = backoff_delay(attempt, milliseconds(100), milliseconds(5000));
      EXPECT_GE(d.count(), static_cast<long>(step / 2) - 1) << attempt;
      EXPECT_LT(d.count(), static_cast<long>(step)) << attempt;
    }
  }
  EXPECT_LE(backoff_delay(1000, milliseconds(100), milliseconds(5000)).count(), 5000);  // no overflow far out
}

}  // namespace
}  // namespace pipehook

namespace pipehook {
namespace {

// A flood of like lines (503s in a database outage) is one line per kind per window, and the next
// line says how many were held back; other kinds are not held up by it.
TEST(log_limiter, one_line_per_kind_per_window_and_the_next_counts_what_was_held_back) {
  log_limiter limit(std::chrono::seconds(10));
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(limit.admit("503 store_unavailable", t0), 0u);
  for (int i = 1; i <= 500; ++i) EXPECT_FALSE(limit.admit("503 store_unavailable", t0 + std::chrono::milliseconds(i)));
  EXPECT_EQ(limit.admit("401 unauthorized", t0 + std::chrono::seconds(1)), 0u);  // another kind
  EXPECT_EQ(limit.admit("503 store_unavailable", t0 + std::chrono::seconds(10)), 500u);
  EXPECT_FALSE(limit.admit("503 store_unavailable", t0 + std::chrono::seconds(11)));
  EXPECT_EQ(limit.admit("503 store_unavailable", t0 + std::chrono::seconds(25)), 1u);
}

}  // namespace
}  // namespace pipehook
