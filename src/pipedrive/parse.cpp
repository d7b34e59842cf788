#include "pipehook/pipedrive/parse.hpp"

#include "pipehook/core/codec.hpp"
#include "pipehook/core/time.hpp"
#include "json_validate.hpp"

#include <simdjson.h>

#include <charconv>
#include <optional>

namespace pipehook::pipedrive {

static_assert(parse_padding >= simdjson::SIMDJSON_PADDING, "parse_padding must cover simdjson's padding");

namespace {

namespace od = simdjson::ondemand;
using detail::rtrim;
using simdjson::error_code;

// ---------------------------------------------------------------------------------------------
// Extraction: one pass over the root object and one over `meta`, copying the scalars we use.

struct scalar {
  od::json_type type = od::json_type::null;
  std::string text;  // strings unescaped; numbers and literals as written
};

error_code read_scalar(od::value v, std::optional<scalar>& out) {
  scalar s;
  if (auto e = v.type().get(s.type)) return e;
  if (s.type == od::json_type::string) {
    std::string_view sv;
    if (auto e = v.get_string().get(sv)) return e;
    s.text.assign(sv);
  } else if (s.type != od::json_type::object && s.type != od::json_type::array) {
    s.text.assign(rtrim(v.raw_json_token()));
  }
  out = std::move(s);
  return simdjson::SUCCESS;
}

struct meta_fields {
  std::optional<scalar> version, v, action, object, entity, id, entity_id, company_id, user_id, webhook_id, timestamp,
      timestamp_micro, attempt, correlation_id, change_source, type, host, is_bulk_edit, is_bulk_update, merged_to_id,
      merged_from_id;

