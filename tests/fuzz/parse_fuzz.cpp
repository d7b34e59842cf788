// libFuzzer target for the webhook payload parser: any bytes in, a classified result out, no
// crash, no sanitizer report. Invariants checked: the body is kept as received; events carry
// a 32-hex event key and a known action.
#include "pipehook/pipedrive/parse.hpp"

#include <cstdint>
#include <cstdlib>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string body(reinterpret_cast<const char*>(data), size);
  if (size % 2) body.shrink_to_fit();  // exercise both the padded and the copy path
  const auto r = pipehook::pipedrive::parse_webhook(body, 0);
  if (r.ev.body != body) std::abort();
  if (r.status == pipehook::pipedrive::parse_status::event) {
    if (r.ev.event_key.size() != 32) std::abort();
    if (r.ev.action != "create" && r.ev.action != "change" && r.ev.action != "delete") std::abort();
    if (r.ev.entity.empty()) std::abort();
  } else if (r.reason.empty()) {
    std::abort();
  }
  return 0;
}
