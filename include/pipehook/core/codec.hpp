#pragma once
// The byte codecs the project uses, each once: base64 (RFC 4648 §4, padded) and base64url (§5,
// unpadded) through OpenSSL, SHA-256, hex, and JSON string escaping.

#include <array>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace pipehook {

std::string base64_encode(std::string_view bytes);
// Strict: a length that is a multiple of 4, only the alphabet, '=' only as padding. nullopt otherwise.
std::optional<std::string> base64_decode(std::string_view text);

std::string base64url_encode(std::string_view bytes);  // no padding
// Unpadded base64url (as base64url_encode writes it); nullopt for anything else.
std::optional<std::string> base64url_decode(std::string_view text);

std::array<unsigned char, 32> sha256(std::string_view data);

// Lower-case hex of `n` bytes.
// ASCII letters in lower case (header names, schemes, token types).
std::string ascii_lower(std::string_view s);

std::string to_hex(const unsigned char* bytes, std::size_t n);

// The body of a JSON string (no quotes) as Boost.JSON writes it: '"', '\\' and control characters
// escaped (\b \f \n \r \t, else \u00XX), every other byte as is. `Out` is a std::string or any
// buffer with push_back and append(first, last) (fmt's memory buffer).
template <class Out>
void append_json_escaped(Out& out, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  std::size_t plain_from = 0;
  auto flush = [&](std::size_t to) {
    if (to > plain_from) out.append(s.data() + plain_from, s.data() + to);
  };
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto u = static_cast<unsigned char>(s[i]);
    if (u >= 0x20 && s[i] != '"' && s[i] != '\\') continue;
    flush(i);
    plain_from = i + 1;
    out.push_back('\\');
    switch (s[i]) {
      case '"': out.push_back('"'); break;
      case '\\': out.push_back('\\'); break;
      case '\b': out.push_back('b'); break;
      case '\f': out.push_back('f'); break;
      case '\n': out.push_back('n'); break;
      case '\r': out.push_back('r'); break;
      case '\t': out.push_back('t'); break;
      default: {
        const char esc[] = {'u', '0', '0', hex[u >> 4], hex[u & 15]};
        out.append(esc, esc + 5);
      }
    }
  }
  flush(s.size());
}

}  // namespace pipehook
