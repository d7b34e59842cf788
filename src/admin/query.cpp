#include "pipehook/admin/query.hpp"

#include "pipehook/core/codec.hpp"
#include "pipehook/core/time.hpp"
#include "pipehook/event/json.hpp"
#include "pipehook/pipedrive/vocabulary.hpp"

#include <cmath>
#include <boost/json/parse.hpp>

#include <algorithm>
#include <charconv>
#include <set>

namespace pipehook::admin {
namespace {

outcome<void> bad_param(std::string_view name, const std::string& why) {
  return make_failure(errc::invalid_argument, std::string(name) + ": " + why);
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::optional<std::int64_t> to_int(std::string_view s) {
  std::int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

boost::json::value json_or_null(const std::optional<std::string>& text) {
  if (!text) return nullptr;
  boost::system::error_code ec;
  auto v = boost::json::parse(*text, ec);
  if (ec) return boost::json::string(*text);
  return v;
}

}  // namespace

outcome<params> parse_query_string(std::string_view query) {
  params out;
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (pair.empty()) continue;
    const auto eq = pair.find('=');
    std::string parts[2];
    const std::string_view raw[2] = {pair.substr(0, eq), eq == std::string_view::npos ? "" : pair.substr(eq + 1)};
    for (int k = 0; k < 2; ++k) {
      for (std::size_t i = 0; i < raw[k].size(); ++i) {
        const char c = raw[k][i];
        if (c == '+') parts[k] += ' ';
        else if (c == '%') {
          if (i + 2 >= raw[k].size())
            return make_failure(errc::invalid_argument, "malformed query string: '%' must be followed by two hex digits");
          const int h = hex_value(raw[k][i + 1]), l = hex_value(raw[k][i + 2]);
          if (h < 0 || l < 0)
            return make_failure(errc::invalid_argument, "malformed query string: '%' must be followed by two hex digits");
          parts[k] += static_cast<char>(h * 16 + l);
          i += 2;
        } else {
          parts[k] += c;
        }
      }
    }
    out.emplace_back(std::move(parts[0]), std::move(parts[1]));
  }
  return out;
}

outcome<std::int64_t> parse_time(std::string_view name, std::string_view text) {
  if (auto t = parse_iso8601_us(text)) return *t;
  if (!text.empty() && text.size() <= 12 && std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return *to_int(text) * 1'000'000;
  if (auto ms = parse_duration_ms(text); ms && std::any_of(text.begin(), text.end(), [](char c) { return c > '9'; }))
    return now_us() - *ms * 1000;
  return make_failure(errc::invalid_argument, std::string(name) + ": \"" + std::string(text) +
                                                  "\" is not a time: use RFC 3339 (2024-05-01T10:00:00Z), a date "
                                                  "(2024-05-01), epoch seconds, or an age like 30m, 2h, 7d");
}

std::string encode_cursor(bool ascending, std::int64_t last_id) {
  return base64url_encode(std::string(ascending ? "a:" : "d:") + std::to_string(last_id));
}

outcome<std::int64_t> decode_cursor(std::string_view cursor, bool ascending) {
  const auto decoded = base64url_decode(cursor);
  const auto id = decoded && decoded->size() > 2 ? to_int(std::string_view(*decoded).substr(2)) : std::nullopt;
  if (!id || (*decoded)[1] != ':' || ((*decoded)[0] != 'a' && (*decoded)[0] != 'd'))
    return bad_param("cursor", "is not a cursor this API returned").error();
  if (((*decoded)[0] == 'a') != ascending)
    return bad_param("cursor", "belongs to the other order; keep `order` as it was for the first page").error();
  return *id;
}

outcome<event_page> read_page(store::reader& rd, store::event_filter f, bool with_body) {
  const auto limit = static_cast<std::size_t>(f.limit);
  f.limit += 1;
  auto rows = rd.list(f, with_body);
  if (!rows) return rows.error();
  event_page page{std::move(*rows), std::nullopt};
  if (page.events.size() > limit) {
    page.events.resize(limit);
    page.next_cursor = encode_cursor(f.ascending, page.events.back().id);
  }
  return page;
}

boost::json::object page_json(const event_page& p, const std::function<boost::json::object(const event::stored_event&)>& to_json) {
  boost::json::array items;
  items.reserve(p.events.size());
  for (const auto& e : p.events) items.push_back(to_json(e));
  boost::json::object o{{"events", std::move(items)}};
  o["next_cursor"] = p.next_cursor ? boost::json::value(*p.next_cursor) : boost::json::value(nullptr);
  return o;
}

outcome<bool> append_export_page(store::reader& rd, store::event_filter& f, std::string& out) {
  auto rows = rd.list(f, false);
  if (!rows) return rows.error();
  for (const auto& e : *rows) {
    event::append_json(out, e);
    out += '\n';
  }
  if (rows->size() < static_cast<std::size_t>(f.limit)) return false;
  (f.ascending ? f.after_id : f.before_id) = rows->back().id;
  return true;
}

outcome<list_query> parse_list_query(const params& p) {
  list_query out;
  store::event_filter& f = out.filter;
  std::string cursor, order = "desc";
  std::set<std::string_view> seen;
  for (const auto& [name, value] : p) {
    if (!seen.insert(name).second) return bad_param(name, "given more than once").error();
    std::string* text = nullptr;
    if (name == "entity") text = &f.entity;
    else if (name == "action") text = &f.action;
    else if (name == "entity_id") text = &f.entity_id;
    else if (name == "company_id") text = &f.company_id;
    else if (name == "user_id") text = &f.user_id;
    else if (name == "webhook_id") text = &f.webhook_id;
    else if (name == "change_source") text = &f.change_source;
    else if (name == "q") text = &f.q;
    else if (name == "cursor") text = &cursor;
    else if (name == "order") text = &order;
    if (text) {
      if (value.empty()) return bad_param(name, "must not be empty").error();
      *text = value;
      continue;
    }
    if (name == "since" || name == "until") {
      auto t = parse_time(name, value);
      if (!t) return t.error();
      (name == "since" ? f.since_us : f.until_us) = *t;
    } else if (name == "limit") {
      auto n = to_int(value);
      if (!n || *n < 1 || *n > 1000) return bad_param(name, "must be a number from 1 to 1000 (got \"" + value + "\")").error();
      f.limit = static_cast<int>(*n);
    } else if (name == "format") {
      if (value != "json" && value != "ndjson") return bad_param(name, "must be json or ndjson (got \"" + value + "\")").error();
      out.ndjson = value == "ndjson";
    } else {
      return bad_param(name, "unknown parameter (filters: entity, action, entity_id, company_id, user_id, webhook_id, since, "
                             "until, change_source, q; paging: limit, cursor, order; format)")
          .error();
    }
  }
  if (!f.action.empty() && f.action != "create" && f.action != "change" && f.action != "delete")
    return bad_param("action", "must be create, change or delete (got \"" + f.action + "\")").error();
  if (order != "desc" && order != "asc") return bad_param("order", "must be desc or asc (got \"" + order + "\")").error();
  f.ascending = order == "asc";
  if (f.since_us && f.until_us && *f.since_us > *f.until_us) return bad_param("since", "is after until").error();
  if (!cursor.empty()) {
    auto id = decode_cursor(cursor, f.ascending);
    if (!id) return id.error();
    (f.ascending ? f.after_id : f.before_id) = *id;
  }
  return out;
}

bool custom_field_key(std::string_view key) {
  return key.size() == 40 && std::all_of(key.begin(), key.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

std::optional<std::string> option_labels(const std::optional<std::string>& value_json, const std::map<std::string, std::string>& options) {
  if (!value_json) return std::nullopt;
  boost::system::error_code ec;
  const boost::json::value v = boost::json::parse(*value_json, ec);
  if (ec) return std::nullopt;
  std::vector<std::string> ids;
  auto add_scalar = [&](const boost::json::value& x) {
    if (x.is_int64()) ids.push_back(std::to_string(x.as_int64()));
    else if (x.is_uint64()) ids.push_back(std::to_string(x.as_uint64()));
    else if (x.is_string()) {
      // v1 sends a set as "12,13"
      std::string_view s = x.as_string();
      while (!s.empty()) {
        const auto comma = s.find(',');
        std::string_view part = s.substr(0, comma);
        while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
        while (!part.empty() && part.back() == ' ') part.remove_suffix(1);
        if (!part.empty()) ids.emplace_back(part);
        if (comma == std::string_view::npos) break;
        s.remove_prefix(comma + 1);
      }
    }
  };
  auto add = [&](const boost::json::value& x) {
    if (const auto* o = x.if_object()) {
      if (const auto* id = o->if_contains("id")) add_scalar(*id);
      else if (const auto* value = o->if_contains("value")) add_scalar(*value);
    } else {
      add_scalar(x);
    }
  };
  if (const auto* o = v.if_object(); o && o->contains("values") && o->at("values").is_array()) {
    for (const auto& x : o->at("values").as_array()) add(x);  // v2 set: {"type": "set", "values": [{"id": 1}, ...]}
  } else if (const auto* a = v.if_array()) {
    for (const auto& x : *a) add(x);
  } else {
    add(v);
  }
  if (ids.empty()) return std::nullopt;
  std::string out;
  for (const auto& id : ids) {
    const auto it = options.find(id);
    out += (out.empty() ? "" : ", ") + (it == options.end() ? id : it->second);
  }
  return out;
}

boost::json::array changes_json(const std::vector<event::field_change>& changes, const store::field_map* fields,
                                std::vector<std::string>* unknown) {
  constexpr std::string_view custom = "custom_fields.";
  boost::json::array out;
  for (const auto& c : changes) {
    boost::json::object o;
    o["field"] = c.field;
    o["kind"] = !c.before ? "added" : !c.after ? "removed" : "changed";
    o["before"] = json_or_null(c.before);
    o["after"] = json_or_null(c.after);
    if (fields) {
      std::string_view key = c.field;
      if (key.substr(0, custom.size()) == custom) key.remove_prefix(custom.size());
      if (const auto it = fields->find(key); it != fields->end()) {
        o["label"] = it->second.name;
        if (!it->second.options.empty()) {
          const auto before = option_labels(c.before, it->second.options), after = option_labels(c.after, it->second.options);
          o["before_label"] = before ? boost::json::value(*before) : nullptr;
          o["after_label"] = after ? boost::json::value(*after) : nullptr;
        }
      } else if (unknown && custom_field_key(key)) {
        unknown->emplace_back(key);
      }
    }
    out.push_back(std::move(o));
  }
  return out;
}

boost::json::object timeline_entry_json(const event::stored_event& e, const store::field_map* fields, std::vector<std::string>* unknown) {
  boost::json::object o = event::to_json(e);
  o["changes"] = changes_json(event::diff_body(e.ev.body, e.ev.version), fields, unknown);
  return o;
}

boost::json::object quarantine_json(const store::quarantine_row& q) {
  boost::json::object o;
  o["id"] = q.id;
  o["received_at"] = format_rfc3339_us(q.received_at_us);
  o["reason"] = q.reason;
  o["content_type"] = event::text_or_null(q.content_type);
  o["remote"] = event::text_or_null(q.remote);
  if (!q.body.empty()) o["body"] = q.body;
  return o;
}

boost::json::object handler_json(const store::handler_counts& h, const store::handler_state& st) {
  boost::json::object o;
  o["handler"] = h.handler;
  o["state"] = st.state_text();
  o["paused_since"] = st.paused ? boost::json::value(format_rfc3339_us(st.since_us)) : nullptr;
  o["next_probe_at"] = st.paused && !st.manual ? boost::json::value(format_rfc3339_us(st.next_probe_us)) : nullptr;
  o["pause_ms"] = st.paused && !st.manual ? boost::json::value(st.pause_ms) : nullptr;  // doubles per failed probe
  o["pause_reason"] = st.paused ? boost::json::value(st.reason) : nullptr;
  o["state_changed_by"] = event::text_or_null(st.by);
  o["pending"] = h.pending;
  o["retrying"] = h.retrying;
  o["dead"] = h.dead;
  o["done"] = h.done;
  o["oldest_pending_at"] = h.oldest_pending_us ? boost::json::value(format_rfc3339_us(*h.oldest_pending_us)) : nullptr;
  o["last_error"] = event::text_or_null(h.last_error);
  o["last_error_at"] = h.last_error_at_us ? boost::json::value(format_rfc3339_us(h.last_error_at_us)) : nullptr;
  boost::json::object claims;  // replica id -> pending rows it holds under a live lease (PostgreSQL)
  for (const auto& [replica, n] : h.claims) claims[replica] = n;
  o["claims"] = std::move(claims);
  return o;
}

boost::json::object replica_json(const store::replica_info& r) {
  return {{"id", r.who.id},
          {"host", r.who.host},
          {"pid", r.who.pid},
          {"version", r.who.version},
          {"started_at", format_rfc3339_us(r.started_at_us)},
          {"last_heartbeat_at", format_rfc3339_us(r.heartbeat_at_us)},
          {"lease_ms", r.lease_ms},
          {"live", r.live}};
}

boost::json::object storage_json(const store::storage_stats& s) {
  auto rounded = [](std::optional<double> v) -> boost::json::value {
    if (!v) return nullptr;
    return std::round(*v * 1000.0) / 1000.0;
  };
  boost::json::object o;
  o["events"] = s.events;
  o["bytes_on_disk"] = s.bytes_on_disk;
  if (s.events_bytes > 0) o["events_table_bytes"] = s.events_bytes;
  o["bytes_per_event"] = s.events > 0 ? boost::json::value(s.bytes_on_disk / s.events) : nullptr;
  o["sampled_events"] = s.sampled;
  o["body_bytes_raw"] = s.sampled_raw_bytes;
  o["body_bytes_stored"] = s.sampled_stored_bytes;
  o["compression_ratio"] = rounded(s.compression_ratio());  // stored / raw
  // Everything on disk per event, against the average body as received.
  o["disk_per_raw_body"] = rounded(s.disk_per_raw_body());
  o["uncompressed_events"] = s.plain_events;
  return o;
}

boost::json::object stats_json(const store::event_stats& s, std::int64_t since_us, std::int64_t until_us) {
  boost::json::object o;
  o["since"] = format_rfc3339_us(since_us);
  o["until"] = format_rfc3339_us(until_us);
  o["events"] = s.events;
  o["duplicates"] = s.duplicates;
  o["quarantined"] = s.quarantined;
  boost::json::array by;
  for (const auto& r : s.by_entity_action)
    by.push_back({{"entity", r.entity}, {"action", r.action}, {"events", r.events}, {"duplicates", r.duplicates}});
  o["by_entity_action"] = std::move(by);
  boost::json::array hours;
  for (const auto& [h, n] : s.per_hour) hours.push_back({{"hour", format_rfc3339_us(h)}, {"events", n}});
  o["per_hour"] = std::move(hours);
  return o;
}

outcome<std::pair<std::int64_t, std::int64_t>> parse_window(const params& p) {
  std::int64_t until = now_us(), since = until - 24LL * 3600 * 1'000'000;
  bool since_given = false;
  for (const auto& [name, value] : p) {
    if (name != "since" && name != "until")
      return bad_param(name, "unknown parameter (the stats window: since, until)").error();
    auto t = parse_time(name, value);
    if (!t) return t.error();
    if (name == "since") since = *t, since_given = true;
    else until = *t;
  }
  if (!since_given && since > until) since = until - 24LL * 3600 * 1'000'000;
  if (since > until) return bad_param("since", "is after until").error();
  return std::pair{since, until};
}

boost::json::object backfill_json(const store::backfill_run& r) {
  auto time_or_null = [](std::int64_t us) { return us ? boost::json::value(format_rfc3339_us(us)) : boost::json::value(nullptr); };
  boost::json::array objects;
  for (const auto& o : r.objects) objects.emplace_back(o);
  boost::json::object o;
  o["id"] = r.id;
  o["reason"] = r.reason;
  o["detail"] = r.detail;
  o["state"] = r.state;
  o["dry_run"] = r.dry_run;
  o["since"] = format_rfc3339_us(r.since_us);
  o["until"] = format_rfc3339_us(r.until_us);
  o["objects"] = std::move(objects);
  boost::json::object position;
  position["object"] = r.object_index < r.objects.size() ? boost::json::value(r.objects[r.object_index]) : boost::json::value(nullptr);
  position["start"] = r.next_start;
  o["position"] = std::move(position);
  o["records_read"] = r.records_read;
  o["events_stored"] = r.events_stored;
  o["already_known"] = r.already_known;
  o["skipped"] = r.skipped;
  o["api_calls"] = r.api_calls;
  o["token_cost"] = r.token_cost;
  o["created_at"] = format_rfc3339_us(r.created_at_us);
  o["started_at"] = time_or_null(r.started_at_us);
  o["finished_at"] = time_or_null(r.finished_at_us);
  o["updated_at"] = format_rfc3339_us(r.updated_at_us);
  o["replica"] = event::text_or_null(r.replica);
  o["error"] = event::text_or_null(r.error);
  // What no backfill recovers: Pipedrive's /recents lists changed records only.
  o["not_recoverable"] = "deletions, and objects /recents does not list (lead, deal_product, project, ...)";
  return o;
}

outcome<store::backfill_run> parse_backfill_request(const params& p) {
  store::backfill_run run;
  run.reason = "manual";
  bool since_given = false;
  run.until_us = now_us();
  for (const auto& [name, value] : p) {
    if (name == "since" || name == "until") {
      auto t = parse_time(name, value);
      if (!t) return t.error();
      (name == "since" ? run.since_us : run.until_us) = *t;
      since_given |= name == "since";
    } else if (name == "objects") {
      for (const auto& o : store::split_objects(value)) {
        if (!pipedrive::recoverable_object(o))
          return bad_param("objects", "\"" + o + "\" is not an object Pipedrive's /recents lists (" +
                                          pipedrive::recoverable_objects_text() + ")")
              .error();
        if (std::find(run.objects.begin(), run.objects.end(), o) == run.objects.end()) run.objects.push_back(o);
      }
    } else if (name == "dry_run") {
      if (value != "true" && value != "false" && value != "1" && value != "0")
        return bad_param("dry_run", "must be true or false").error();
      run.dry_run = value == "true" || value == "1";
    } else {
      return bad_param(name, "unknown parameter (a backfill: since, until, objects, dry_run)").error();
    }
  }
  if (!since_given) return bad_param("since", "is required: how far back to recover (2h, 2024-05-01T10:00:00Z, ...)").error();
  if (run.since_us >= run.until_us) return bad_param("since", "is not before until").error();
  if (run.until_us > now_us() + 60'000'000) return bad_param("until", "is in the future").error();
  run.detail = "asked for by hand";
  return run;
}

}  // namespace pipehook::admin
