// Table-driven tests of the payload parser: every shipped sample, v1 bodies written from
// Pipedrive's guide, and malformed or unusual bodies.
#include "pipehook/core/time.hpp"
#include "pipehook/event/json.hpp"
#include "pipehook/event/diff.hpp"
#include "pipehook/pipedrive/parse.hpp"
#include "pipehook/pipedrive/vocabulary.hpp"
#include "support.hpp"

#include <boost/json/serialize.hpp>
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

namespace pipehook {
namespace {

using pipedrive::parse_status;
using pipedrive::parse_webhook;

pipedrive::parse_result parse(const std::string& body) { return parse_webhook(body, 1'700'000'000'000'000); }

struct sample_case {
  std::string file, entity, action, source_action, entity_id, occurred_at;
  std::string event_id;
};

TEST(parse_samples, every_shipped_sample_is_an_event_with_the_right_fields) {
  const std::vector<sample_case> cases = {
      {"v2-change-deal.json", "deal", "change", "change", "8", "2022-11-24T15:11:55.724Z", "df47d877-b58c-4886-91cd-1aa83e1d7366"},
      {"v2-change-lead.json", "lead", "change", "change", "b1810230-6c0d-11ed-9826-a53d0eb706a5", "2022-11-24T15:37:20.391Z",
       "e235ba60-6c0d-11ed-a825-71d0cf99387b"},
      {"v2-change-organization.json", "organization", "change", "change", "1", "2022-11-24T15:21:23.152Z",
       "ea17c64f-ec7e-4e47-a321-5d84b7735fef"},
      {"v2-change-user-deactivated.json", "user", "change", "change", "15702024", "2022-11-24T15:46:42Z", "15702024"},
      {"v2-create-activity.json", "activity", "create", "create", "2", "2022-11-24T15:25:44.461Z",
       "bbba59e9-1d1f-4794-9472-72540d421386"},
      {"v2-create-deal_product.json", "deal_product", "create", "create", "1", "2026-05-22T09:40:54.430Z",
       "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"},
      {"v2-create-user.json", "user", "create", "create", "16943176", "2022-11-24T15:39:49Z", "16943176"},
      {"v2-delete-note.json", "note", "delete", "delete", "1", "2022-11-25T15:46:16.826Z", "bf4d011a-c103-4cca-af3a-259d0ebbfc28"},
  };
  const auto bodies = test::samples();
  ASSERT_EQ(bodies.size(), cases.size()) << "a sample file has no row in this table";
  std::set<std::string> keys;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.file);
    ASSERT_TRUE(bodies.count(c.file));
    const auto r = parse(bodies.at(c.file));
    ASSERT_EQ(r.status, parse_status::event) << r.reason;
    EXPECT_EQ(r.ev.version, 2);
    EXPECT_EQ(r.ev.entity, c.entity);
    EXPECT_EQ(r.ev.action, c.action);
    EXPECT_EQ(r.ev.source_action, c.source_action);
    EXPECT_EQ(r.ev.entity_id, c.entity_id);
    EXPECT_EQ(format_rfc3339_us(r.ev.occurred_at_us), c.occurred_at);
    EXPECT_EQ(r.ev.event_id, c.event_id);
    EXPECT_EQ(r.ev.attempt, 1);
    EXPECT_EQ(r.ev.change_source, "app");
    EXPECT_EQ(r.ev.type, "general");
    EXPECT_FALSE(r.ev.is_bulk);
    EXPECT_FALSE(r.ev.company_id.empty());
    EXPECT_FALSE(r.ev.webhook_id.empty());
    EXPECT_FALSE(r.ev.correlation_id.empty());
    EXPECT_EQ(r.ev.body, bodies.at(c.file)) << "the raw body must be kept as received";
    EXPECT_EQ(r.ev.event_key.size(), 32u);
    keys.insert(r.ev.event_key);
  }
  EXPECT_EQ(keys.size(), cases.size()) << "distinct events need distinct keys";
}

// The objects Pipedrive added for webhooks v2 in 2026: composed bodies (tests/data/samples-2026/
// SOURCES.md) parse, diff, and are objects the registrar knows.
TEST(parse_samples, the_2026_objects_parse_and_diff) {
  struct row {
    std::string file, entity, action, entity_id, occurred_at;
    std::vector<std::string> changed;  // the fields the diff names, for changes
  };
  const std::vector<row> rows = {
      {"v2-create-project.json", "project", "create", "8", "2023-09-12T11:12:18.250Z", {}},
      {"v2-change-task.json", "task", "change", "1", "2023-09-22T08:14:40.412Z", {"done", "marked_as_done_time", "update_time"}},
      {"v2-delete-board.json", "board", "delete", "1", "2023-09-15T10:00:00Z", {}},
      {"v2-change-phase.json", "phase", "change", "2", "2023-09-14T05:45:40.100Z", {"name", "update_time"}},
  };
  const std::string dir = std::string(PIPEHOOK_SAMPLES_DIR) + "/../samples-2026/";
  for (const auto& r : rows) {
    SCOPED_TRACE(r.file);
    const std::string body = test::read_file(dir + r.file);
    const auto p = parse(body);
    ASSERT_EQ(p.status, parse_status::event) << p.reason;
    EXPECT_EQ(p.ev.entity, r.entity);
    EXPECT_EQ(p.ev.action, r.action);
    EXPECT_EQ(p.ev.entity_id, r.entity_id);
    EXPECT_EQ(format_rfc3339_us(p.ev.occurred_at_us), r.occurred_at);
    EXPECT_EQ(p.ev.body, body);
    EXPECT_TRUE(pipedrive::known_event_object("2.0", r.entity));
    EXPECT_EQ(event::record_url(p.ev), "") << "no documented page for a " << r.entity;
    if (r.action != "change") continue;
    std::vector<std::string> changed;
    for (const auto& c : event::diff_body(p.ev.body, p.ev.version)) changed.push_back(c.field);
    std::sort(changed.begin(), changed.end());
    EXPECT_EQ(changed, r.changed);
  }
}

// v1 bodies as documented in guide-for-webhooks.md ("Webhook format").
std::string v1_body(const std::string& action, const std::string& object, const std::string& id, int retry,
                    const std::string& current, const std::string& previous, const std::string& ts_micro = "1523440213384700") {
  return R"({"v":1,"matches_filters":{"current":[],"previous":[]},"meta":{"v":1,"action":")" + action + R"(","object":")" +
         object + R"(","change_source":"app","id":)" + id +
         R"(,"company_id":123456,"user_id":654321,"host":"company.pipedrive.com","timestamp":1523440213,"timestamp_micro":)" +
         ts_micro +
         R"(,"permitted_user_ids":[654321],"trans_pending":false,"is_bulk_update":false,"pipedrive_service_name":false,"matches_filters":{"current":[],"previous":[]},"webhook_id":77},"retry":)" +
         std::to_string(retry) + R"(,"current":)" + current + R"(,"previous":)" + previous + R"(,"event":")" + action + "." +
         object + R"("})";
}

