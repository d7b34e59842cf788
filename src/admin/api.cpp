#include "pipehook/admin/api.hpp"

#include "pipehook/core/codec.hpp"

#include "pipehook/admin/query.hpp"
#include "pipehook/core/cidr.hpp"
#include "pipehook/core/time.hpp"
#include "pipehook/event/json.hpp"
#include "pipehook/pipedrive/parse.hpp"
#include "pipehook/store/async.hpp"

#include <boost/asio/use_awaitable.hpp>
#include "pipehook/store/handler_state.hpp"
#include "pipehook/store/outbox.hpp"
#include "pipehook/store/reader.hpp"
#include "pipehook/store/reader_pool.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/thread_pool.hpp>

#include <mutex>
#include "web_assets.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <openssl/crypto.h>

#include <charconv>

namespace pipehook::admin {
namespace {

namespace asio = boost::asio;
using http::json_error;

http::response json_ok(const boost::json::value& v) { return http::json_response(200, v, "ok"); }

// A store or parameter failure as an HTTP error: 400 names the parameter, 404, else 500.
http::response failure_response(const failure& f) {
  if (f.code == errc::invalid_argument) return json_error(400, "bad_request", f.message);
  if (f.code == errc::not_found) return json_error(404, "not_found", f.message);
  return json_error(500, "store_error", f.message);
}

std::optional<std::int64_t> to_id(std::string_view s) {
  std::int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v < 1) return std::nullopt;
  return v;
}

// The path segments after `prefix` ("/api/v1/events/12" -> {"12"}).
std::vector<std::string_view> segments_after(std::string_view path, std::string_view prefix) {
  std::vector<std::string_view> out;
  std::string_view rest = path.substr(prefix.size());
  while (!rest.empty()) {
    const auto slash = rest.find('/');
    out.push_back(rest.substr(0, slash));
    if (slash == std::string_view::npos) break;
    rest = rest.substr(slash + 1);
  }
  return out;
}

// "Host: name:port" -> "name" ("[::1]:8081" -> "::1"), lower-cased.
std::string host_name(std::string_view authority) {
  if (authority.starts_with('[')) {
    const auto close = authority.find(']');
    return ascii_lower(authority.substr(1, close == std::string_view::npos ? std::string_view::npos : close - 1));
  }
  const auto colon = authority.rfind(':');
  return ascii_lower(colon != std::string_view::npos && authority.find(':') == colon ? authority.substr(0, colon) : authority);
}

bool unsafe_method(std::string_view m) { return m != "GET" && m != "HEAD" && m != "OPTIONS"; }

outcome<params> query_of(const http::request_head& head) {
  const auto q = head.target.find('?');
  return parse_query_string(q == std::string_view::npos ? std::string_view() : head.target.substr(q + 1));
}

}  // namespace

struct api::impl {
  api_options opt;
  store::event_log& log;
  // Queries run on `workers`, each with a reader of its own from `readers` (store.pool_size of
  // each): a slow query (a lock held on the events table, a big stats range) does not hold up
  // the others, and the admin listener's thread only parses and writes.
  std::unique_ptr<store::reader_pool> readers;
  std::mutex outbox_mu;
  std::unique_ptr<store::outbox> outbox;   // handler counts (reads only), under outbox_mu
  std::unique_ptr<store::meta_store> meta;  // the handlers' breaker states, under outbox_mu
  std::unique_ptr<asio::thread_pool> workers;  // last: joined first, before what its queries use

  std::optional<asio::ip::address> listen_address;  // nullopt or unspecified: a wildcard listener

  impl(api_options o, store::event_log& l) : opt(std::move(o)), log(l) {
    for (auto& h : opt.allowed_hosts) h = ascii_lower(h);
  }

  // DNS rebinding: a page on another site whose name the attacker points at 127.0.0.1 reaches this
  // listener with its own name in Host. A name not known here is refused (an IP literal cannot be
  // rebound, so on a wildcard listener any is fine).
  bool host_allowed(std::string_view authority) const {
    const std::string name = host_name(authority);
    if (name.empty()) return true;  // HTTP/1.0 without Host: no browser sends that
    if (name == "localhost" || name.ends_with(".localhost")) return true;  // always loopback (RFC 6761)
    if (const auto ip = parse_address(name))
      return !listen_address || listen_address->is_unspecified() || *ip == *listen_address;
    for (const auto& allowed : opt.allowed_hosts)
      if (name == allowed || ascii_lower(authority) == allowed || (allowed.starts_with('.') && name.ends_with(allowed))) return true;
    return false;
  }

