#pragma once
// The registrar: makes the webhooks in Pipedrive match the config. Reconcile = who am I, list the
// existing webhooks, plan, then delete and create. Planning is a pure function (make_plan) so the
// rules are tested without a network: matching webhooks are kept (never a duplicate), missing
// ones created, webhooks at our subscription_url that are no longer wanted deleted only with
// prune, overlaps warned about, and a plan that would pass Pipedrive's 40-webhooks-per-user limit
// refused before any write.

#include "pipehook/config/config.hpp"
#include "pipehook/pipedrive/client.hpp"

#include <boost/asio/awaitable.hpp>

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace pipehook::pipedrive {

constexpr std::size_t webhooks_per_user_limit = 40;

// What the config asks for.
struct desired_state {
  std::string subscription_url;
  std::string version = "2.0";
  std::string name = "pipehook";
  std::int64_t user_id = 0;         // 0: the token's user
  std::string http_auth_user;       // "" when Basic auth is disabled
  std::string http_auth_password;   // secret
  std::vector<config::webhook_subscription> webhooks;
  bool prune = false;
};

desired_state desired_from(const config::config& c);

struct plan {
  std::vector<config::webhook_subscription> create;
  std::vector<webhook> keep;    // already right
  std::vector<webhook> remove;  // with the reason in `why`
  std::vector<std::string> remove_why;
  std::vector<std::string> warnings;
  std::optional<std::string> refusal;  // set: the plan must not run
  bool changes() const { return !create.empty() || !remove.empty(); }
};

// Pipedrive's v1 names for actions ("added", "updated", "deleted") in their v2 form.
std::string normalized_action(std::string_view a);
// "2" -> "2.0"
std::string normalized_version(std::string_view v);
// Does subscription a receive every event b would?
bool covers(const config::webhook_subscription& a, const config::webhook_subscription& b);

// owner: the user the webhooks are created for (desired.user_id or the token's user).
plan make_plan(const desired_state& d, const std::vector<webhook>& existing, std::int64_t owner);

// The plan as lines for people ("create change.deal", "keep #12 change.deal", warnings).
std::vector<std::string> describe(const plan& p, const desired_state& d);

struct sync_result {
  plan planned;
  std::vector<webhook> created;
  std::vector<std::int64_t> deleted;
  std::vector<std::int64_t> managed;  // ids of the desired webhooks now in Pipedrive (kept + created)
  current_user me;
};

using report_fn = std::function<void(const std::string&)>;

// Reconciles. dry_run: reads only. The plan's lines ("plan: ...") and then each action are
// reported as they happen. A create whose result is
// unknown (a 5xx or a timeout after sending) is never blindly repeated: the list is read again
// and the plan remade (at most three rounds).
boost::asio::awaitable<api_result<sync_result>> reconcile(client& api, desired_state d, bool dry_run, report_fn report);

}  // namespace pipehook::pipedrive