// Keys are stored: if their recipe changed, a retry arriving after an upgrade would be stored twice.
TEST(parse_samples, the_event_key_recipe_is_stable) {
  EXPECT_EQ(parse(test::samples().at("v2-change-deal.json")).ev.event_key, "d09158a515acc31f1e91f39b59418b27");
}

TEST(parse_v1, added_updated_deleted_merged_map_to_create_change_delete) {
  struct row {
    std::string action, expected, current, previous;
  };
  const std::vector<row> rows = {
      {"added", "create", R"({"id":5,"title":"New"})", "null"},
      {"updated", "change", R"({"id":5,"title":"B"})", R"({"id":5,"title":"A"})"},
      {"deleted", "delete", "null", R"({"id":5,"title":"B"})"},
      {"merged", "change", R"({"id":5,"title":"B"})", R"({"id":5,"title":"A"})"},
  };
  std::set<std::string> keys;
  for (const auto& r : rows) {
    SCOPED_TRACE(r.action);
    const auto p = parse(v1_body(r.action, "deal", "5", 0, r.current, r.previous));
    ASSERT_EQ(p.status, parse_status::event) << p.reason;
    EXPECT_EQ(p.ev.version, 1);
    EXPECT_EQ(p.ev.entity, "deal");
    EXPECT_EQ(p.ev.action, r.expected);
    EXPECT_EQ(p.ev.source_action, r.action);
    EXPECT_EQ(p.ev.entity_id, "5");
    EXPECT_EQ(p.ev.company_id, "123456");
    EXPECT_EQ(p.ev.user_id, "654321");
    EXPECT_EQ(p.ev.webhook_id, "77");
    EXPECT_EQ(p.ev.attempt, 1);
    EXPECT_EQ(format_rfc3339_us(p.ev.occurred_at_us), "2018-04-11T09:50:13.384700Z");
    EXPECT_EQ(p.ev.occurred_at_us, 1523440213384700);
    keys.insert(p.ev.event_key);
  }
  EXPECT_EQ(keys.size(), rows.size());
}

