#include "pipehook/ingest/webhook.hpp"

#include "pipehook/core/codec.hpp"
#include "pipehook/core/time.hpp"
#include "pipehook/pipedrive/parse.hpp"
#include "pipehook/store/async.hpp"

#include <boost/asio/use_awaitable.hpp>

#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <openssl/crypto.h>

#include <algorithm>
#include <cctype>
#include <memory>

namespace pipehook::ingest {

static_assert(http::body_padding >= pipedrive::parse_padding, "request bodies must carry the parser's padding");

namespace asio = boost::asio;

namespace {

bool iequals_prefix(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(s[i])) != std::tolower(static_cast<unsigned char>(prefix[i]))) return false;
  return true;
}

// "user:password" from an Authorization: Basic header; nullopt when absent or malformed.
std::optional<std::string> basic_credentials(std::string_view header) {
  if (!iequals_prefix(header, "basic ")) return std::nullopt;
  std::string_view b64 = header.substr(6);
  while (!b64.empty() && b64.front() == ' ') b64.remove_prefix(1);
  while (!b64.empty() && b64.back() == ' ') b64.remove_suffix(1);
  if (b64.empty() || b64.size() > 4096) return std::nullopt;
  return base64_decode(b64);
}

// application/json, optionally with parameters, or any application/<x>+json.
bool is_json_content_type(std::string_view ct) {
  ct = ct.substr(0, ct.find(';'));
  while (!ct.empty() && ct.back() == ' ') ct.remove_suffix(1);
  std::string lower(ct);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower == "application/json") return true;
  return lower.rfind("application/", 0) == 0 && lower.size() > 17 && lower.compare(lower.size() - 5, 5, "+json") == 0;
}


}  // namespace

webhook_endpoint::webhook_endpoint(options opt, store::event_log& log) : opt_(std::move(opt)), log_(log) {
  set_credentials(opt_.auth_enabled, opt_.user, opt_.password);
}

void webhook_endpoint::set_credentials(bool enabled, const std::string& user, const std::string& password) {
  const auto digest = sha256(user + ":" + password);
  std::lock_guard lk(cred_mu_);
  auth_enabled_ = enabled;
  expected_digest_ = digest;
}

std::optional<http::response> webhook_endpoint::check(const http::request_head& head) const {
  if (!opt_.allow_from.empty()) {
    const auto client = parse_address(head.client);
    if (!client || !in_ranges(opt_.allow_from, *client))
      return http::json_error(403, "forbidden",
                              "the client address " + head.client + " is not in server.allow_from");
  }
  bool enabled;
  std::array<unsigned char, 32> expected;
  {
    std::lock_guard lk(cred_mu_);
    enabled = auth_enabled_;
    expected = expected_digest_;
  }
  if (enabled) {
    const auto creds = basic_credentials(head.authorization);
    // Compare digests so the time taken does not depend on where the strings differ, or their length.
    const auto given = sha256(creds ? *creds : std::string_view("\x01"));
    if (!creds || CRYPTO_memcmp(given.data(), expected.data(), given.size()) != 0) {
      http::response r = http::json_error(
          401, "unauthorized",
          head.authorization.empty() ? "Basic credentials are required" : "the Basic credentials are not valid");
      r.headers.emplace_back("WWW-Authenticate", "Basic realm=\"pipehook\", charset=\"UTF-8\"");
      return r;
    }
  }
  if (!is_json_content_type(head.content_type)) {
    const std::string got = head.content_type.empty() ? "none" : "\"" + std::string(head.content_type.substr(0, 100)) + "\"";
    return http::json_error(415, "unsupported_media_type", "Content-Type must be application/json (got " + got + ")");
  }
  return std::nullopt;
}

void webhook_endpoint::note_write(const store::append_result& r, std::size_t bytes) {
  if (r) {
    if (!write_failed_.load(std::memory_order_relaxed)) return;
    std::lock_guard lk(failure_mu_);
    write_failed_ = false;
    failure_bytes_ = 0;
    return;
  }
  // A full queue is load and shutting down is ours: neither says the log cannot be written.
  if (r.error().code == make_error_code(errc::queue_full) || r.error().code == make_error_code(errc::store_closed)) return;
  std::lock_guard lk(failure_mu_);
  write_failed_ = true;
  failure_bytes_ = std::max(failure_bytes_, bytes);
}

http::response webhook_endpoint::unavailable(const failure& f) const {
  const char* what = "store_unavailable";
  if (f.code == make_error_code(errc::queue_full)) what = "queue_full";
  else if (f.code == make_error_code(errc::store_busy)) what = "store_busy";
  else if (f.code == make_error_code(errc::store_full)) what = "store_full";
  else if (f.code == make_error_code(errc::store_closed)) what = "shutting_down";
  http::response r = http::json_error(503, what, "the event was not stored, retry later: " + f.message);
  r.headers.emplace_back("Retry-After", std::to_string(opt_.retry_after_s));
  return r;
}

asio::awaitable<http::response> webhook_endpoint::handle(http::request_head head, std::string body) {
  pipedrive::parse_result parsed = pipedrive::parse_webhook(std::move(body), now_us());
  if (parsed.status == pipedrive::parse_status::invalid_json)
    co_return http::json_error(400, "invalid_json", parsed.reason);

  if (parsed.status == pipedrive::parse_status::not_an_event) {
    store::quarantined q;
    q.reason = parsed.reason;
    q.content_type = std::string(head.content_type);
    q.remote = head.remote;
    q.body = std::move(parsed.ev.body);
    q.received_at_us = parsed.ev.received_at_us;
    const std::size_t bytes = q.body.size();
    auto op = store::async_append(log_, std::move(q), asio::use_awaitable);  // named: no temporaries in a co_await (GCC 12)
    store::append_result res = co_await std::move(op);
    note_write(res, bytes);
    if (!res) co_return unavailable(res.error());
    http::response r = http::json_response(202, {{"status", "quarantined"}, {"id", res->id}, {"reason", parsed.reason}}, "quarantined");
    r.note = parsed.reason;
    co_return r;
  }

  event::event& ev = parsed.ev;
  const std::string note = ev.entity + "." + ev.action + " " + ev.entity_id + " attempt " + std::to_string(ev.attempt);
  const std::size_t bytes = ev.body.size();
  auto op = store::async_append(log_, std::move(ev), asio::use_awaitable);
  store::append_result res = co_await std::move(op);
  note_write(res, bytes);
  if (!res) co_return unavailable(res.error());
  const bool dup = res->status == store::append_status::duplicate;
  http::response r = http::json_response(200, {{"status", dup ? "duplicate" : "stored"}, {"id", res->id}}, dup ? "duplicate" : "stored");
  r.note = note;
  co_return r;
}

http::response webhook_endpoint::health() const { return http::json_response(200, {{"status", "ok"}}, "health"); }

asio::awaitable<http::response> webhook_endpoint::ready() {
  if (draining_) co_return http::json_error(503, "not_ready", "shutting down");
  std::size_t room = 0;
  {
    std::lock_guard lk(failure_mu_);
    room = failure_bytes_;
  }
  auto op = store::async_probe(log_, room, asio::use_awaitable);
  store::append_result res = co_await std::move(op);
  note_write(res, room);
  if (!res) {
    http::response r = http::json_error(503, "not_ready", "the event log is not writable: " + res.error().message);
    r.headers.emplace_back("Retry-After", std::to_string(opt_.retry_after_s));
    co_return r;
  }
  co_return http::json_response(200, {{"status", "ready"}}, "ready");
}

}  // namespace pipehook::ingest