  std::optional<scalar>* slot(std::string_view key) {
    static constexpr std::pair<std::string_view, std::optional<scalar> meta_fields::*> table[] = {
        {"version", &meta_fields::version},
        {"v", &meta_fields::v},
        {"action", &meta_fields::action},
        {"object", &meta_fields::object},
        {"entity", &meta_fields::entity},
        {"id", &meta_fields::id},
        {"entity_id", &meta_fields::entity_id},
        {"company_id", &meta_fields::company_id},
        {"user_id", &meta_fields::user_id},
        {"webhook_id", &meta_fields::webhook_id},
        {"timestamp", &meta_fields::timestamp},
        {"timestamp_micro", &meta_fields::timestamp_micro},
        {"attempt", &meta_fields::attempt},
        {"correlation_id", &meta_fields::correlation_id},
        {"change_source", &meta_fields::change_source},
        {"type", &meta_fields::type},
        {"host", &meta_fields::host},
        {"is_bulk_edit", &meta_fields::is_bulk_edit},
        {"is_bulk_update", &meta_fields::is_bulk_update},
        {"merged_to_id", &meta_fields::merged_to_id},
        {"merged_from_id", &meta_fields::merged_from_id},
    };
    for (const auto& [name, member] : table)
      if (name == key) return &(this->*member);
    return nullptr;
  }
};

struct root_fields {
  bool has_meta = false;
  bool meta_is_object = false;
  meta_fields meta;
  std::optional<scalar> v, retry;
  std::string_view data_raw, previous_raw;  // `data` (v2) or `current` (v1), and `previous`, as written
};

std::string_view raw_of(od::value v) {
  od::json_type t;
  if (v.type().get(t)) return {};
  std::string_view raw;
  if (t == od::json_type::object) {
    od::object o;
    if (!v.get_object().get(o) && !o.raw_json().get(raw)) return raw;
    return {};
  }
  if (t == od::json_type::array) {
    od::array a;
    if (!v.get_array().get(a) && !a.raw_json().get(raw)) return raw;
    return {};
  }
  return rtrim(v.raw_json_token());
}

error_code extract(od::object root, root_fields& out) {
  for (auto f : root) {
    od::field field;
    if (auto e = std::move(f).get(field)) return e;
    std::string_view key;
    if (auto e = field.unescaped_key().get(key)) return e;
    od::value value = field.value();
    if (key == "meta" && !out.has_meta) {
      out.has_meta = true;
      od::object meta;
      if (value.get_object().get(meta)) continue;  // not an object: reported by the caller
      out.meta_is_object = true;
      for (auto mf : meta) {
        od::field m;
        if (auto e = std::move(mf).get(m)) return e;
        std::string_view mkey;
        if (auto e = m.unescaped_key().get(mkey)) return e;
        std::optional<scalar>* slot = out.meta.slot(mkey);
        if (slot && !*slot)
          if (auto e = read_scalar(m.value(), *slot)) return e;
      }
    } else if (key == "v" && !out.v) {
      if (auto e = read_scalar(value, out.v)) return e;
    } else if (key == "retry" && !out.retry) {
      if (auto e = read_scalar(value, out.retry)) return e;
    } else if ((key == "data" || key == "current") && out.data_raw.empty()) {
      out.data_raw = raw_of(value);
    } else if (key == "previous" && out.previous_raw.empty()) {
      out.previous_raw = raw_of(value);
    }
  }
  return simdjson::SUCCESS;
}

// ---------------------------------------------------------------------------------------------
// Field interpretation: ids as strings or numbers, timestamps in several forms, lenient booleans.

bool is_text_or_number(const std::optional<scalar>& s) {
  return s && (s->type == od::json_type::string || s->type == od::json_type::number);
}

// Ids and other identifiers: strings as sent, numbers as written (never through a double).
std::string id_text(const std::optional<scalar>& s) { return is_text_or_number(s) ? s->text : std::string(); }

std::optional<std::int64_t> integer(const std::optional<scalar>& s) {
  if (!is_text_or_number(s)) return std::nullopt;
  std::int64_t v = 0;
  const char* b = s->text.data();
  const char* e = b + s->text.size();
  auto [p, ec] = std::from_chars(b, e, v);
  if (ec != std::errc() || p != e) return std::nullopt;
  return v;
}

bool boolean(const std::optional<scalar>& s) {
  if (!s) return false;
  return s->text == "true" || s->text == "1";
}

enum class epoch_unit { guess, seconds, micros };

// Epoch numbers (or digit strings): with `guess`, 10-11 digits are seconds, 12-14 milliseconds,
// larger microseconds. ISO-8601 strings are accepted too.
std::optional<std::int64_t> timestamp_us(const std::optional<scalar>& s, epoch_unit unit) {
  if (!is_text_or_number(s)) return std::nullopt;
  if (auto v = integer(s)) {
    if (*v < 0) return std::nullopt;
    if (unit == epoch_unit::seconds || (unit == epoch_unit::guess && *v < 100'000'000'000LL)) {
      if (*v > 253'402'300'799LL) return std::nullopt;  // past 9999-12-31
      return *v * 1'000'000;
    }
    if (unit == epoch_unit::guess && *v < 100'000'000'000'000LL) return *v * 1000;
    if (*v > 253'402'300'799'999'999LL) return std::nullopt;
    return *v;
  }
  if (s->type == od::json_type::number) {  // fractional seconds, e.g. 1669304802.5
    double d = 0;
    auto [p, ec] = std::from_chars(s->text.data(), s->text.data() + s->text.size(), d);
    if (ec != std::errc() || d < 0 || d > 253'402'300'799.0) return std::nullopt;
    return static_cast<std::int64_t>(d * 1e6);
  }
  return parse_iso8601_us(s->text);
}

// Entity names Pipedrive may add later are accepted if they look like identifiers.
bool plausible_name(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.'))
      return false;
  return true;
}

// v1 and v2 action names -> create | change | delete; empty when unknown.
std::string_view normalize_action(std::string_view a) {
  if (a == "create" || a == "added") return "create";
  if (a == "change" || a == "updated" || a == "merged") return "change";
  if (a == "delete" || a == "deleted") return "delete";
  return {};
}

parse_result not_an_event(parse_result r, std::string why) {
  r.status = parse_status::not_an_event;
  r.reason = std::move(why);
  return r;
}

bool is_version(const std::optional<scalar>& s, char major) {
  return is_text_or_number(s) && !s->text.empty() && s->text[0] == major &&
         (s->text.size() == 1 || s->text[1] == '.');
}

parse_result normalize(parse_result r, root_fields& f) {
  if (!f.has_meta) return not_an_event(std::move(r), "no \"meta\" object: not a Pipedrive webhook");
  if (!f.meta_is_object) return not_an_event(std::move(r), "\"meta\" is not an object");
  meta_fields& m = f.meta;
  event::event& ev = r.ev;

  if (is_version(m.version, '2')) {
    ev.version = 2;
  } else if (is_version(f.v, '1') || is_version(m.v, '1') || (!m.version && m.object)) {
    ev.version = 1;
  } else if (m.version && is_text_or_number(m.version)) {
    return not_an_event(std::move(r), "unsupported webhook version \"" + m.version->text + "\"");
  } else {
    return not_an_event(std::move(r), "neither meta.version 2.x (webhooks v2) nor v 1 (webhooks v1)");
  }

  const char* entity_key = ev.version == 2 ? "meta.entity" : "meta.object";
  const std::optional<scalar>& entity = ev.version == 2 ? m.entity : m.object;
  if (!entity || entity->type != od::json_type::string)
    return not_an_event(std::move(r), std::string(entity_key) + " is missing or not a string");
  if (!plausible_name(entity->text))
    return not_an_event(std::move(r), std::string(entity_key) + " is not an entity name");
  if (!m.action || m.action->type != od::json_type::string)
    return not_an_event(std::move(r), "meta.action is missing or not a string");
  const std::string_view action = normalize_action(m.action->text);
  if (action.empty()) return not_an_event(std::move(r), "unknown meta.action \"" + m.action->text.substr(0, 64) + "\"");

  std::optional<std::int64_t> occurred;
  bool micro_precise = false;
  if (ev.version == 2) {
    occurred = timestamp_us(m.timestamp, epoch_unit::guess);
    if (!occurred) return not_an_event(std::move(r), "meta.timestamp is missing or not a time");
  } else {
    occurred = timestamp_us(m.timestamp_micro, epoch_unit::micros);
    micro_precise = occurred.has_value();
    if (!occurred) occurred = timestamp_us(m.timestamp, epoch_unit::guess);
    if (!occurred) return not_an_event(std::move(r), "meta.timestamp_micro and meta.timestamp are missing or not times");
  }

  ev.entity = entity->text;
  ev.action.assign(action);
  ev.source_action = m.action->text;
  ev.entity_id = id_text(ev.version == 2 ? m.entity_id : m.id);
  ev.company_id = id_text(m.company_id);
  ev.user_id = id_text(m.user_id);
  ev.webhook_id = id_text(m.webhook_id);
  ev.event_id = ev.version == 2 ? id_text(m.id) : std::string();
  ev.correlation_id = id_text(m.correlation_id);
  ev.change_source = id_text(m.change_source);
  ev.type = id_text(m.type);
  ev.host = id_text(m.host);
  ev.merged_to_id = id_text(m.merged_to_id);
  ev.merged_from_id = id_text(m.merged_from_id);
  ev.occurred_at_us = *occurred;
  ev.is_bulk = boolean(ev.version == 2 ? m.is_bulk_edit : m.is_bulk_update);
  if (ev.version == 2) {
    const auto attempt = integer(m.attempt);
    ev.attempt = attempt && *attempt >= 1 && *attempt < 1000 ? static_cast<int>(*attempt) : 1;
  } else {
    const auto retry = integer(f.retry);
    ev.attempt = retry && *retry >= 0 && *retry < 1000 ? static_cast<int>(*retry) + 1 : 1;
  }

  // The event key: what stays the same across Pipedrive's retries of one event (never the attempt
  // or the webhook id, so overlapping subscriptions store a change once). When the payload lacks a
  // precise identity (no v2 meta.id, no v1 timestamp_micro), the content decides.
  std::string canonical = ev.version == 2 ? "2\x1f" : "1\x1f";
  canonical.reserve(256);
  for (const std::string* part : {&ev.company_id, &ev.event_id, &ev.entity, &ev.source_action, &ev.entity_id}) {
    canonical += *part;
    canonical += '\x1f';
  }
  canonical += std::to_string(ev.occurred_at_us);
  const bool precise = ev.version == 2 ? !ev.event_id.empty() : micro_precise;
  if (!precise) {
    canonical += '\x1f';
    canonical += f.data_raw;
    canonical += '\x1f';
    canonical += f.previous_raw;
  }
  ev.event_key = to_hex(sha256(canonical).data(), 16);  // 128 bits of SHA-256
  r.status = parse_status::event;
  return r;
}

}  // namespace

parse_result parse_webhook(std::string body, std::int64_t received_at_us) {
  thread_local od::parser parser;
  parse_result r;
  if (body.capacity() < body.size() + parse_padding) body.reserve(body.size() + parse_padding);
  r.ev.body = std::move(body);
  r.ev.received_at_us = received_at_us;
  const std::string& b = r.ev.body;
  const simdjson::padded_string_view input(b.data(), b.size(), b.capacity());

  od::document doc;
  error_code err = parser.iterate(input).get(doc);
  if (!err) err = detail::validate_json(doc, b);
  if (err) {
    r.status = parse_status::invalid_json;
    r.reason = detail::describe_json_error(err);
    return r;
  }

  doc.rewind();
  od::object root;
  if (doc.get_object().get(root)) return not_an_event(std::move(r), "the JSON value is not an object");
  root_fields fields;
  if (auto e = extract(root, fields)) {  // cannot fail on validated input; kept as a safety net
    r.status = parse_status::invalid_json;
    r.reason = detail::describe_json_error(e);
    return r;
  }
  return normalize(std::move(r), fields);
}

}  // namespace pipehook::pipedrive