TEST(parse_v1, retry_counter_is_the_attempt_and_not_part_of_the_key) {
  const auto first = parse(v1_body("updated", "person", "9", 0, R"({"id":9})", R"({"id":9})"));
  const auto third = parse(v1_body("updated", "person", "9", 2, R"({"id":9})", R"({"id":9})"));
  ASSERT_EQ(first.status, parse_status::event);
  ASSERT_EQ(third.status, parse_status::event);
  EXPECT_EQ(first.ev.attempt, 1);
  EXPECT_EQ(third.ev.attempt, 3);
  EXPECT_EQ(first.ev.event_key, third.ev.event_key);
}

TEST(parse_v1, user_object_changes_in_arrays_are_accepted) {
  const auto p = parse(v1_body("updated", "user", "3", 0, R"([{"id":3,"name":"B"}])", R"([{"id":3,"name":"A"}])"));
  ASSERT_EQ(p.status, parse_status::event) << p.reason;
  EXPECT_EQ(p.ev.entity, "user");
}

TEST(parse_v1, without_timestamp_micro_the_content_tells_events_apart) {
  auto no_micro = [](const std::string& title) {
    std::string b = R"({"v":1,"meta":{"v":1,"action":"updated","object":"deal","id":5,"company_id":1,"timestamp":1523440213},"retry":0,"current":{"id":5,"title":")" +
                    title + R"("},"previous":{"id":5}})";
    return parse(b);
  };
  const auto a = no_micro("A"), a2 = no_micro("A"), b = no_micro("B");
  ASSERT_EQ(a.status, parse_status::event) << a.reason;
  EXPECT_EQ(a.ev.occurred_at_us, 1523440213000000);
  EXPECT_EQ(a.ev.event_key, a2.ev.event_key);
  EXPECT_NE(a.ev.event_key, b.ev.event_key);
}

TEST(parse_v2, a_retry_has_a_higher_attempt_and_the_same_key) {
  const auto first = parse(test::v2_body("e-1", "deal", "42", 1));
  const auto retry = parse(test::v2_body("e-1", "deal", "42", 2));
  ASSERT_EQ(first.status, parse_status::event);
  ASSERT_EQ(retry.status, parse_status::event);
  EXPECT_EQ(retry.ev.attempt, 2);
  EXPECT_EQ(first.ev.event_key, retry.ev.event_key);
  EXPECT_NE(first.ev.event_key, parse(test::v2_body("e-2", "deal", "42", 1)).ev.event_key);
}

TEST(parse_v2, user_events_share_meta_id_but_not_the_key) {
  const auto s = test::samples();
  const auto created = parse(s.at("v2-create-user.json"));
  std::string later = s.at("v2-create-user.json");
  later.replace(later.find("1669304389"), 10, "1669309999");
  const auto changed = parse(later);
  ASSERT_EQ(changed.status, parse_status::event);
  EXPECT_EQ(created.ev.event_id, changed.ev.event_id);
  EXPECT_NE(created.ev.event_key, changed.ev.event_key);
}

