#include "pipehook/event/json.hpp"

#include "pipehook/core/time.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

namespace pipehook::event {
namespace {

boost::json::value text_or_null(const std::string& s) {
  if (s.empty()) return nullptr;
  return boost::json::string(s);
}

}  // namespace

boost::json::object to_json(const stored_event& se) {
  const event& e = se.ev;
  boost::json::object o;
  o["id"] = se.id;
  o["event_key"] = e.event_key;
  o["version"] = e.version;
  o["entity"] = e.entity;
  o["action"] = e.action;
  o["source_action"] = e.source_action;
  o["entity_id"] = text_or_null(e.entity_id);
  o["company_id"] = text_or_null(e.company_id);
  o["user_id"] = text_or_null(e.user_id);
  o["webhook_id"] = text_or_null(e.webhook_id);
  o["event_id"] = text_or_null(e.event_id);
  o["occurred_at"] = format_rfc3339_us(e.occurred_at_us);
  o["received_at"] = format_rfc3339_us(e.received_at_us);
  o["attempt"] = e.attempt;
  o["change_source"] = text_or_null(e.change_source);
  o["is_bulk"] = e.is_bulk;
  o["correlation_id"] = text_or_null(e.correlation_id);
  o["type"] = text_or_null(e.type);
  o["host"] = text_or_null(e.host);
  o["merged_to_id"] = text_or_null(e.merged_to_id);
  o["merged_from_id"] = text_or_null(e.merged_from_id);
  return o;
}

boost::json::object to_json_detail(const stored_event& se) {
  boost::json::object o = to_json(se);
  o["deliveries"] = se.deliveries;
  o["last_attempt"] = se.last_attempt;
  o["last_received_at"] = format_rfc3339_us(se.last_received_at_us);
  boost::system::error_code ec;
  boost::json::value body = boost::json::parse(se.ev.body, ec);
  if (ec) body = boost::json::string(se.ev.body);
  o["body"] = std::move(body);
  return o;
}

boost::json::object to_json_envelope(const stored_event& se) {
  boost::json::object o = to_json(se);
  boost::system::error_code ec;
  boost::json::value body = boost::json::parse(se.ev.body, ec);
  const boost::json::object* b = ec ? nullptr : body.if_object();
  auto field = [&](const char* key) -> boost::json::value {
    if (!b) return nullptr;
    if (const auto* v = b->if_contains(key)) return *v;
    return nullptr;
  };
  o["data"] = field(se.ev.version == 1 ? "current" : "data");
  o["previous"] = field("previous");
  return o;
}

}  // namespace pipehook::event
