// The stored-body codec (src/store/body.cpp): zstd frames with the shipped dictionary, exact bytes
// back, and errors that name the event; event keys as 16 bytes.
#include "../src/store/body.hpp"

#include <gtest/gtest.h>

#include <random>

namespace pipehook::store::detail {
namespace {

TEST(body_codec, round_trips_any_bytes_of_any_size) {
  std::mt19937 rng(1);
  for (std::size_t n : {0u, 1u, 2u, 31u, 32u, 900u, 4096u, 100000u, 1u << 20}) {
    for (int kind = 0; kind < 2; ++kind) {
      std::string raw(n, '\0');
      for (auto& c : raw) c = kind ? static_cast<char>(rng()) : "{\"meta\":,}abc"[rng() % 13];
      const packed_body p = pack_body(raw);
      EXPECT_EQ(p.dict, current_dictionary());
      EXPECT_LE(p.bytes.size(), raw.size() + 32 + 3 * (raw.size() >> 17)) << "incompressible bytes grow by the headers only";
      EXPECT_EQ(unpacked_size(p.bytes, p.dict), static_cast<std::int64_t>(n));
      auto back = unpack_body(p.bytes, p.dict, 7);
      ASSERT_TRUE(back) << back.error().message;
      EXPECT_TRUE(*back == raw) << n << " bytes, kind " << kind;
    }
  }
}

TEST(body_codec, plain_rows_are_given_back_as_they_are) {
  auto back = unpack_body("{\"a\":1}", std::nullopt, 3);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, "{\"a\":1}");
  EXPECT_EQ(unpacked_size("{\"a\":1}", std::nullopt), 7);
}

TEST(body_codec, a_truncated_frame_is_an_error_naming_the_event) {
  const packed_body p = pack_body(std::string(5000, 'q') + "end");
  auto cut = unpack_body(std::string_view(p.bytes).substr(0, p.bytes.size() - 3), p.dict, 41);
  ASSERT_FALSE(cut);
  EXPECT_EQ(cut.error().message.rfind("event 41: its stored body cannot be read", 0), 0u) << cut.error().message;
}

TEST(body_codec, event_keys_are_stored_as_16_bytes_when_they_are_hex) {
  const std::string key = "0123456789abcdef0123456789abcdef";
  auto blob = key_blob(key);
  ASSERT_TRUE(blob);
  EXPECT_EQ(blob->size(), 16u);
  EXPECT_EQ(key_text(*blob, true), key);
  EXPECT_FALSE(key_blob("0123456789ABCDEF0123456789ABCDEF")) << "upper case would not come back the same";
  EXPECT_FALSE(key_blob("bench-1"));
  EXPECT_FALSE(key_blob(key + "0"));
  EXPECT_EQ(key_text("bench-1", false), "bench-1");
}

TEST(body_codec, uuids_are_stored_as_16_bytes_when_canonical) {
  const std::string id = "bbba59e9-1d1f-4794-9472-72540d421386";
  auto blob = uuid_blob(id);
  ASSERT_TRUE(blob);
  EXPECT_EQ(blob->size(), 16u);
  EXPECT_EQ(uuid_text(*blob, true), id);
  EXPECT_FALSE(uuid_blob("BBBA59E9-1D1F-4794-9472-72540D421386")) << "upper case stays text, as sent";
  EXPECT_FALSE(uuid_blob("bbba59e91d1f4794947272540d421386"));
  EXPECT_FALSE(uuid_blob("bbba59e9-1d1f-4794-9472-72540d42138"));
  EXPECT_FALSE(uuid_blob("b-1-2"));
  EXPECT_EQ(uuid_text("b-1-2", false), "b-1-2");
}

}  // namespace
}  // namespace pipehook::store::detail
