#include "pipehook/pipedrive/registrar.hpp"

#include <algorithm>
#include <set>

namespace pipehook::pipedrive {

namespace asio = boost::asio;
using config::webhook_subscription;

namespace {

std::string label(const webhook_subscription& s) { return s.event_action + "." + s.event_object; }

webhook_subscription sub_of(const webhook& w) { return {normalized_action(w.event_action), w.event_object}; }

std::string webhook_label(const webhook& w) {
  return "#" + std::to_string(w.id) + " " + label(sub_of(w)) + " v" + normalized_version(w.version);
}

api_error refused(std::string message) {
  api_error e;
  e.kind = api_errc::plan_refused;
  e.message = std::move(message);
  return e;
}

}  // namespace

desired_state desired_from(const config::config& c) {
  desired_state d;
  d.subscription_url = c.registrar.subscription_url;
  d.version = c.registrar.version;
  d.name = c.registrar.name;
  d.user_id = c.registrar.user_id;
  if (c.auth.enabled) {
    d.http_auth_user = c.auth.user;
    d.http_auth_password = c.auth.password;
  }
  d.webhooks = c.registrar.webhooks;
  d.prune = c.registrar.prune;
  return d;
}

std::string normalized_action(std::string_view a) {
  if (a == "added") return "create";
  if (a == "updated") return "change";
  if (a == "deleted") return "delete";
  return std::string(a);
}

std::string normalized_version(std::string_view v) {
  if (v == "1") return "1.0";
  if (v == "2") return "2.0";
  return std::string(v);
}

bool covers(const webhook_subscription& a, const webhook_subscription& b) {
  return (a.event_action == "*" || a.event_action == b.event_action) &&
         (a.event_object == "*" || a.event_object == b.event_object);
}

plan make_plan(const desired_state& d, const std::vector<webhook>& existing, std::int64_t owner) {
  plan p;
  const std::string version = normalized_version(d.version);
  std::vector<bool> claimed(existing.size(), false);
  auto ours = [&](const webhook& w) { return w.subscription_url == d.subscription_url; };
  auto remove = [&](std::size_t i, std::string why) {
    claimed[i] = true;
    if (d.prune) {
      p.remove.push_back(existing[i]);
      p.remove_why.push_back(std::move(why));
    } else {
      p.warnings.push_back("webhook " + webhook_label(existing[i]) + " " + why + "; prune would delete it");
    }
  };

  for (const auto& sub : d.webhooks) {
    std::optional<std::size_t> match;
    for (std::size_t i = 0; i < existing.size(); ++i) {
      const webhook& w = existing[i];
      if (claimed[i] || !ours(w) || !(sub_of(w) == sub) || normalized_version(w.version) != version) continue;
      if (w.http_auth_user != d.http_auth_user) {
        remove(i, "sends Basic-auth user \"" + w.http_auth_user + "\" where pipehook expects \"" + d.http_auth_user +
                      "\", so its deliveries are refused");
        continue;
      }
      if (d.user_id != 0 && w.user_id != 0 && w.user_id != d.user_id) {
        remove(i, "is authorized as user " + std::to_string(w.user_id) + ", not registrar.user_id " +
                      std::to_string(d.user_id));
        continue;
      }
      if (match) {
        remove(i, "duplicates #" + std::to_string(existing[*match].id) + " (each event would arrive twice)");
        continue;
      }
      match = i;
      claimed[i] = true;
    }
    if (!match) {
      p.create.push_back(sub);
      continue;
    }
    p.keep.push_back(existing[*match]);
    // Never replaced for this alone: an API that masks passwords would make every run replace it.
    const std::string& listed_password = existing[*match].http_auth_password;
    if (!listed_password.empty() && listed_password != d.http_auth_password)
      p.warnings.push_back("webhook " + webhook_label(existing[*match]) +
                           " has another Basic-auth password than pipehook's, so its deliveries are refused; "
                           "delete it (pipehook webhooks delete " + std::to_string(existing[*match].id) +
                           ") and sync again");
    if (!existing[*match].is_active)
      p.warnings.push_back("webhook " + webhook_label(existing[*match]) +
                           " is inactive: Pipedrive pauses a webhook for 30 minutes after 10 failed first deliveries");
  }

  // Ours but not wanted (another event or version): prune deletes them, otherwise they stay.
  std::vector<std::pair<webhook_subscription, std::string>> delivering;  // what will deliver to us
  for (const auto& sub : d.webhooks) delivering.push_back({sub, label(sub)});
  for (std::size_t i = 0; i < existing.size(); ++i) {
    if (claimed[i] || !ours(existing[i])) continue;
    remove(i, "is not in registrar.webhooks (version " + version + ")");
    if (!d.prune) delivering.push_back({sub_of(existing[i]), "existing " + webhook_label(existing[i])});
  }
  for (std::size_t i = 0; i < delivering.size(); ++i)
    for (std::size_t j = i + 1; j < delivering.size(); ++j) {
      const auto& [a, al] = delivering[i];
      const auto& [b, bl] = delivering[j];
      if (covers(a, b) || covers(b, a))
        p.warnings.push_back(al + " and " + bl +
                             " overlap: an event matching both is delivered twice (pipehook stores it once and "
                             "counts the repeat)");
    }

  // Pipedrive allows 40 webhooks per user: check before any write.
  std::size_t owned = 0, removed_owned = 0;
  for (const auto& w : existing) owned += w.user_id == owner;
  for (const auto& w : p.remove) removed_owned += w.user_id == owner;
  const std::size_t after = owned - removed_owned + p.create.size();
  if (!p.create.empty() && after > webhooks_per_user_limit)
    p.refusal = "the plan would give user " + std::to_string(owner) + " " + std::to_string(after) +
                " webhooks (" + std::to_string(owned) + " now, " + std::to_string(p.create.size()) + " to create, " +
                std::to_string(removed_owned) + " to delete); Pipedrive allows " +
                std::to_string(webhooks_per_user_limit) +
                " per user. Delete unused webhooks, combine subscriptions with wildcards, or enable prune";
  return p;
}

std::vector<std::string> describe(const plan& p, const desired_state& d) {
  std::vector<std::string> lines;
  for (const auto& w : p.keep) lines.push_back("keep    " + webhook_label(w));
  for (std::size_t i = 0; i < p.remove.size(); ++i)
    lines.push_back("delete  " + webhook_label(p.remove[i]) + ": " + p.remove_why[i]);
  for (const auto& s : p.create)
    lines.push_back("create  " + label(s) + " v" + normalized_version(d.version) + " -> " + d.subscription_url);
  for (const auto& w : p.warnings) lines.push_back("warning: " + w);
  if (!p.changes()) lines.push_back("nothing to change");
  return lines;
}

asio::awaitable<api_result<sync_result>> reconcile(client& api, desired_state d, bool dry_run, report_fn report) {
  sync_result out;
  auto who = api.whoami();
  auto me = co_await std::move(who);
  if (!me) co_return me.error();
  out.me = *me;
  const std::int64_t owner = d.user_id != 0 ? d.user_id : me->id;

  for (int round = 0; round < 3; ++round) {
    auto listing = api.list_webhooks();
    auto existing = co_await std::move(listing);
    if (!existing) co_return existing.error();
    plan p = make_plan(d, *existing, owner);
    if (round == 0) {
      out.planned = p;
      for (const auto& line : describe(p, d)) report("plan: " + line);
    }
    if (p.refusal) co_return refused(*p.refusal);
    if (dry_run) {
      for (const auto& w : p.keep) out.managed.push_back(w.id);
      co_return out;
    }

    for (std::size_t i = 0; i < p.remove.size(); ++i) {
      const webhook& w = p.remove[i];
      auto del = api.delete_webhook(w.id);
      auto done = co_await std::move(del);
      if (!done && done.error().kind != api_errc::not_found) co_return done.error();
      report(done ? "deleted webhook " + webhook_label(w) + " (" + p.remove_why[i] + ")"
                  : "webhook " + webhook_label(w) + " was already gone");
      out.deleted.push_back(w.id);
    }

    bool unknown = false;
    for (const auto& sub : p.create) {
      new_webhook nw;
      nw.subscription_url = d.subscription_url;
      nw.event_action = sub.event_action;
      nw.event_object = sub.event_object;
      nw.name = d.name;
      nw.version = d.version;
      nw.user_id = d.user_id;
      nw.http_auth_user = d.http_auth_user;
      nw.http_auth_password = d.http_auth_password;
      auto add = api.create_webhook(std::move(nw));
      auto created = co_await std::move(add);
      if (!created) {
        if (!created.error().may_have_applied) {
          // Named by the subscription: with several, the operator must know which one Pipedrive refused.
          api_error e = created.error();
          e.message = "creating the webhook " + sub.event_action + "." + sub.event_object + " (v" + d.version + "): " + e.message;
          co_return e;
        }
        report(created.error().message + "; it may have been created, so the list is read again before retrying");
        unknown = true;
        break;
      }
      report("created webhook " + webhook_label(*created) + " -> " + created->subscription_url);
      out.created.push_back(*created);
    }
    if (unknown) continue;

    std::set<std::int64_t> managed;
    for (const auto& w : p.keep) managed.insert(w.id);
    for (const auto& w : out.created) managed.insert(w.id);
    out.managed.assign(managed.begin(), managed.end());
    co_return out;
  }
  api_error e;
  e.kind = api_errc::server_error;
  e.message = "creating webhooks kept failing with unknown results (3 rounds); try again later";
  co_return e;
}

}  // namespace pipehook::pipedrive