  std::optional<http::response> admit(const http::request_head& head) const {
    // With a token every data route needs it, and a rebinding page has none: the Host check guards
    // the tokenless (loopback) listener, and any listener that lists allowed_hosts.
    const bool check_host = opt.token.empty() || !opt.allowed_hosts.empty();
    if (check_host && !host_allowed(head.host))
      return json_error(421, "misdirected_request",
                        "Host \"" + std::string(head.host.substr(0, 100)) +
                            "\" is not this admin listener's address or localhost; list it in admin.allowed_hosts to use it");
    if (!unsafe_method(head.method)) return std::nullopt;
    // A cross-site form or script: browsers say where it came from. Tools (curl, the CLI) send neither header.
    const std::string site = ascii_lower(head.sec_fetch_site);
    if (!site.empty() && site != "same-origin" && site != "none")
      return json_error(403, "cross_site_request", "Sec-Fetch-Site: " + site + ": state-changing requests must come from this page");
    if (!head.origin.empty()) {
      const auto scheme_end = head.origin.find("://");
      const std::string_view origin_host = scheme_end == std::string_view::npos ? std::string_view() : head.origin.substr(scheme_end + 3);
      if (origin_host.empty() || ascii_lower(origin_host) != ascii_lower(head.host))
        return json_error(403, "cross_site_request", "Origin \"" + std::string(head.origin.substr(0, 100)) +
                                                         "\" is not this listener: state-changing requests must come from this page");
    }
    return std::nullopt;
  }

  // The object's cached field definitions (none when there is no such object, or on an error:
  // names are an addition, never a reason to fail the answer).
  static store::field_map fields_of(store::reader& rd, const std::string& object) {
    if (object.empty()) return {};
    auto f = rd.fields(object);
    return f ? std::move(*f) : store::field_map{};
  }

  outcome<std::vector<store::handler_counts>> outbox_counts() {
    std::lock_guard lk(outbox_mu);
    return outbox->counts();
  }

  // Every handler with rows or a state (or configured), with its counts and state.
  outcome<boost::json::array> handlers_json() {
    auto counts = outbox_counts();
    if (!counts) return counts.error();
    outcome<std::map<std::string, store::handler_state>> states = [&] {
      std::lock_guard lk(outbox_mu);
      return store::load_handler_states(*meta);
    }();
    if (!states) return states.error();
    std::map<std::string, store::handler_counts> rows;
    for (const auto& name : opt.handler_names) rows[name].handler = name;
    for (const auto& [name, st] : *states) rows[name].handler = name;
    for (const auto& c : *counts) rows[c.handler] = c;
    boost::json::array out;
    for (const auto& [name, c] : rows) {
      auto it = states->find(name);
      out.push_back(handler_json(c, it == states->end() ? store::handler_state{} : it->second));
    }
    return out;
  }

  // POST /api/v1/handlers/{name}/pause|resume
  http::response pause_handler(const http::request_head& head) {
    const auto parts = segments_after(head.path, "/api/v1/handlers/");
    if (parts.size() != 2 || (parts[1] != "pause" && parts[1] != "resume"))
      return json_error(404, "not_found", "use POST /api/v1/handlers/{name}/pause or /resume");
    const std::string name(parts[0]);
    if (std::find(opt.handler_names.begin(), opt.handler_names.end(), name) == opt.handler_names.end())
      return json_error(404, "not_found", "no handler named \"" + name.substr(0, 100) + "\" is configured");
    const bool pause = parts[1] == "pause";
    {
      std::lock_guard lk(outbox_mu);
      auto states = store::load_handler_states(*meta);
      if (!states) return failure_response(states.error());
      const store::handler_state current = states->count(name) ? states->at(name) : store::handler_state{};
      if (current.paused != pause || current.manual != pause) {
        const auto next = store::changed_by_hand(current, pause, "admin api (" + opt.self.id + ")");
        if (auto saved = store::save_handler_state(*meta, name, next); !saved) return failure_response(saved.error());
        if (opt.paused_by_hand) opt.paused_by_hand(name, pause);
      }
    }
    auto all = handlers_json();
    if (!all) return failure_response(all.error());
    for (auto& h : *all)
      if (h.as_object().at("handler").as_string() == name) return json_ok(h.as_object());
    return json_ok(boost::json::object{});
  }

