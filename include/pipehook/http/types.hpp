#pragma once
// The HTTP boundary: handlers see these small values, never Beast types, so the ingest logic can
// be tested without sockets.

#include <boost/asio/awaitable.hpp>
#include <boost/json/fwd.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pipehook::http {

// What a handler needs of a request's head. Views are valid until the response is written.
struct request_head {
  std::string_view method;
  std::string_view target;   // the origin-form target (path and query); an absolute-form target's path part
  std::string_view path;     // target without the query
  std::string_view host;     // the authority asked for: an absolute-form target's, else the Host header
  std::string_view content_type;
  std::string_view authorization;
  std::string_view origin;          // the Origin header (browsers send it on cross-origin and unsafe requests)
  std::string_view sec_fetch_site;  // the Sec-Fetch-Site header: same-origin, same-site, cross-site or none
  std::optional<std::uint64_t> content_length;  // absent for chunked bodies
  std::string remote;        // for logs: the peer "ip:port", or "client via ip:port" behind a trusted proxy
  std::string client;        // the client's address: the peer's, or as a trusted proxy forwarded it
  std::string proto;         // "https"/"http" as a trusted proxy forwarded it; "" otherwise
};

// A listener's open connections, and how many of them are reading or answering a request (the
// rest wait for one: idle keep-alive, or opened and silent).
struct connection_counts {
  std::size_t open = 0;
  std::size_t busy = 0;
};

enum class chunk_status { more, done, failed };

struct response {
  unsigned status = 200;
  std::string body;
  // A body of any size, sent chunked: called on the connection's strand until it returns done
  // (after its last chunk) or failed (the connection is then closed without the final chunk, so
  // the client can tell the body is incomplete). Each chunk is written before the next is asked.
  std::function<chunk_status(std::string& chunk)> stream;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
  std::string outcome;  // a short tag for logs and counters: "stored", "unauthorized", ...
  std::string note;     // why, for the log line (never a secret)
};

// {"error": error, "detail": detail} with the given status; `error` is also the outcome tag.
response json_error(unsigned status, std::string_view error, std::string_view detail);

// A JSON body (serialized `body`) with the given status and outcome tag.
response json_response(unsigned status, const boost::json::value& body, std::string outcome);

// An answer already made, as the awaitable a route's handler returns.
boost::asio::awaitable<response> ready(response r);

// A route: an exact path (or, with `prefix`, every path that starts with it) and method. `check` runs on the head before the body is read and may
// refuse the request (401, 415, ...); `handle` gets the whole body. Both may be empty.
struct route {
  std::string method;
  std::string path;
  std::function<std::optional<response>(const request_head&)> check;
  std::function<boost::asio::awaitable<response>(const request_head&, std::string body)> handle;
  bool prefix = false;
};

// Room left after every request body for parsers that read past the end (simdjson reads 64 bytes).
inline constexpr std::size_t body_padding = 64;

}  // namespace pipehook::http
