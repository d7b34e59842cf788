#pragma once
// Values the registrar's tests share: the desired state pipehook asks for, and webhooks as
// Pipedrive lists them.

#include "fake_pipedrive.hpp"
#include "pipehook/pipedrive/registrar.hpp"
#include "support.hpp"

namespace pipehook::test {

namespace pd = pipedrive;

inline const std::string public_url = "https://hooks.example.com/webhooks/pipedrive";

inline pd::desired_state desired(std::vector<config::webhook_subscription> subs, bool prune = false) {
  pd::desired_state d;
  d.subscription_url = public_url;
  d.http_auth_user = test::test_user;
  d.http_auth_password = test::test_password;
  d.webhooks = std::move(subs);
  d.prune = prune;
  return d;
}

inline pd::webhook existing(std::int64_t id, std::string action, std::string object, std::string url = public_url,
                     std::string user = test::test_user) {
  pd::webhook w;
  w.id = id;
  w.user_id = fake_pipedrive::user_id;
  w.event_action = std::move(action);
  w.event_object = std::move(object);
  w.subscription_url = std::move(url);
  w.version = "2.0";
  w.http_auth_user = std::move(user);
  return w;
}

}  // namespace pipehook::test