TEST(parse_v2, ids_as_numbers_or_strings_give_the_same_text_and_key) {
  std::string numeric = test::v2_body("e-9");
  for (const char* field : {R"("company_id":"777")", R"("entity_id":"42")", R"("user_id":"12")", R"("webhook_id":"99")"}) {
    std::string f(field);
    const auto colon = f.find(':');
    const std::string unquoted = f.substr(0, colon + 1) + f.substr(colon + 2, f.size() - colon - 3);
    numeric.replace(numeric.find(f), f.size(), unquoted);
  }
  const auto a = parse(test::v2_body("e-9")), b = parse(numeric);
  ASSERT_EQ(b.status, parse_status::event) << b.reason;
  EXPECT_EQ(b.ev.company_id, "777");
  EXPECT_EQ(b.ev.entity_id, "42");
  EXPECT_EQ(b.ev.user_id, "12");
  EXPECT_EQ(a.ev.event_key, b.ev.event_key);
}

TEST(parse_v2, timestamps_iso_with_offsets_epoch_seconds_and_millis) {
  struct row {
    std::string raw;  // as it appears after "timestamp":
    std::string expected;
  };
  const std::vector<row> rows = {
      {R"("2022-11-24T15:11:55.724Z")", "2022-11-24T15:11:55.724Z"},
      {R"("2022-11-24T15:11:55Z")", "2022-11-24T15:11:55Z"},
      {R"("2022-11-24T17:11:55+02:00")", "2022-11-24T15:11:55Z"},
      {R"("2022-11-24 15:11:55")", "2022-11-24T15:11:55Z"},
      {"1669304802", "2022-11-24T15:46:42Z"},
      {R"("1669304802")", "2022-11-24T15:46:42Z"},
      {"1669304802123", "2022-11-24T15:46:42.123Z"},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.raw);
    std::string body = test::v2_body("t");
    body.replace(body.find(R"("2024-05-01T10:00:00.123Z")"), 26, r.raw);
    const auto p = parse(body);
    ASSERT_EQ(p.status, parse_status::event) << p.reason;
    EXPECT_EQ(format_rfc3339_us(p.ev.occurred_at_us), r.expected);
  }
}

TEST(parse_v2, merge_fields_bulk_flag_and_unknown_fields) {
  std::string body = test::v2_body("m-1");
  body.replace(body.find(R"("is_bulk_edit":false)"), 20,
               R"("is_bulk_edit":true,"merged_to_id":"77","brand_new_field":{"x":[1,2,{"y":null}]})");
  body.insert(1, R"("something_new":[1,2,3],)");
  const auto p = parse(body);
  ASSERT_EQ(p.status, parse_status::event) << p.reason;
  EXPECT_TRUE(p.ev.is_bulk);
  EXPECT_EQ(p.ev.merged_to_id, "77");
}

TEST(parse_v2, new_entities_are_accepted_by_name) {
  for (const char* entity : {"deal_installment", "project", "task", "board", "phase", "activityType", "something_future"}) {
    const auto p = parse(test::v2_body(std::string("n-") + entity, entity));
    ASSERT_EQ(p.status, parse_status::event) << entity << ": " << p.reason;
    EXPECT_EQ(p.ev.entity, entity);
  }
}

TEST(parse_edge, huge_numbers_are_valid_json_and_ids_keep_their_digits) {
  std::string body = test::v2_body("h-1");
  body.replace(body.find(R"("entity_id":"42")"), 16, R"("entity_id":123456789012345678901234567890)");
  body.replace(body.find(R"({"id":42,)"), 9, R"({"id":1e999,"n":-0.0000001e-400,)");
  const auto p = parse(body);
  ASSERT_EQ(p.status, parse_status::event) << p.reason;
  EXPECT_EQ(p.ev.entity_id, "123456789012345678901234567890");
}

