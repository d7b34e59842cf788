#include "pipehook/store/handler_state.hpp"

#include "pipehook/core/time.hpp"

#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <spdlog/spdlog.h>

namespace pipehook::store {
namespace {

constexpr std::string_view prefix = "handler_state:";

std::int64_t int_of(const boost::json::object& o, std::string_view k) {
  const auto* v = o.if_contains(k);
  return v && v->is_int64() ? v->as_int64() : 0;
}

std::string text_of(const boost::json::object& o, std::string_view k) {
  const auto* v = o.if_contains(k);
  return v && v->is_string() ? std::string(v->as_string()) : std::string();
}

}  // namespace

handler_state changed_by_hand(const handler_state& current, bool pause, std::string by) {
  handler_state s;
  const std::int64_t now = now_us();
  s.paused = pause;
  s.manual = pause;
  s.since_us = pause && current.paused ? current.since_us : now;
  s.reason = pause ? "paused by hand" : "resumed by hand";
  s.changed_at_us = std::max(now, current.changed_at_us + 1);
  s.by = std::move(by);
  return s;
}

outcome<std::map<std::string, handler_state>> load_handler_states(meta_store& meta) {
  auto rows = meta.with_prefix(std::string(prefix));
  if (!rows) return rows.error();
  std::map<std::string, handler_state> out;
  for (const auto& [key, value] : *rows) {
    boost::system::error_code ec;
    const auto v = boost::json::parse(value, ec);
    if (ec || !v.is_object()) {
      // Written by something else (a hand edit, a newer version's shape): skipped, never fatal.
      spdlog::warn("the stored state of handler {} is not readable ({}); it is taken as active", key.substr(prefix.size()),
                   ec ? ec.message() : "not an object");
      continue;
    }
    const auto& o = v.as_object();
    handler_state s;
    s.paused = text_of(o, "state") != "active";
    s.manual = text_of(o, "state") == "paused_by_hand";
    s.since_us = int_of(o, "since");
    s.next_probe_us = int_of(o, "next_probe");
    s.pause_ms = int_of(o, "pause_ms");
    s.failures = static_cast<std::uint32_t>(std::max<std::int64_t>(0, int_of(o, "failures")));
    s.reason = text_of(o, "reason");
    s.changed_at_us = int_of(o, "changed_at");
    s.by = text_of(o, "by");
    out[key.substr(prefix.size())] = std::move(s);
  }
  return out;
}

outcome<void> save_handler_state(meta_store& meta, const std::string& handler, const handler_state& s) {
  const boost::json::object o{{"state", s.state_text()},  {"since", s.since_us},       {"next_probe", s.next_probe_us},
                              {"pause_ms", s.pause_ms},    {"failures", s.failures},    {"reason", s.reason},
                              {"changed_at", s.changed_at_us}, {"by", s.by}};
  return meta.put(std::string(prefix) + handler, boost::json::serialize(o));
}

}  // namespace pipehook::store
