#pragma once
// The operators' queries, shared by the admin API and the CLI so both take the same parameters,
// give the same errors and print the same JSON: parameters in, store queries, JSON out.

#include "pipehook/core/error.hpp"
#include "pipehook/event/diff.hpp"
#include "pipehook/store/outbox.hpp"
#include "pipehook/store/backfills.hpp"
#include "pipehook/store/handler_state.hpp"
#include "pipehook/store/reader.hpp"

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include <optional>

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pipehook::admin {

// name=value pairs: a URL query string (decoded) or the CLI's flags under the same names.
using params = std::vector<std::pair<std::string, std::string>>;

// "a=1&b=x%20y" -> {{"a","1"},{"b","x y"}}; '+' is a space. Malformed escapes are an error.
outcome<params> parse_query_string(std::string_view query);

// --since/--until and since/until: RFC 3339 or a date ("2024-05-01"), epoch seconds, or an age
// ("30m", "2h", "7d" ago). `name` is used in the error.
outcome<std::int64_t> parse_time(std::string_view name, std::string_view text);

struct list_query {
  store::event_filter filter;
  bool ndjson = false;  // format=ndjson: every matching event, streamed (limit ignored)
};

// The list filters: entity, action, entity_id, company_id, user_id, webhook_id, since, until,
// change_source, q, limit (1..1000, default 50), cursor, order (desc|asc), format (json|ndjson).
// Unknown parameters and bad values are errors that name the parameter.
outcome<list_query> parse_list_query(const params& p);

// The opaque cursor of the page after the last event of this one (keyset on the id, with the order),
// and back: the id, or a 400-class error naming `cursor` (not one of ours, or of the other order).
std::string encode_cursor(bool ascending, std::int64_t last_id);
outcome<std::int64_t> decode_cursor(std::string_view cursor, bool ascending);

struct event_page {
  std::vector<event::stored_event> events;
  std::optional<std::string> next_cursor;  // when another page follows
};
// One page as `f` asks (limit + 1 rows are read to know whether another follows).
outcome<event_page> read_page(store::reader& rd, store::event_filter f, bool with_body);
// {"events": [...], "next_cursor": "..." | null}, each event rendered by `to_json`.
boost::json::object page_json(const event_page& p, const std::function<boost::json::object(const event::stored_event&)>& to_json);

// An export, a page at a time: appends the next page of every event `f` matches as NDJSON to
// `out` and moves `f` past it (f.limit is the page size). False once that was the last page.
outcome<bool> append_export_page(store::reader& rd, store::event_filter& f, std::string& out);
inline constexpr int export_page_size = 1000;

// Field changes: [{"field", "kind": added|removed|changed, "before", "after"}]; with the object's
// field definitions also "label" (the field's name in Pipedrive) and, for enum and set fields,
// "before_label" / "after_label" (the options' labels). Custom-field keys that `fields` does not
// know are added to `unknown` (when given): the cache may be stale.
boost::json::array changes_json(const std::vector<event::field_change>& changes, const store::field_map* fields = nullptr,
                                std::vector<std::string>* unknown = nullptr);
// The labels of an enum or set value (an id, "12,13", {"id": 7}, {"values": [{"id": 1}]}, a list);
// nullopt when it holds no option id.
std::optional<std::string> option_labels(const std::optional<std::string>& value_json, const std::map<std::string, std::string>& options);
// A custom field's key: 40 hex digits.
bool custom_field_key(std::string_view key);
// event::to_json plus "changes" (the diff of its body, labelled from `fields` when given).
boost::json::object timeline_entry_json(const event::stored_event& e, const store::field_map* fields = nullptr,
                                        std::vector<std::string>* unknown = nullptr);

boost::json::object quarantine_json(const store::quarantine_row& q);
boost::json::object handler_json(const store::handler_counts& h, const store::handler_state& st = {});
// A row of /api/v1/replicas.
boost::json::object replica_json(const store::replica_info& r);
boost::json::object stats_json(const store::event_stats& s, std::int64_t since_us, std::int64_t until_us);
// The "storage" member of the stats: bytes on disk (per event), the bodies' compression ratio.
boost::json::object storage_json(const store::storage_stats& s);

// The stats window: since (default 24 h ago), until (default now).
outcome<std::pair<std::int64_t, std::int64_t>> parse_window(const params& p);

// A backfill run as the API, the CLI and the page show it.
boost::json::object backfill_json(const store::backfill_run& r);
// A manual backfill from parameters (the API's JSON body or query, the CLI's flags): since
// (required; the forms of parse_time), until (default now), objects ("deal,person"; default
// empty: the service's), dry_run ("true"/"false"). Errors name the parameter.
outcome<store::backfill_run> parse_backfill_request(const params& p);

}  // namespace pipehook::admin
