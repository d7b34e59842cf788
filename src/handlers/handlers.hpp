#pragma once
// Internal to src/handlers: each handler file's registration function.

#include "pipehook/dispatch/handler.hpp"

#include <cerrno>
#include <cstring>

namespace pipehook::handlers {

void register_http();
void register_log();
void register_nats();
void register_rabbitmq();

// "{entity}.{action}"-style templates of subjects and routing keys: placeholders {entity},
// {action}, {company_id}, {entity_id}, {version}; each value one token ('.', wildcards and
// whitespace in it become '_').
outcome<void> check_topic_template(const std::string& tmpl, const std::string& key_name);
std::string render_topic(const std::string& tmpl, const event::event& e);

}  // namespace pipehook::handlers
