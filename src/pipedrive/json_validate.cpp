#include "json_validate.hpp"

#include "pipehook/pipedrive/parse.hpp"

#include <string>

namespace pipehook::pipedrive::detail {
namespace {

using simdjson::error_code;

bool is_json_number(std::string_view t) {
  std::size_t i = 0;
  const std::size_t n = t.size();
  auto digit = [&](std::size_t k) { return k < n && t[k] >= '0' && t[k] <= '9'; };
  if (i < n && t[i] == '-') ++i;
  if (!digit(i)) return false;
  if (t[i] == '0') ++i;
  else while (digit(i)) ++i;
  if (i < n && t[i] == '.') {
    ++i;
    if (!digit(i)) return false;
    while (digit(i)) ++i;
  }
  if (i < n && (t[i] == 'e' || t[i] == 'E')) {
    ++i;
    if (i < n && (t[i] == '+' || t[i] == '-')) ++i;
    if (!digit(i)) return false;
    while (digit(i)) ++i;
  }
  return i == n;
}

struct validation_error {
  error_code code = simdjson::SUCCESS;
  std::string detail;
};

error_code check_scalar(od::json_type type, std::string_view raw) {
  raw = rtrim(raw);
  switch (type) {
    case od::json_type::number: return is_json_number(raw) ? simdjson::SUCCESS : simdjson::NUMBER_ERROR;
    case od::json_type::boolean: return raw == "true" || raw == "false" ? simdjson::SUCCESS : simdjson::T_ATOM_ERROR;
    case od::json_type::null: return raw == "null" ? simdjson::SUCCESS : simdjson::N_ATOM_ERROR;
    default: return simdjson::TAPE_ERROR;
  }
}

error_code walk(od::value v, int depth) {
  if (depth > max_json_depth) return simdjson::DEPTH_ERROR;
  od::json_type type;
  if (auto e = v.type().get(type)) return e;
  switch (type) {
    case od::json_type::object: {
      od::object obj;
      if (auto e = v.get_object().get(obj)) return e;
      for (auto f : obj) {
        od::field field;
        if (auto e = std::move(f).get(field)) return e;
        std::string_view key;
        if (auto e = field.unescaped_key().get(key)) return e;
        if (auto e = walk(field.value(), depth + 1)) return e;
      }
      return simdjson::SUCCESS;
    }
    case od::json_type::array: {
      od::array arr;
      if (auto e = v.get_array().get(arr)) return e;
      for (auto el : arr) {
        od::value item;
        if (auto e = std::move(el).get(item)) return e;
        if (auto e = walk(item, depth + 1)) return e;
      }
      return simdjson::SUCCESS;
    }
    case od::json_type::string: {
      std::string_view s;
      return v.get_string().get(s);
    }
    default: return check_scalar(type, v.raw_json_token());
  }
}

// Walks the whole document; then checks that nothing but whitespace follows the root value.
}  // namespace

std::string describe_json_error(error_code e) {
  switch (e) {
    case simdjson::EMPTY: return "the body is empty or only whitespace";
    case simdjson::UTF8_ERROR: return "the body is not valid UTF-8";
    case simdjson::DEPTH_ERROR: return "JSON nested deeper than " + std::to_string(max_json_depth) + " levels";
    case simdjson::TRAILING_CONTENT: return "unexpected content after the JSON value";
    case simdjson::INCORRECT_TYPE:
    case simdjson::T_ATOM_ERROR:
    case simdjson::F_ATOM_ERROR:
    case simdjson::N_ATOM_ERROR: return "invalid literal (expected true, false or null)";
    default: return simdjson::error_message(e);
  }
}

error_code validate_json(od::document& doc, std::string_view body) {
  bool scalar = false;
  if (auto e = doc.is_scalar().get(scalar)) return e;
  std::string_view extent;
  if (scalar) {
    od::json_type type;
    if (auto e = doc.type().get(type)) return e;
    if (type == od::json_type::string) {
      std::string_view s;
      if (auto e = doc.get_string().get(s)) return e;
    }
    if (auto e = doc.raw_json_token().get(extent)) return e;
    if (type != od::json_type::string)
      if (auto e = check_scalar(type, extent)) return e;
  } else {
    od::value root;
    if (auto e = doc.get_value().get(root)) return e;
    if (auto e = walk(root, 1)) return e;
    doc.rewind();
    if (auto e = doc.raw_json().get(extent)) return e;
  }
  const char* end_of_root = rtrim(extent).data() + rtrim(extent).size();
  const std::string_view trimmed = rtrim(body);
  if (end_of_root != trimmed.data() + trimmed.size()) return simdjson::TRAILING_CONTENT;
  return simdjson::SUCCESS;
}


}  // namespace pipehook::pipedrive::detail

namespace pipehook::pipedrive {

std::optional<std::string> json_error(std::string body) {
  thread_local simdjson::ondemand::parser parser;
  if (body.capacity() < body.size() + parse_padding) body.reserve(body.size() + parse_padding);
  const simdjson::padded_string_view input(body.data(), body.size(), body.capacity());
  simdjson::ondemand::document doc;
  simdjson::error_code err = parser.iterate(input).get(doc);
  if (!err) err = detail::validate_json(doc, body);
  if (err) return detail::describe_json_error(err);
  return std::nullopt;
}

}  // namespace pipehook::pipedrive
