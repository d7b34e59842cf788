// The registrar's planner: given what Pipedrive lists and what the config asks for, what to create,
// keep and delete (pure; no sockets).
#include "registrar_support.hpp"

#include <gtest/gtest.h>

namespace pipehook {
namespace {

namespace pd = pipedrive;
using test::desired;
using test::existing;
using test::fake_pipedrive;
using test::public_url;

TEST(registrar_plan, from_nothing_creates_every_subscription) {
  auto p = pd::make_plan(desired({{"*", "deal"}, {"change", "person"}}), {}, fake_pipedrive::user_id);
  ASSERT_EQ(p.create.size(), 2u);
  EXPECT_TRUE(p.keep.empty());
  EXPECT_TRUE(p.remove.empty());
  EXPECT_FALSE(p.refusal);
}

TEST(registrar_plan, keeps_matching_webhooks_including_v1_action_names) {
  std::vector<pd::webhook> have{existing(5, "updated", "deal"), existing(6, "create", "person", "https://other/x")};
  auto p = pd::make_plan(desired({{"change", "deal"}, {"create", "person"}}), have, fake_pipedrive::user_id);
  ASSERT_EQ(p.keep.size(), 1u);
  EXPECT_EQ(p.keep[0].id, 5);
  ASSERT_EQ(p.create.size(), 1u);  // #6 points elsewhere: not ours, not a match
  EXPECT_EQ(p.create[0].event_object, "person");
}

TEST(registrar_plan, only_prune_deletes_and_only_at_our_url) {
  std::vector<pd::webhook> have{existing(1, "change", "deal"), existing(2, "delete", "deal"),
                                existing(3, "delete", "deal", "https://someone-else/hook")};
  auto warned = pd::make_plan(desired({{"change", "deal"}}), have, fake_pipedrive::user_id);
  EXPECT_TRUE(warned.remove.empty());
  ASSERT_FALSE(warned.warnings.empty());
  EXPECT_NE(warned.warnings[0].find("#2"), std::string::npos);
  auto pruned = pd::make_plan(desired({{"change", "deal"}}, true), have, fake_pipedrive::user_id);
  ASSERT_EQ(pruned.remove.size(), 1u);
  EXPECT_EQ(pruned.remove[0].id, 2);
}

TEST(registrar_plan, a_webhook_with_other_credentials_or_version_is_not_a_match) {
  auto stale = existing(1, "change", "deal", public_url, "old-user");
  auto v1 = existing(2, "create", "deal");
  v1.version = "1.0";
  auto p = pd::make_plan(desired({{"change", "deal"}, {"create", "deal"}}, true), {stale, v1}, fake_pipedrive::user_id);
  EXPECT_EQ(p.create.size(), 2u);
  ASSERT_EQ(p.remove.size(), 2u);
  EXPECT_NE(p.remove_why[0].find("old-user"), std::string::npos);
}

TEST(registrar_plan, a_changed_password_is_reported_but_not_replaced) {
  auto listed = existing(1, "change", "deal");
  listed.http_auth_password = "old-password";
  auto p = pd::make_plan(desired({{"change", "deal"}}, true), {listed}, fake_pipedrive::user_id);
  EXPECT_EQ(p.keep.size(), 1u);
  EXPECT_FALSE(p.changes());
  ASSERT_EQ(p.warnings.size(), 1u);
  EXPECT_NE(p.warnings[0].find("another Basic-auth password"), std::string::npos);
  EXPECT_EQ(p.warnings[0].find("old-password"), std::string::npos);
  listed.http_auth_password = test::test_password;
  EXPECT_TRUE(pd::make_plan(desired({{"change", "deal"}}), {listed}, fake_pipedrive::user_id).warnings.empty());
}

TEST(registrar_plan, duplicates_at_our_url_are_reported) {
  auto p = pd::make_plan(desired({{"change", "deal"}}), {existing(1, "change", "deal"), existing(2, "change", "deal")},
                         fake_pipedrive::user_id);
  ASSERT_EQ(p.keep.size(), 1u);
  ASSERT_EQ(p.warnings.size(), 1u);
  EXPECT_NE(p.warnings[0].find("duplicates #1"), std::string::npos);
}

TEST(registrar_plan, overlapping_subscriptions_are_warned_about) {
  auto p = pd::make_plan(desired({{"*", "deal"}, {"change", "deal"}, {"create", "person"}}), {}, fake_pipedrive::user_id);
  ASSERT_EQ(p.warnings.size(), 1u);
  EXPECT_NE(p.warnings[0].find("*.deal and change.deal overlap"), std::string::npos);
  EXPECT_TRUE(pd::covers({"*", "*"}, {"delete", "lead"}));
  EXPECT_FALSE(pd::covers({"change", "*"}, {"delete", "deal"}));
}

TEST(registrar_plan, refuses_to_pass_forty_webhooks_per_user) {
  std::vector<pd::webhook> have;
  for (int i = 1; i <= 39; ++i) have.push_back(existing(i, "change", "deal", "https://x/" + std::to_string(i)));
  auto fits = pd::make_plan(desired({{"create", "deal"}}), have, fake_pipedrive::user_id);
  EXPECT_FALSE(fits.refusal);
  auto over = pd::make_plan(desired({{"create", "deal"}, {"delete", "deal"}}), have, fake_pipedrive::user_id);
  ASSERT_TRUE(over.refusal);
  EXPECT_NE(over.refusal->find("41 webhooks"), std::string::npos);
  // Webhooks of other users do not count.
  auto other = pd::make_plan(desired({{"create", "deal"}, {"delete", "deal"}}), have, 5);
  EXPECT_FALSE(other.refusal);
}

}  // namespace
}  // namespace pipehook