  std::optional<http::response> check_token(const http::request_head& head) const {
    if (opt.token.empty()) return std::nullopt;
    // "Bearer <token>": the scheme is case-insensitive (RFC 9110 §11.1), spaces after it are optional extras.
    constexpr std::string_view scheme = "bearer ";
    std::string_view given = head.authorization;
    bool ok = given.size() > scheme.size() && ascii_lower(given.substr(0, scheme.size())) == scheme;
    if (ok) {
      given.remove_prefix(scheme.size());
      while (!given.empty() && given.front() == ' ') given.remove_prefix(1);
      while (!given.empty() && given.back() == ' ') given.remove_suffix(1);
      ok = given.size() == opt.token.size() && CRYPTO_memcmp(given.data(), opt.token.data(), opt.token.size()) == 0;
    }
    given = head.authorization;
    if (ok) return std::nullopt;
    auto r = json_error(401, "unauthorized",
                        given.empty() ? "this API needs \"Authorization: Bearer <admin token>\"" : "the admin token is not valid");
    r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"pipehook-admin\"");
    return r;
  }

  http::response list_events(const http::request_head& head) {
    auto p = query_of(head);
    if (!p) return failure_response(p.error());
    auto q = parse_list_query(*p);
    if (!q) return failure_response(q.error());
    if (q->ndjson) return export_events(q->filter);
    auto rd = readers->acquire();
    if (!rd) return failure_response(rd.error());
    auto page = read_page(**rd, q->filter, false);
    if (!page) return failure_response(page.error());
    return json_ok(page_json(*page, event::to_json));
  }

  // format=ndjson: every matching event, a page of rows at a time (each page its own short read
  // transaction: the WAL is never pinned by a long export, and memory stays flat).
  http::response export_events(store::event_filter f) {
    http::response r;
    r.content_type = "application/x-ndjson";
    r.outcome = "export";
    f.limit = export_page_size;
    auto leased = readers->acquire();  // held by the stream until it ends
    if (!leased) return failure_response(leased.error());
    auto rd = std::make_shared<store::reader_pool::lease>(std::move(*leased));
    auto state = std::make_shared<store::event_filter>(std::move(f));
    r.stream = [rd, state](std::string& chunk) {
      auto more = append_export_page(**rd, *state, chunk);
      if (!more) return http::chunk_status::failed;
      return *more ? http::chunk_status::more : http::chunk_status::done;
    };
    return r;
  }

  http::response get_event(const http::request_head& head) {
    const auto seg = segments_after(head.path, "/api/v1/events/");
    if (seg.size() != 1) return json_error(404, "not_found", "no resource at " + std::string(head.path));
    const auto id = to_id(seg[0]);
    if (!id) return json_error(400, "bad_request", "id: \"" + std::string(seg[0]) + "\" is not an event id");
    auto rd = readers->acquire();
    if (!rd) return failure_response(rd.error());
    auto e = (*rd)->get(*id);
    if (!e) return failure_response(e.error());
    boost::json::object o = event::to_json_detail(*e);
    const std::string object = store::fields_object_of(e->ev.entity);
    const store::field_map fields = fields_of(**rd, object);
    std::vector<std::string> unknown;
    o["changes"] = changes_json(event::diff_body(e->ev.body, e->ev.version), &fields, &unknown);
    if (!unknown.empty() && opt.fields_stale) opt.fields_stale(object);
    return json_ok(o);
  }

  http::response timeline(const http::request_head& head) {
    const auto seg = segments_after(head.path, "/api/v1/entities/");
    if (seg.size() != 3 || seg[2] != "timeline" || seg[0].empty() || seg[1].empty())
      return json_error(404, "not_found", "no resource at " + std::string(head.path) +
                                              " (the timeline is /api/v1/entities/{entity}/{entity_id}/timeline)");
    auto p = query_of(head);
    if (!p) return failure_response(p.error());
    bool has_order = false;
    for (const auto& [name, value] : *p) {
      if (name != "limit" && name != "cursor" && name != "order" && name != "since" && name != "until")
        return json_error(400, "bad_request", name + ": unknown parameter (the timeline takes limit, cursor, order, since, until)");
      has_order = has_order || name == "order";
    }
    if (!has_order) p->emplace_back("order", "asc");  // a timeline reads oldest first
    auto q = parse_list_query(*p);
    if (!q) return failure_response(q.error());
    store::event_filter f = q->filter;
    f.entity = std::string(seg[0]);
    f.entity_id = std::string(seg[1]);
    auto rd = readers->acquire();
    if (!rd) return failure_response(rd.error());
    auto page = read_page(**rd, f, true);
    if (!page) return failure_response(page.error());
    const std::string object = store::fields_object_of(f.entity);
    const store::field_map fields = fields_of(**rd, object);
    std::vector<std::string> unknown;
    auto answer = json_ok(page_json(*page, [&](const event::stored_event& e) { return timeline_entry_json(e, &fields, &unknown); }));
    if (!unknown.empty() && opt.fields_stale) opt.fields_stale(object);
    return answer;
  }

  http::response stats(const http::request_head& head) {
    auto p = query_of(head);
    if (!p) return failure_response(p.error());
    auto window = parse_window(*p);
    if (!window) return failure_response(window.error());
    auto rd = readers->acquire();
    if (!rd) return failure_response(rd.error());
    auto s = (*rd)->stats(window->first, window->second);
    if (!s) return failure_response(s.error());
    boost::json::object o = stats_json(*s, window->first, window->second);
    auto storage = (*rd)->storage();
    if (!storage) return failure_response(storage.error());
    o["storage"] = storage_json(*storage);
    auto handlers = handlers_json();
    if (!handlers) return failure_response(handlers.error());
    o["handlers"] = std::move(*handlers);
    if (opt.runtime_stats)
      for (auto& [k, v] : opt.runtime_stats()) o[k] = v;
    return json_ok(o);
  }

  http::response handlers() {
    auto out = handlers_json();
    if (!out) return failure_response(out.error());
    return json_ok(boost::json::object{{"handlers", std::move(*out)}});
  }

  // The replicas on this event log: live ones (heartbeat within their lease) and those dead for
  // less than a day.
  http::response replicas() {
    outcome<std::vector<store::replica_info>> rows = [&] {
      std::lock_guard lk(outbox_mu);
      return outbox->replicas();
    }();
    if (!rows) return failure_response(rows.error());
    const bool tracked = opt.store.is_postgres();
    if (!tracked) {  // a SQLite log has one process: this one
      store::replica_info me;
      me.who = opt.self;
      me.started_at_us = opt.started_at_us;
      me.heartbeat_at_us = now_us();
      me.live = true;
      rows->push_back(std::move(me));
    }
    boost::json::array out;
    for (const auto& r : *rows) {
      boost::json::object o = replica_json(r);
      o["self"] = r.who.id == opt.self.id;
      out.push_back(std::move(o));
    }
    return json_ok(boost::json::object{{"replicas", std::move(out)}, {"shared", tracked}});
  }

  http::response list_quarantine(const http::request_head& head) {
    auto p = query_of(head);
    if (!p) return failure_response(p.error());
    std::optional<std::int64_t> before;
    int limit = 50;
    for (const auto& [name, value] : *p) {
      if (name == "limit") {
        auto n = to_id(value);
        if (!n || *n > 1000) return json_error(400, "bad_request", "limit: must be a number from 1 to 1000 (got \"" + value + "\")");
        limit = static_cast<int>(*n);
      } else if (name == "cursor") {
        auto id = decode_cursor(value, false);
        if (!id) return failure_response(id.error());
        before = *id;
      } else {
        return json_error(400, "bad_request", name + ": unknown parameter (quarantine takes limit, cursor)");
      }
    }
    auto rd = readers->acquire();
    if (!rd) return failure_response(rd.error());
    auto rows = (*rd)->quarantine(before, limit + 1);
    if (!rows) return failure_response(rows.error());
    boost::json::value next = nullptr;
    if (rows->size() > static_cast<std::size_t>(limit)) {
      rows->resize(static_cast<std::size_t>(limit));
      next = encode_cursor(false, rows->back().id);
    }
    boost::json::array items;
    for (const auto& q : *rows) items.push_back(quarantine_json(q));
    return json_ok(boost::json::object{{"quarantine", std::move(items)}, {"next_cursor", std::move(next)}});
  }

  // GET /api/v1/backfills: the runs, newest first (limit, before = an id for the next page).
  http::response list_backfills(const http::request_head& head) {
    auto p = query_of(head);
    if (!p) return failure_response(p.error());
    int limit = 50;
    std::int64_t before = 0;
    for (const auto& [name, value] : *p) {
      const auto n = to_id(value);
      if (name == "limit" && n && *n >= 1 && *n <= 1000) limit = static_cast<int>(*n);
      else if (name == "before" && n) before = *n;
      else if (name == "limit" || name == "before")
        return json_error(400, "bad_request", name + ": \"" + value + "\" is not " + (name == "limit" ? "1-1000" : "a backfill id"));
      else return json_error(400, "bad_request", name + ": unknown parameter (backfills take limit, before)");
    }
    auto book = store::backfill_store::open(opt.store);
    if (!book) return failure_response(book.error());
    auto rows = (*book)->list(limit + 1, before);
    if (!rows) return failure_response(rows.error());
    boost::json::value next = nullptr;
    if (rows->size() > static_cast<std::size_t>(limit)) {
      rows->resize(static_cast<std::size_t>(limit));
      next = rows->back().id;
    }
    boost::json::array items;
    for (const auto& r : *rows) items.push_back(backfill_json(r));
    return json_ok(boost::json::object{{"backfills", std::move(items)}, {"next_before", std::move(next)},
                                       {"can_run", static_cast<bool>(opt.backfill_request)}});
  }

  http::response get_backfill(const http::request_head& head) {
    const auto seg = segments_after(head.path, "/api/v1/backfills/");
    if (seg.size() != 1) return json_error(404, "not_found", "no resource at " + std::string(head.path));
    const auto id = to_id(seg[0]);
    if (!id) return json_error(400, "bad_request", "id: \"" + std::string(seg[0]) + "\" is not a backfill id");
    auto book = store::backfill_store::open(opt.store);
    if (!book) return failure_response(book.error());
    auto run = (*book)->get(*id);
    if (!run) return failure_response(run.error());
    if (!*run) return json_error(404, "not_found", "no backfill " + std::to_string(*id));
    return json_ok(backfill_json(**run));
  }

  // POST /api/v1/backfills: a JSON object {"since": "2h", "until": ..., "objects": ["deal"] or
  // "deal,person", "dry_run": true} (or the same as query parameters); 202 with the queued run.
  http::response post_backfill(const http::request_head& head, const std::string& body) {
    if (!opt.backfill_request)
      return json_error(409, "no_pipedrive_token", "this pipehook has no Pipedrive token (pipedrive.api_token): it cannot backfill");
    auto p = query_of(head);
    if (!p) return failure_response(p.error());
    if (!body.empty()) {
      if (head.content_type.find("application/json") == std::string_view::npos)
        return json_error(415, "unsupported_media_type", "the body must be application/json");
      boost::system::error_code ec;
      const auto v = boost::json::parse(body, ec);
      if (ec || !v.is_object()) return json_error(400, "bad_request", "the body is not a JSON object");
      for (const auto& [k, value] : v.as_object()) {
        std::string text;
        if (value.is_string()) text = std::string(value.as_string());
        else if (value.is_bool()) text = value.as_bool() ? "true" : "false";
        else if (value.is_int64()) text = std::to_string(value.as_int64());
        else if (value.is_array()) {
          for (const auto& item : value.as_array()) {
            if (!item.is_string()) return json_error(400, "bad_request", std::string(k) + ": must be a list of strings");
            text += (text.empty() ? "" : ",") + std::string(item.as_string());
          }
        } else {
          return json_error(400, "bad_request", std::string(k) + ": must be a string, a number, a boolean or a list");
        }
        p->emplace_back(std::string(k), std::move(text));
      }
    }
    auto run = parse_backfill_request(*p);
    if (!run) return failure_response(run.error());
    auto queued = opt.backfill_request(std::move(*run));
    if (!queued) return failure_response(queued.error());
    auto r = http::json_response(202, backfill_json(*queued), "backfill");
    r.headers.emplace_back("Location", "/api/v1/backfills/" + std::to_string(queued->id));
    return r;
  }

  http::response get_quarantined(const http::request_head& head) {
    const auto seg = segments_after(head.path, "/api/v1/quarantine/");
    if (seg.size() != 1) return json_error(404, "not_found", "no resource at " + std::string(head.path));
    const auto id = to_id(seg[0]);
    if (!id) return json_error(400, "bad_request", "id: \"" + std::string(seg[0]) + "\" is not a quarantine id");
    auto rd = readers->acquire();
    if (!rd) return failure_response(rd.error());
    auto q = (*rd)->quarantined(*id);
    if (!q) return failure_response(q.error());
    return json_ok(quarantine_json(*q));
  }
};

