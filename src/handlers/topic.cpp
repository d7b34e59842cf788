// Subject / routing-key templates shared by the queue handlers (nats, rabbitmq).
#include "handlers.hpp"

namespace pipehook::handlers {
namespace {

// A value as one dot-separated token: '.', wildcards ('*', '>', '#') and whitespace become '_'.
std::string topic_token(std::string_view v) {
  std::string out = v.empty() ? "_" : std::string(v);
  for (char& c : out)
    if (c == '.' || c == '*' || c == '>' || c == '#' || static_cast<unsigned char>(c) <= ' ') c = '_';
  return out;
}

}  // namespace

outcome<void> check_topic_template(const std::string& tmpl, const std::string& key_name) {
  for (std::size_t i = tmpl.find('{'); i != std::string::npos; i = tmpl.find('{', i + 1)) {
    const auto close = tmpl.find('}', i);
    const std::string name = close == std::string::npos ? "" : tmpl.substr(i + 1, close - i - 1);
    if (name != "entity" && name != "action" && name != "company_id" && name != "entity_id" && name != "version")
      return make_failure(errc::invalid_config, key_name + ": unknown placeholder in \"" + tmpl +
                                                    "\" (use {entity}, {action}, {company_id}, {entity_id}, {version})");
  }
  return {};
}

std::string render_topic(const std::string& t, const event::event& e) {
  std::string out;
  for (std::size_t i = 0; i < t.size(); ++i) {
    if (t[i] != '{') {
      out += t[i];
      continue;
    }
    const auto close = t.find('}', i);
    const std::string name = t.substr(i + 1, close - i - 1);
    if (name == "entity") out += topic_token(e.entity);
    else if (name == "action") out += topic_token(e.action);
    else if (name == "company_id") out += topic_token(e.company_id);
    else if (name == "entity_id") out += topic_token(e.entity_id);
    else if (name == "version") out += "v" + std::to_string(e.version);
    i = close;
  }
  return out;
}

}  // namespace pipehook::handlers
