#include "pipehook/event/json.hpp"

#include "pipehook/core/codec.hpp"
#include "pipehook/core/time.hpp"

#include <boost/json/parse.hpp>

#include <algorithm>
#include <boost/json/value.hpp>

namespace pipehook::event {
boost::json::value text_or_null(const std::string& s) {
  if (s.empty()) return nullptr;
  return boost::json::string(s);
}

namespace {

bool dns_label_chars(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  });
}

}  // namespace

std::string record_url(const event& e) {
  // Only a company's own Pipedrive host ("acme.pipedrive.com", from meta.host): a payload never
  // makes the page link anywhere else.
  constexpr std::string_view suffix = ".pipedrive.com";
  const std::string_view host = e.host;
  if (host.size() <= suffix.size() || host.substr(host.size() - suffix.size()) != suffix ||
      !dns_label_chars(host.substr(0, host.size() - suffix.size())))
    return {};
  // Record pages of Pipedrive's web app, by entity; the others (activities, notes, stages, ...)
  // have no page of their own.
  std::string_view path;
  if (e.entity == "deal") path = "/deal/";
  else if (e.entity == "person") path = "/person/";
  else if (e.entity == "organization") path = "/organization/";
  else if (e.entity == "product") path = "/product/";
  else if (e.entity == "lead") path = "/leads/inbox/";
  else if (e.entity == "user") path = "/users/details/";
  else if (e.entity == "pipeline") path = "/pipeline/";
  else return {};
  // Ids are numbers, or UUIDs for leads.
  const std::string_view id = e.entity_id;
  if (id.empty() || id.size() > 64 ||
      !std::all_of(id.begin(), id.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || c == '-'; }))
    return {};
  return "https://" + std::string(host) + std::string(path) + std::string(id);
}

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
  o["url"] = text_or_null(record_url(e));
  return o;
}

namespace {

// A JSON string as Boost.JSON serializes it.
void append_string(std::string& out, std::string_view s) {
  out += '"';
  append_json_escaped(out, s);
  out += '"';
}

void append_text_or_null(std::string& out, std::string_view key, const std::string& v) {
  out += key;
  if (v.empty()) out += "null";
  else append_string(out, v);
}

}  // namespace

void append_json(std::string& out, const stored_event& se) {
  const event& e = se.ev;
  out += "{\"id\":";
  out += std::to_string(se.id);
  out += ",\"event_key\":";
  append_string(out, e.event_key);
  out += ",\"version\":";
  out += std::to_string(e.version);
  out += ",\"entity\":";
  append_string(out, e.entity);
  out += ",\"action\":";
  append_string(out, e.action);
  out += ",\"source_action\":";
  append_string(out, e.source_action);
  append_text_or_null(out, ",\"entity_id\":", e.entity_id);
  append_text_or_null(out, ",\"company_id\":", e.company_id);
  append_text_or_null(out, ",\"user_id\":", e.user_id);
  append_text_or_null(out, ",\"webhook_id\":", e.webhook_id);
  append_text_or_null(out, ",\"event_id\":", e.event_id);
  out += ",\"occurred_at\":";
  append_string(out, format_rfc3339_us(e.occurred_at_us));
  out += ",\"received_at\":";
  append_string(out, format_rfc3339_us(e.received_at_us));
  out += ",\"attempt\":";
  out += std::to_string(e.attempt);
  append_text_or_null(out, ",\"change_source\":", e.change_source);
  out += e.is_bulk ? ",\"is_bulk\":true" : ",\"is_bulk\":false";
  append_text_or_null(out, ",\"correlation_id\":", e.correlation_id);
  append_text_or_null(out, ",\"type\":", e.type);
  append_text_or_null(out, ",\"host\":", e.host);
  append_text_or_null(out, ",\"merged_to_id\":", e.merged_to_id);
  append_text_or_null(out, ",\"merged_from_id\":", e.merged_from_id);
  append_text_or_null(out, ",\"url\":", record_url(e));
  out += '}';
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