namespace {

// POST /api/v1/quarantine/{id}/reparse: the body through today's parser; an event now is stored
// (a duplicate if it already is) and leaves the quarantine in the same transaction.
asio::awaitable<http::response> reparse(api::impl* self, std::string path) {
  const auto seg = segments_after(path, "/api/v1/quarantine/");
  if (seg.size() != 2 || seg[1] != "reparse") co_return json_error(404, "not_found", "no resource at " + path);
  const auto id = to_id(seg[0]);
  if (!id) co_return json_error(400, "bad_request", "id: \"" + std::string(seg[0]) + "\" is not a quarantine id");
  auto rd = self->readers->acquire();
  if (!rd) co_return failure_response(rd.error());
  auto q = (*rd)->quarantined(*id);
  if (!q) co_return failure_response(q.error());
  std::string body = std::move(q->body);
  body.reserve(body.size() + pipedrive::parse_padding);
  auto parsed = pipedrive::parse_webhook(std::move(body), q->received_at_us);
  if (parsed.status != pipedrive::parse_status::event)
    co_return json_error(422, "not_an_event", "quarantined body " + std::to_string(*id) + " still does not parse as a Pipedrive event: " +
                                                  parsed.reason);
  auto op = store::async_append_reparsed(self->log, *id, std::move(parsed.ev), asio::use_awaitable);
  store::append_result res = co_await std::move(op);
  if (!res) co_return json_error(503, "store_unavailable", res.error().message);
  const bool dup = res->status == store::append_status::duplicate;
  co_return http::json_response(200, boost::json::object{{"status", dup ? "duplicate" : "stored"}, {"event_id", res->id}},
                          dup ? "duplicate" : "stored");
}

http::response asset(std::string_view content_type, std::string_view body) {
  http::response r;
  r.content_type = std::string(content_type);
  r.body = std::string(body);
  r.outcome = "asset";
  r.headers.emplace_back("Content-Security-Policy", "default-src 'self'; style-src 'self'; script-src 'self'; img-src 'self' data:");
  r.headers.emplace_back("X-Content-Type-Options", "nosniff");
  return r;
}

// A route's synchronous handler as the coroutine a worker thread runs (a named function object:
// co_spawn keeps it, and what it holds, alive until the coroutine ends).
template <class F>
struct run_query {
  F fn;
  http::request_head head;
  asio::awaitable<http::response> operator()() { co_return fn(head); }
};

// The same with the request's body.
template <class F>
struct run_post {
  F fn;
  http::request_head head;
  std::string body;
  asio::awaitable<http::response> operator()() { co_return fn(head, body); }
};

}  // namespace

