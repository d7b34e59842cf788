#pragma once
// JSON rendering of stored events (Boost.JSON): the ndjson line of `events list` and the document
// of `events show`. Kept apart from event.hpp so that Boost.JSON is included only where needed.

#include "pipehook/event/event.hpp"

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

namespace pipehook::event {

// The record's page in Pipedrive's web app (https://<company>.pipedrive.com/deal/42, person,
// organization, product, lead, user, pipeline), from meta.host when it is a *.pipedrive.com host;
// "" when unknown or the entity has no page of its own. The list JSON carries it as `url`.
std::string record_url(const event& e);

// A string, or null when it is empty (absent optional fields).
boost::json::value text_or_null(const std::string& s);

// The list fields: id, event_key, version, entity, action, source_action, entity_id, company_id,
// user_id, webhook_id, occurred_at, received_at (RFC 3339 UTC), attempt, change_source, is_bulk,
// correlation_id, the other meta fields, and `url` (record_url); absent values are null.
boost::json::object to_json(const stored_event& e);

// Appends serialize(to_json(e)) to `out` without building the object (NDJSON exports: the same
// bytes, several times faster).
void append_json(std::string& out, const stored_event& e);

// to_json plus `deliveries`, `last_attempt`, `last_received_at` and `body` (the payload parsed as a
// JSON value; the raw text as a string if it somehow does not parse).
boost::json::object to_json_detail(const stored_event& e);

// What handlers forward as the "envelope" body: to_json plus the object's state, `data` and
// `previous` (v2 `data`/`previous`, v1 `current`/`previous`; null when the payload has none).
boost::json::object to_json_envelope(const stored_event& e);

}  // namespace pipehook::event