TEST(parse_edge, not_a_pipedrive_event_goes_to_quarantine_with_a_reason) {
  struct row {
    std::string body, reason;
  };
  const std::vector<row> rows = {
      {R"({"hello":"world"})", "no \"meta\""},
      {R"({"meta":"x"})", "\"meta\" is not an object"},
      {R"({"meta":{"version":"3.0","entity":"deal"}})", "unsupported webhook version \"3.0\""},
      {R"({"meta":{"entity":"deal"}})", "neither meta.version"},
      {R"({"meta":{"version":"2.0","entity":5,"action":"create","timestamp":1669304802}})", "meta.entity is missing or not a string"},
      {R"({"meta":{"version":"2.0","entity":"de al","action":"create","timestamp":1669304802}})", "not an entity name"},
      {R"({"meta":{"version":"2.0","entity":"deal","action":"explode","timestamp":1669304802}})", "unknown meta.action \"explode\""},
      {R"({"meta":{"version":"2.0","entity":"deal","action":["create"],"timestamp":1669304802}})", "meta.action is missing"},
      {R"({"meta":{"version":"2.0","entity":"deal","action":"create"}})", "meta.timestamp is missing or not a time"},
      {R"({"meta":{"version":"2.0","entity":"deal","action":"create","timestamp":"yesterday"}})", "meta.timestamp"},
      {R"({"meta":{"version":"2.0","entity":"deal","action":"create","timestamp":99999999999999999999}})", "meta.timestamp"},
      {R"({"v":1,"meta":{"object":"deal","action":"added","id":1}})", "timestamp_micro and meta.timestamp"},
      {R"([1,2,3])", "not an object"},
      {R"("just a string")", "not an object"},
      {"42", "not an object"},
      {"null", "not an object"},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.body);
    const auto p = parse(r.body);
    EXPECT_EQ(p.status, parse_status::not_an_event);
    EXPECT_NE(p.reason.find(r.reason), std::string::npos) << p.reason;
    EXPECT_EQ(p.ev.body, r.body);
  }
}

TEST(parse_edge, invalid_json_is_refused_with_what_is_wrong) {
  struct row {
    std::string body, reason;
  };
  const std::vector<row> rows = {
      {"", "empty"},
      {"   \n", "empty"},
      {R"({"a":1)", ""},
      {R"({"a":1}})", "unexpected content"},
      {R"({"a":1} {"b":2})", "unexpected content"},
      {"123 456", "unexpected content"},
      {R"({"a" 1})", ""},
      {R"({"a":1,})", ""},
      {R"({"a":tru})", "invalid literal"},
      {R"({"a":nul})", "invalid literal"},
      {R"({"a":01})", ""},
      {R"({"a":1.})", ""},
      {R"({"a":"\x"})", ""},
      {"{\"a\":\"\xff\xfe\"}", "UTF-8"},
      {"{\"a\":\"\xc3\x28\"}", "UTF-8"},
      {"{'a':1}", ""},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.body);
    const auto p = parse(r.body);
    EXPECT_EQ(p.status, parse_status::invalid_json) << p.reason;
    EXPECT_FALSE(p.reason.empty());
    EXPECT_NE(p.reason.find(r.reason), std::string::npos) << p.reason;
  }
}

TEST(parse_edge, deep_nesting_is_bounded) {
  auto nested = [](int depth) {
    std::string b = R"({"meta":{"version":"2.0","entity":"deal","action":"create","timestamp":1669304802,"id":"d"},"data":)";
    b += std::string(static_cast<std::size_t>(depth), '[') + std::string(static_cast<std::size_t>(depth), ']') + "}";
    return b;
  };
  EXPECT_EQ(parse(nested(100)).status, parse_status::event);
  const auto deep = parse(nested(pipedrive::max_json_depth + 10));
  EXPECT_EQ(deep.status, parse_status::invalid_json);
  EXPECT_NE(deep.reason.find("nested deeper"), std::string::npos) << deep.reason;
  // A megabyte of '[' must not exhaust the stack.
  EXPECT_EQ(parse(std::string(1 << 20, '[')).status, parse_status::invalid_json);
}

TEST(parse_edge, every_truncation_of_a_sample_is_invalid_and_never_crashes) {
  const std::string body = test::samples().at("v2-change-deal.json");
  const std::string trimmed = body.substr(0, body.find_last_not_of(" \n\r\t") + 1);
  for (std::size_t n = 0; n < trimmed.size(); ++n) {
    const auto p = parse(trimmed.substr(0, n));
    ASSERT_EQ(p.status, parse_status::invalid_json) << "prefix of " << n << " bytes";
  }
}