api::api(std::unique_ptr<impl> p) : impl_(std::move(p)) {}
api::~api() = default;

outcome<std::unique_ptr<api>> api::create(api_options opt, store::event_log& log) {
  auto p = std::make_unique<impl>(std::move(opt), log);
  auto rd = store::reader_pool::open(p->opt.store.for_purpose("admin"), p->opt.pool_size);
  if (!rd) return rd.error();
  p->readers = std::move(*rd);
  p->workers = std::make_unique<asio::thread_pool>(std::max<std::size_t>(1, p->opt.pool_size));
  auto ob = store::outbox::open(p->opt.store.for_purpose("admin"));
  if (!ob) return ob.error();
  p->outbox = std::move(*ob);
  auto meta = store::meta_store::open(p->opt.store);
  if (!meta) return meta.error();
  p->meta = std::move(*meta);
  return std::unique_ptr<api>(new api(std::move(p)));
}

std::optional<http::response> api::admit(const http::request_head& head) const { return impl_->admit(head); }

void api::set_listen_address(const std::string& ip) { impl_->listen_address = parse_address(ip); }

std::vector<http::route> api::routes() {
  impl* self = impl_.get();
  auto check = [self](const http::request_head& head) { return self->check_token(head); };
  // A synchronous handler as a route, run on a worker thread; its answer comes back to the
  // connection's own executor.
  auto get = [self](auto fn) {
    return [self, fn](const http::request_head& head, std::string) {
      return asio::co_spawn(*self->workers, run_query<decltype(fn)>{fn, head}, asio::use_awaitable);
    };
  };
  const bool prefix = true, exact = false;
  std::vector<http::route> out = {
      {"GET", "/api/v1/events", check, get([self](const auto& h) { return self->list_events(h); }), exact},
      {"GET", "/api/v1/events/", check, get([self](const auto& h) { return self->get_event(h); }), prefix},
      {"GET", "/api/v1/entities/", check, get([self](const auto& h) { return self->timeline(h); }), prefix},
      {"GET", "/api/v1/stats", check, get([self](const auto& h) { return self->stats(h); }), exact},
      {"GET", "/api/v1/handlers", check, get([self](const auto&) { return self->handlers(); }), exact},
      {"POST", "/api/v1/handlers/", check,
       [self](const http::request_head& head, std::string body) {
         auto fn = [self](const http::request_head& h, const std::string&) { return self->pause_handler(h); };
         return asio::co_spawn(*self->workers, run_post<decltype(fn)>{fn, head, std::move(body)}, asio::use_awaitable);
       },
       prefix},
      {"GET", "/api/v1/replicas", check, get([self](const auto&) { return self->replicas(); }), exact},
      {"GET", "/api/v1/quarantine", check, get([self](const auto& h) { return self->list_quarantine(h); }), exact},
      {"GET", "/api/v1/quarantine/", check, get([self](const auto& h) { return self->get_quarantined(h); }), prefix},
      {"POST", "/api/v1/quarantine/", check,
       [self](const http::request_head& head, std::string) {
         // On a worker too: leasing a reader may wait, and the listener's thread never does.
         return asio::co_spawn(*self->workers, reparse(self, std::string(head.path)), asio::use_awaitable);
       },
       prefix},
      {"GET", "/api/v1/backfills", check, get([self](const auto& h) { return self->list_backfills(h); }), exact},
      {"GET", "/api/v1/backfills/", check, get([self](const auto& h) { return self->get_backfill(h); }), prefix},
      {"POST", "/api/v1/backfills", check,
       [self](const http::request_head& head, std::string body) {
         auto fn = [self](const http::request_head& h, const std::string& b) { return self->post_backfill(h, b); };
         return asio::co_spawn(*self->workers, run_post<decltype(fn)>{fn, head, std::move(body)}, asio::use_awaitable);
       },
       exact},
      // The page itself holds no data: it asks for the token and sends it with each API call.
      {"GET", "/", {}, get([](const auto&) { return asset("text/html; charset=utf-8", web::index_html); }), exact},
      {"GET", "/app.js", {}, get([](const auto&) { return asset("text/javascript; charset=utf-8", web::app_js); }), exact},
      {"GET", "/app.css", {}, get([](const auto&) { return asset("text/css; charset=utf-8", web::app_css); }), exact},
  };
  if (self->opt.metrics) {
    out.push_back({"GET", "/metrics", check, get([self](const auto&) {
                     auto counts = self->outbox_counts();
                     if (!counts) return failure_response(counts.error());
                     std::int64_t bytes = -1;
                     if (auto rd = self->readers->acquire(); rd)
                       if (auto used = (*rd)->used_bytes(); used) bytes = *used;
                     http::response r;
                     r.content_type = "text/plain; version=0.0.4; charset=utf-8";
                     r.body = self->opt.metrics(*counts, bytes);
                     r.outcome = "metrics";
                     return r;
                   }),
                   exact});
  }
  return out;
}

}  // namespace pipehook::admin
