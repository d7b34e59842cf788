// The JSON validator parse_webhook starts with: RFC 8259 exactly (simdjson On-Demand alone checks
// only what it visits), table-driven.
#include "pipehook/pipedrive/parse.hpp"

#include <gtest/gtest.h>

#include <string>

namespace pipehook::pipedrive {
namespace {

TEST(json_validate, accepts_every_valid_json_value) {
  for (const std::string ok : {"{}", "[]", "\"s\"", "0", "-0.5e+3", "1E9", "true", "false", "null", " {\"a\":[1,{\"b\":null}]} \n",
                               "123456789012345678901234567890", "\"\\u00e9\\n\"", "\"\xc3\xa9\"", "[[[[1]]]]"})
    EXPECT_FALSE(json_error(ok)) << ok << ": " << json_error(ok).value_or("");
}

TEST(json_validate, refuses_what_rfc_8259_does_with_a_reason) {
  struct kase {
    std::string body, says;
  };
  const kase cases[] = {
      {"", "empty"},
      {"   ", "empty"},
      {"01", ""},
      {"1.", ""},
      {".5", ""},
      {"+1", ""},
      {"tru", "literal"},
      {"nul", ""},
      {"{\"a\":1}x", "after the JSON value"},
      {"[1,]", ""},
      {"{\"a\"}", ""},
      {"{\"a\":1,}", ""},
      {"\"\xff\"", "UTF-8"},
      {"[1] [2]", "after the JSON value"},
      {"{\"a\":tru}", "literal"},
      {"{\"a\":01}", ""},
  };
  for (const auto& k : cases) {
    const auto why = json_error(k.body);
    ASSERT_TRUE(why) << "accepted: " << k.body;
    EXPECT_NE(why->find(k.says), std::string::npos) << k.body << ": " << *why;
  }
}

TEST(json_validate, nesting_is_bounded) {
  const int depth = max_json_depth + 1;
  const std::string deep = std::string(depth, '[') + std::string(depth, ']');
  const auto why = json_error(deep);
  ASSERT_TRUE(why);
  EXPECT_NE(why->find("nested deeper than"), std::string::npos) << *why;
  const std::string fine = std::string(max_json_depth - 1, '[') + std::string(max_json_depth - 1, ']');
  EXPECT_FALSE(json_error(fine));
}

}  // namespace
}  // namespace pipehook::pipedrive