TEST(parse_edge, bodies_without_spare_capacity_are_padded_by_the_parser) {
  const std::string body = test::v2_body("pad");
  std::string exact = body;
  exact.shrink_to_fit();
  ASSERT_LT(exact.capacity(), exact.size() + pipedrive::parse_padding) << "the test needs a body without room after it";
  const auto p = parse_webhook(std::move(exact), 0);
  EXPECT_EQ(p.status, parse_status::event);
  // The parser made the room simdjson reads into, and kept the bytes as received.
  EXPECT_GE(p.ev.body.capacity(), p.ev.body.size() + pipedrive::parse_padding);
  EXPECT_EQ(p.ev.body, body);
}

TEST(time_text, rfc3339_round_trips_and_rejects_garbage) {
  for (const char* t : {"1970-01-01T00:00:00Z", "2022-11-24T15:11:55.724Z", "2024-02-29T23:59:59.000001Z"}) {
    const auto us = parse_iso8601_us(t);
    ASSERT_TRUE(us) << t;
    EXPECT_EQ(format_rfc3339_us(*us), t);
  }
  for (const char* t : {"", "2024-13-01", "2023-02-29", "2024-01-01T25:00:00Z", "2024-01-01Tx", "2024-01-01T10:00:00Q"})
    EXPECT_FALSE(parse_iso8601_us(t)) << t;
  EXPECT_EQ(parse_duration_ms("250ms"), 250);
  EXPECT_EQ(parse_duration_ms("2h"), 7'200'000);
  EXPECT_EQ(parse_duration_ms("10"), 10'000);
  EXPECT_FALSE(parse_duration_ms("10 parsecs"));
}

}  // namespace
}  // namespace pipehook

namespace pipehook {
namespace {

// `url`: the record's page in Pipedrive for each entity kind that has one, from meta.host; never a
// link to a host outside *.pipedrive.com, nor one built from an id that is not an id.
TEST(record_url, each_entity_kind_links_to_its_page_on_the_companys_host) {
  event::event e;
  e.host = "acme.pipedrive.com";
  e.entity_id = "42";
  for (auto [entity, path] : std::vector<std::pair<std::string, std::string>>{{"deal", "/deal/42"},
                                                                             {"person", "/person/42"},
                                                                             {"organization", "/organization/42"},
                                                                             {"product", "/product/42"},
                                                                             {"user", "/users/details/42"},
                                                                             {"pipeline", "/pipeline/42"}}) {
    e.entity = entity;
    EXPECT_EQ(event::record_url(e), "https://acme.pipedrive.com" + path) << entity;
  }
  e.entity = "lead";
  e.entity_id = "adf21080-0e10-11eb-879b-05d71fb426ec";
  EXPECT_EQ(event::record_url(e), "https://acme.pipedrive.com/leads/inbox/adf21080-0e10-11eb-879b-05d71fb426ec");
  e.entity_id = "42";
  for (const char* none : {"activity", "note", "stage", "deal_product", "activityType"}) {
    e.entity = none;
    EXPECT_EQ(event::record_url(e), "") << none << " has no page of its own";
  }
  e.entity = "deal";
  for (const char* host : {"", "pipedrive.com", "evil.example.com", "acme.pipedrive.com.evil.io", "a/b.pipedrive.com",
                           "ACME.pipedrive.com"}) {
    e.host = host;
    EXPECT_EQ(event::record_url(e), "") << host;
  }
  e.host = "acme.pipedrive.com";
  for (const char* id : {"", "42/../../x", "42?x=1", "javascript:1"}) {
    e.entity_id = id;
    EXPECT_EQ(event::record_url(e), "") << id;
  }
  // In the event JSON, both ways of writing it.
  event::stored_event se;
  se.ev = e;
  se.ev.entity_id = "7";
  std::string line;
  event::append_json(line, se);
  EXPECT_NE(line.find(R"("url":"https://acme.pipedrive.com/deal/7")"), std::string::npos) << line;
  EXPECT_EQ(line, boost::json::serialize(event::to_json(se)));
}

}  // namespace
}  // namespace pipehook
