#include "pipehook/http/server.hpp"

#include "padded_body.hpp"
#include "pipehook/core/spawn.hpp"
#include "pipehook/core/task_group.hpp"
#include "pipehook/core/use_tuple.hpp"
#include "pipehook/http/proxy.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/optional/optional.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/chunk_encode.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/asio/write.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/object.hpp>
#include <spdlog/spdlog.h>

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

namespace pipehook::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using asio::ip::tcp;
using unix_socket = asio::local::stream_protocol;

response json_error(unsigned status, std::string_view error, std::string_view detail) {
  response r;
  r.status = status;
  r.body = boost::json::serialize(boost::json::object{{"error", error}, {"detail", detail}});
  r.outcome = std::string(error);
  r.note = std::string(detail);
  return r;
}

response json_response(unsigned status, const boost::json::value& body, std::string outcome) {
  response r;
  r.status = status;
  r.body = boost::json::serialize(body);
  r.outcome = std::move(outcome);
  return r;
}

asio::awaitable<response> ready(response r) { co_return r; }

struct server::state : std::enable_shared_from_this<server::state> {
  asio::io_context& ioc;
  server_options opt;
  std::vector<route> routes;
  tcp::acceptor acceptor;
  unix_socket::acceptor unix_acceptor;  // instead of `acceptor` when opt.unix_path is set (or adopted)
  bool adopted_unix = false;            // a Unix socket passed by systemd
  std::atomic<bool> stopping{false};
  task_group sessions;  // one task per connection; waits run on the acceptor's strand

  state(asio::io_context& c, server_options o, std::vector<route> r)
      : ioc(c),
        opt(std::move(o)),
        routes(std::move(r)),
        acceptor(asio::make_strand(c)),
        unix_acceptor(acceptor.get_executor()),
        sessions(acceptor.get_executor(), "an HTTP session") {}

  void report(const request_head& head, const response& res, std::chrono::steady_clock::time_point start) {
    if (opt.on_response)
      opt.on_response(head, res, std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start));
  }
};

namespace {

using state_ptr = std::shared_ptr<server::state>;
using clock = std::chrono::steady_clock;

const route* find_route(const server::state& st, std::string_view path, std::string_view method, std::string& allow) {
  for (const route& r : st.routes) {
    if (r.prefix ? !path.starts_with(r.path) : r.path != path) continue;
    if (r.method == method) return &r;
    if (!allow.empty()) allow += ", ";
    allow += r.method;
  }
  return nullptr;
}

// A response to a HEAD request carries the headers of the GET answer (Content-Length included)
// and no body.
template <class Body>
void set_head(bhttp::response<Body>& res, const response& r, bool keep_alive) {
  res.set(bhttp::field::server, "pipehook/" PIPEHOOK_VERSION);
  if (!r.content_type.empty()) res.set(bhttp::field::content_type, r.content_type);
  res.set(bhttp::field::cache_control, "no-store");
  for (const auto& [name, value] : r.headers) res.set(name, value);
  res.keep_alive(keep_alive);
}

bhttp::response<bhttp::string_body> to_beast(const response& r, unsigned version, bool keep_alive, bool head_request) {
  bhttp::response<bhttp::string_body> res{static_cast<bhttp::status>(r.status), version};
  set_head(res, r, keep_alive);
  if (head_request) {
    res.content_length(r.body.size());
  } else {
    res.body() = r.body;
    res.prepare_payload();
  }
  return res;
}

// Every value of a header sent once or several times, as one comma-separated list.
template <class Message, class Name>
std::string joined(const Message& m, Name name) {
  std::string v;
  for (auto [it, end] = m.equal_range(name); it != end; ++it) v += (v.empty() ? "" : ",") + std::string(it->value());
  return v;
}

// The members of a comma-separated list, without the optional whitespace around them, lower-cased.
std::vector<std::string> list_members(std::string_view list) {
  std::vector<std::string> out;
  while (true) {
    const auto comma = list.find(',');
    std::string_view item = list.substr(0, comma);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    std::string lower(item);
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    out.push_back(std::move(lower));
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return out;
}

bool starts_with_nocase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && beast::iequals(s.substr(0, prefix.size()), prefix);
}

// "http://host:port/path?q" -> authority "host:port", rest "/path?q" (RFC 9112 §3.2.2).
bool split_absolute_form(std::string_view target, std::string_view& authority, std::string_view& rest) {
  std::size_t skip = 0;
  if (starts_with_nocase(target, "http://")) skip = 7;
  else if (starts_with_nocase(target, "https://")) skip = 8;
  else return false;
  std::string_view after = target.substr(skip);
  const auto end = after.find_first_of("/?");
  authority = after.substr(0, end);
  if (const auto at = authority.rfind('@'); at != std::string_view::npos) authority.remove_prefix(at + 1);  // userinfo
  rest = end == std::string_view::npos ? std::string_view() : after.substr(end);
  return true;
}

// Points the head's views at a parsed message's header (valid while that message lives).
template <class Message>
void fill_head(request_head& head, const Message& m) {
  head.method = m.method_string();
  std::string_view target = m.target(), authority;
  head.host = m[bhttp::field::host];
  if (split_absolute_form(target, authority, target)) head.host = authority;  // the target's authority wins
  head.target = target;
  head.path = target.substr(0, target.find('?'));
  if (head.path.empty()) head.path = "/";
  head.content_type = m[bhttp::field::content_type];
  head.authorization = m[bhttp::field::authorization];
  head.origin = m[bhttp::field::origin];
  head.sec_fetch_site = m["Sec-Fetch-Site"];
}

// The framing rules of RFC 9112 that Beast leaves to the server: anything a proxy in front could
// read differently (and so smuggle a second request past it) is refused, and the connection closed.
// `close_after` is set for a request that may be served but must not be followed on its connection.
template <class Message>
std::optional<response> check_framing(const Message& m, bool& close_after) {
  if (m.count(bhttp::field::transfer_encoding)) {
    const std::string te = joined(m, bhttp::field::transfer_encoding);
    const auto codings = list_members(te);
    // §6.3: a final coding other than chunked leaves the body's length unknown.
    if (codings.back() != "chunked")
      return json_error(400, "bad_request", "Transfer-Encoding \"" + te.substr(0, 100) +
                                                "\" does not end in chunked: the body's length cannot be known");
    // chunked applied twice, or an empty member: malformed. Any other coding before chunked: a
    // coding pipehook does not implement.
    for (std::size_t i = 0; i + 1 < codings.size(); ++i)
      if (codings[i] == "chunked" || codings[i].empty())
        return json_error(400, "bad_request", "Transfer-Encoding \"" + te.substr(0, 100) + "\" is malformed");
    if (codings.size() > 1)
      return json_error(501, "not_implemented",
                        "the transfer coding \"" + codings.front().substr(0, 40) + "\" is not supported (only chunked)");
    if (m.version() < 11) close_after = true;  // §6.1: HTTP/1.0 with Transfer-Encoding is faulty framing
  }
  const auto hosts = m.count(bhttp::field::host);
  if (hosts > 1) return json_error(400, "bad_request", "the request has more than one Host header");
  if (hosts == 0 && m.version() >= 11) return json_error(400, "bad_request", "an HTTP/1.1 request needs a Host header");
  if (m.count(bhttp::field::authorization) > 1)
    return json_error(400, "bad_request", "the request has more than one Authorization header");
  const std::string_view target = m.target();
  std::string_view authority, rest;
  const bool absolute = split_absolute_form(target, authority, rest);
  if (absolute ? authority.empty() : !(target.starts_with('/') || (target == "*" && m.method() == bhttp::verb::options)))
    return json_error(400, "bad_request", "the request target \"" + std::string(target.substr(0, 100)) + "\" is not a path");
  return std::nullopt;
}

// Content codings: pipehook stores bodies as received and parses them as JSON, so any coding but
// identity is refused (Pipedrive does not compress).
template <class Message>
std::optional<response> check_content_encoding(const Message& m) {
  if (!m.count(bhttp::field::content_encoding)) return std::nullopt;
  const std::string ce = joined(m, bhttp::field::content_encoding);
  for (const auto& coding : list_members(ce)) {
    if (coding == "identity") continue;
    response r = json_error(415, "unsupported_content_encoding",
                            "Content-Encoding \"" + ce.substr(0, 100) + "\" is not supported: send the body uncompressed");
    r.headers.emplace_back("Accept-Encoding", "identity");
    return r;
  }
  return std::nullopt;
}

// True when the bytes held back by the parser (an unfinished line) contain a line ended by a bare
// LF: HTTP lines end in CRLF, and waiting for one that never comes would hang until the timeout.
bool has_bare_lf(const beast::flat_buffer& buffer) {
  const auto data = buffer.data();
  const std::string_view held(static_cast<const char*>(data.data()), data.size());
  for (auto at = held.find('\n'); at != std::string_view::npos; at = held.find('\n', at + 1))
    if (at == 0 || held[at - 1] != '\r') return true;
  return false;
}

// Reads into `parser` until its header is done (`header_only`) or the whole message is: the same
// loop as Beast's read, plus two checks it lacks: an unfinished line that ends in a bare LF fails
// at once (bad_line_ending), and so does one longer than `max_line` (header_limit).
template <class Stream, class Parser>
asio::awaitable<beast::error_code> read_message(Stream& stream, beast::flat_buffer& buffer, Parser& parser, bool header_only,
                                                std::size_t max_line) {
  parser.eager(!header_only);  // eager: the body as far as it has arrived; not eager: stop after the head
  auto finished = [&] { return parser.is_done() || (header_only && parser.is_header_done()); };
  for (;;) {
    if (finished()) co_return beast::error_code{};
    if (buffer.size() > 0) {
      beast::error_code ec;
      const std::size_t used = parser.put(buffer.data(), ec);
      buffer.consume(used);
      if (finished()) co_return beast::error_code{};
      if (ec && ec != bhttp::error::need_more) co_return ec;
      if (!ec && used > 0) continue;
      if (has_bare_lf(buffer)) co_return beast::error_code(bhttp::error::bad_line_ending);
      if (parser.is_header_done() && buffer.size() > max_line) co_return beast::error_code(bhttp::error::header_limit);
    }
    auto [ec, n] = co_await stream.async_read_some(buffer.prepare(16 * 1024), use_tuple);
    if (ec == asio::error::eof && parser.got_some()) {
      beast::error_code eof_ec;
      parser.put_eof(eof_ec);
      co_return eof_ec ? eof_ec : beast::error_code(bhttp::error::partial_message);
    }
    if (ec) co_return ec;
    buffer.commit(n);
  }
}

// Writes a streamed response: the head, then each chunk as the producer makes it. False when the
// connection cannot be used further (write error, or the producer failed mid-body).
template <class Stream>
asio::awaitable<bool> write_streamed(Stream& stream, const response& r, unsigned version, bool keep_alive,
                                     bool head_request, std::chrono::milliseconds timeout) {
  bhttp::response<bhttp::empty_body> res{static_cast<bhttp::status>(r.status), version};
  set_head(res, r, keep_alive);
  res.chunked(true);
  bhttp::response_serializer<bhttp::empty_body> sr{res};
  stream.expires_after(timeout);
  auto [hec, hn] = co_await bhttp::async_write_header(stream, sr, use_tuple);
  if (hec) co_return false;
  if (head_request) co_return true;
  std::string chunk;
  for (;;) {
    chunk.clear();
    const chunk_status more = r.stream(chunk);
    if (more == chunk_status::failed) co_return false;
    if (!chunk.empty()) {
      stream.expires_after(timeout);
      const auto body = bhttp::make_chunk(asio::buffer(chunk));  // named: no class temporaries in a co_await (GCC 12)
      auto [ec, n] = co_await asio::async_write(stream, body, use_tuple);
      if (ec) co_return false;
    }
    if (more == chunk_status::done) break;
  }
  stream.expires_after(timeout);
  const auto last = bhttp::make_chunk_last();
  auto [ec, n] = co_await asio::async_write(stream, last, use_tuple);
  co_return !ec;
}

// After refusing a request whose body we will not read: stop sending, then drain what the client
// still sends for a moment, so that it sees our answer instead of a connection reset. Nothing
// drained is parsed.
template <class Stream>
asio::awaitable<void> lingering_close(Stream& stream, std::uint64_t max_bytes) {
  beast::error_code ec;
  stream.socket().shutdown(asio::socket_base::shutdown_send, ec);
  stream.expires_after(std::chrono::seconds(2));
  char sink[16 * 1024];
  std::uint64_t drained = 0;
  while (drained < max_bytes) {
    auto [rec, n] = co_await stream.async_read_some(asio::buffer(sink), use_tuple);
    if (rec) break;
    drained += n;
  }
  stream.close();
}

// The peer's address (IPv4-mapped IPv6 unmapped) and "ip:port" for logs; nullopt and "?" when the
// socket is already gone.
std::pair<std::optional<asio::ip::address>, std::string> peer_of(beast::basic_stream<unix_socket>&) {
  return {std::nullopt, "unix"};
}
std::pair<std::optional<asio::ip::address>, std::string> peer_of(beast::tcp_stream& stream) {
  beast::error_code ec;
  const auto ep = stream.socket().remote_endpoint(ec);
  if (ec) return {std::nullopt, "?"};
  const auto addr = parse_address(ep.address().to_string());
  const std::string text = addr ? addr->to_string() : ep.address().to_string();
  return {addr, (addr && addr->is_v6() ? "[" + text + "]" : text) + ":" + std::to_string(ep.port())};
}

// One connection: its stream, read buffer and peer; a task of the server's session group.
template <class Protocol>
struct session {
  state_ptr st;
  task_group::task_ptr task;
  beast::basic_stream<Protocol> stream;
  beast::flat_buffer buffer;
  std::optional<asio::ip::address> peer_ip;
  std::string remote;     // "ip:port" (or "unix") for logs
  std::string peer_text;  // the peer's address, "unix" for a Unix-socket peer

  session(state_ptr s, task_group::task_ptr t, typename Protocol::socket socket)
      : st(std::move(s)), task(std::move(t)), stream(std::move(socket)) {
    std::tie(peer_ip, remote) = peer_of(stream);
    peer_text = peer_ip ? peer_ip->to_string() : remote;
  }

  ~session() {
    beast::error_code ec;
    stream.socket().shutdown(asio::socket_base::shutdown_send, ec);
    stream.close();
  }

  // Answers a request that will not be served further, then closes the connection; the body, if
  // the client is still sending one, is drained for a moment so that it sees the answer.
  asio::awaitable<void> refuse(const request_head& head, response r, unsigned version, clock::time_point start, bool drain) {
    auto res = to_beast(r, version, false, head.method == "HEAD");
    stream.expires_after(st->opt.read_timeout);
    auto [ec, n] = co_await bhttp::async_write(stream, res, use_tuple);
    st->report(head, r, start);
    if (!ec && drain) co_await lingering_close(stream, st->opt.max_body_bytes);
  }

  // A read that ended without a request to answer (timeout, client gone): logged, not answered.
  void abandoned(const request_head& head, beast::error_code ec, const char* while_reading, clock::time_point start) {
    response r;
    r.status = 0;
    r.outcome = ec == beast::error::timeout ? "read_timeout" : "client_gone";
    r.note = std::string("while reading the ") + while_reading + ": " + ec.message();
    st->report(head, r, start);
  }

  // Waits for the first bytes of the next request: a new connection gets read_timeout to begin
  // one, a kept-alive connection idle_timeout. False when the connection should close.
  asio::awaitable<bool> wait_for_request(bool first) {
    if (buffer.size() > 0) co_return true;  // pipelined: already here
    if (st->stopping) co_return false;
    task->idle();  // from here a stop or the connection cap may cancel the read
    stream.expires_after(first ? st->opt.read_timeout : st->opt.idle_timeout);
    auto [ec, n] = co_await stream.async_read_some(buffer.prepare(4096), use_tuple);
    task->busy();
    if (ec) co_return false;  // closed by the client, timed out, closed for a new connection, or shutdown
    buffer.commit(n);
    co_return true;
  }

  // Fills in who the client is: the peer, or whom a trusted proxy forwarded for.
  template <class Message>
  void identify_client(request_head& head, const Message& req) const {
    head.remote = remote;
    head.client = peer_text;
    const bool trusted_peer = peer_ip ? !st->opt.trusted_proxies.empty() : st->opt.trust_unix_peers;
    if (!trusted_peer) return;
    const std::string fwd = joined(req, bhttp::field::forwarded), xff = joined(req, std::string_view("X-Forwarded-For")),
                      xfp = joined(req, std::string_view("X-Forwarded-Proto"));
    const client_address c = peer_ip ? resolve_client(*peer_ip, fwd, xff, xfp, st->opt.trusted_proxies)
                                     : resolve_forwarded(fwd, xff, xfp, st->opt.trusted_proxies);
    if (!c.forwarded) return;
    head.client = c.address;
    head.proto = c.proto;
    head.remote = c.address + " via " + remote;
  }

  // The checks on a head, in the documented order: framing (400/501), the listener's own
  // admission (admin: Host, Origin), 404, 405, 413, 415 for a content coding, then the route's own.
  template <class Message>
  std::optional<response> admit(const Message& req, const request_head& head, const route*& rt, bool& close_after) const {
    if (auto refused = check_framing(req, close_after)) return refused;
    if (st->opt.admit)
      if (auto refused = st->opt.admit(head)) return refused;
    std::string allow;
    rt = find_route(*st, head.path, head.method, allow);
    if (!rt && allow.empty()) return json_error(404, "not_found", "no resource at " + std::string(head.path));
    if (!rt) {
      response r = json_error(405, "method_not_allowed", std::string(head.method) + " is not allowed on " +
                                                             std::string(head.path) + " (allowed: " + allow + ")");
      r.headers.emplace_back("Allow", allow);
      return r;
    }
    if (head.content_length && *head.content_length > st->opt.max_body_bytes)
      return json_error(413, "payload_too_large", "the body is " + std::to_string(*head.content_length) +
                                                      " bytes; the limit is " + std::to_string(st->opt.max_body_bytes));
    if (auto refused = check_content_encoding(req)) return refused;
    if (rt->check) return rt->check(head);
    return std::nullopt;
  }

  asio::awaitable<response> call(const route& rt, const request_head& head, std::string body) {
    if (!rt.handle) co_return json_error(500, "internal_error", "no handler");
    try {
      // Built in its own statement: GCC 12 destroys class temporaries of a co_await expression twice.
      auto op = rt.handle(head, std::move(body));
      co_return co_await std::move(op);
    } catch (const std::exception& e) {
      // Last-resort safety net: a bug must not take the connection's peers down with it.
      spdlog::error("handler for {} {} threw: {}", head.method, head.path, e.what());
    }
    co_return json_error(500, "internal_error", "the request could not be processed; see the server log");
  }

  // Writes the answer; false when the connection is not to be used again.
  asio::awaitable<bool> respond(const request_head& head, const response& r, unsigned version, bool again,
                                clock::time_point start) {
    if (r.stream) {
      auto op = write_streamed(stream, r, version, again, head.method == "HEAD", st->opt.read_timeout);
      const bool ok = co_await std::move(op);
      st->report(head, r, start);
      co_return ok && again;
    }
    auto res = to_beast(r, version, again, head.method == "HEAD");
    stream.expires_after(st->opt.read_timeout);
    auto [ec, n] = co_await bhttp::async_write(stream, res, use_tuple);
    st->report(head, r, start);
    co_return !ec && again;
  }

  // One request, from its first byte to its answer. False when the connection is to close.
  asio::awaitable<bool> serve_one() {
    // A request has begun: all of it must arrive within read_timeout.
    const auto start = clock::now();
    stream.expires_after(st->opt.read_timeout);
    request_head head;
    head.remote = remote;
    head.client = peer_text;
    bhttp::request_parser<bhttp::empty_body> head_parser;
    head_parser.header_limit(st->opt.header_limit);
    head_parser.body_limit(boost::none);  // an oversized Content-Length is answered 413 by admit(), not a parse error
    auto read_head = read_message(stream, buffer, head_parser, true, st->opt.header_limit);
    const beast::error_code hec = co_await std::move(read_head);
    if (hec == beast::error::timeout || hec == asio::error::operation_aborted || hec == bhttp::error::partial_message ||
        hec == asio::error::eof || hec == asio::error::connection_reset) {
      abandoned(head, hec, "request head", start);
      co_return false;
    }
    if (hec) {
      const bool too_big = hec == bhttp::error::header_limit;
      response r = json_error(too_big ? 431 : 400, too_big ? "headers_too_large" : "bad_request",
                              too_big ? "the request head is larger than " + std::to_string(st->opt.header_limit) + " bytes"
                              : hec == bhttp::error::bad_line_ending ? "malformed HTTP request: a line ends in a bare LF (HTTP needs CRLF)"
                                                                     : "malformed HTTP request: " + hec.message());
      auto op = refuse(head, std::move(r), 11, start, true);
      co_await std::move(op);
      co_return false;
    }

    const auto& req = head_parser.get();
    fill_head(head, req);
    identify_client(head, req);
    if (auto len = head_parser.content_length()) head.content_length = *len;
    const unsigned version = req.version();
    const route* rt = nullptr;
    bool close_after = false;
    if (auto refusal = admit(req, head, rt, close_after)) {
      // The body (if any) stays unread, and nothing after this head is: answer, then close.
      auto op = refuse(head, std::move(*refusal), version, start, !head_parser.is_done());
      co_await std::move(op);
      co_return false;
    }

    // Accepted so far: tell a client that waits for it to send the body, then read it.
    if (beast::iequals(req[bhttp::field::expect], "100-continue")) {
      bhttp::response<bhttp::empty_body> cont{bhttp::status::continue_, version};
      auto [cec, cn] = co_await bhttp::async_write(stream, cont, use_tuple);
      if (cec) co_return false;
    }
    bhttp::request_parser<detail::padded_body> body_parser(std::move(head_parser));
    body_parser.body_limit(st->opt.max_body_bytes);
    fill_head(head, body_parser.get());  // the parser that now owns the header
    auto read_body = read_message(stream, buffer, body_parser, false, st->opt.header_limit);
    const beast::error_code bec = co_await std::move(read_body);
    if (bec == bhttp::error::body_limit || bec == bhttp::error::buffer_overflow) {
      auto op = refuse(head, json_error(413, "payload_too_large", "the body is larger than the limit of " +
                                                                      std::to_string(st->opt.max_body_bytes) + " bytes"),
                       version, start, true);
      co_await std::move(op);
      co_return false;
    }
    if (bec == beast::error::timeout || bec == bhttp::error::partial_message || bec == asio::error::eof ||
        bec == asio::error::connection_reset || bec == asio::error::operation_aborted) {
      abandoned(head, bec, "body", start);  // nobody to answer: the client stalled or went away
      co_return false;
    }
    if (bec) {  // a malformed body (bad chunk framing, a bare LF, an endless chunk line, ...)
      const std::string why = bec == bhttp::error::bad_line_ending ? "a chunk line ends in a bare LF (HTTP needs CRLF)"
                              : bec == bhttp::error::header_limit  ? "a chunk line or trailer is longer than " +
                                                                        std::to_string(st->opt.header_limit) + " bytes"
                                                                   : bec.message();
      auto op = refuse(head, json_error(400, "bad_request", "malformed HTTP body: " + why), version, start, true);
      co_await std::move(op);
      co_return false;
    }

    const bool again = body_parser.get().keep_alive() && !close_after && !st->stopping;
    auto handled = call(*rt, head, std::move(body_parser.get().body()));
    const response r = co_await std::move(handled);
    auto op = respond(head, r, version, again, start);
    co_return co_await std::move(op);
  }
};

// A connection's coroutine. Cancellation (a stop, or the cap closing an idle connection) aborts
// the stream operation in progress; it does not throw, so the session ends the way a closed
// connection does.
template <class Protocol>
asio::awaitable<void> run_session(state_ptr st, task_group::task_ptr task, typename Protocol::socket socket) {
  co_await asio::this_coro::throw_if_cancelled(false);
  session<Protocol> s(std::move(st), std::move(task), std::move(socket));
  for (bool first = true;; first = false) {
    auto wait = s.wait_for_request(first);
    if (!co_await std::move(wait)) break;
    auto one = s.serve_one();
    if (!co_await std::move(one)) break;
  }
}

template <class Protocol, class Acceptor>
asio::awaitable<void> accept_loop(state_ptr st, Acceptor& acceptor) {
  for (;;) {
    if (st->stopping) co_return;
    if (st->sessions.size() >= st->opt.max_connections) {
      // At the cap, once a newcomer waits: make room by closing the longest-idle connection, or
      // (none idle) let it wait in the kernel's listen backlog until a connection ends.
      auto [wec] = co_await acceptor.async_wait(Acceptor::wait_read, use_tuple);
      if (st->stopping || wec == asio::error::operation_aborted) co_return;
      if (st->sessions.size() < st->opt.max_connections) continue;
      st->sessions.cancel_longest_idle(st->opt.on_closed_at_cap);
      // A busy connection that turns idle meanwhile is found on the next round.
      auto room = st->sessions.wait_fewer_than(st->opt.max_connections, clock::now() + std::chrono::seconds(1));
      co_await std::move(room);
      continue;
    }
    auto strand = asio::make_strand(st->ioc);  // not a temporary in the co_await (GCC 12)
    auto [ec, socket] = co_await acceptor.async_accept(strand, use_tuple);
    if (st->stopping || ec == asio::error::operation_aborted) co_return;
    if (ec) {
      // EMFILE and friends: back off instead of spinning.
      spdlog::warn("accept failed: {}", ec.message());
      asio::steady_timer pause(st->acceptor.get_executor(), std::chrono::milliseconds(100));
      co_await pause.async_wait(use_tuple);
      continue;
    }
    if constexpr (std::is_same_v<Protocol, tcp>) socket.set_option(tcp::no_delay(true), ec);
    auto ex = socket.get_executor();
    st->sessions.spawn(ex, [&](task_group::task_ptr t) { return run_session<Protocol>(st, std::move(t), std::move(socket)); });
  }
}

}  // namespace

server::server(asio::io_context& ioc, server_options options, std::vector<route> routes)
    : state_(std::make_shared<state>(ioc, std::move(options), std::move(routes))) {}

server::~server() = default;

outcome<tcp::endpoint> server::listen() {
  beast::error_code ec;
  if (!state_->opt.unix_path.empty()) {
    if (auto r = listen_unix(); !r) return r.error();
    return tcp::endpoint();
  }
  const auto addr = asio::ip::make_address(state_->opt.host, ec);
  if (ec) return make_failure(errc::invalid_config, state_->opt.listen_key + ": \"" + state_->opt.host + "\" is not an IP address");
  const tcp::endpoint ep(addr, state_->opt.port);
  const std::string where = state_->opt.host + ":" + std::to_string(state_->opt.port);
  auto& acc = state_->acceptor;
  if (acc.open(ep.protocol(), ec); ec) return make_failure(errc::io_error, "cannot open a socket for " + where + ": " + ec.message());
  acc.set_option(asio::socket_base::reuse_address(true), ec);
  if (acc.bind(ep, ec); ec) return make_failure(errc::io_error, "cannot listen on " + where + ": " + ec.message());
  if (acc.listen(asio::socket_base::max_listen_connections, ec); ec)
    return make_failure(errc::io_error, "cannot listen on " + where + ": " + ec.message());
  return acc.local_endpoint();
}

void server::start() {
  auto ex = state_->acceptor.get_executor();
  if (state_->opt.unix_path.empty() && !state_->adopted_unix) asio::co_spawn(ex, accept_loop<tcp>(state_, state_->acceptor), log_exception{"the accept loop"});
  else asio::co_spawn(ex, accept_loop<unix_socket>(state_, state_->unix_acceptor), log_exception{"the accept loop"});
}

namespace {

// The stop, on the acceptor's strand: no new connections, idle ones closed at once, in-flight
// requests given shutdown_timeout to finish (answered with Connection: close), the rest cancelled.
asio::awaitable<void> shut_down(state_ptr st) {
  beast::error_code ec;
  st->acceptor.close(ec);
  if (st->unix_acceptor.is_open()) {
    st->unix_acceptor.close(ec);
    if (!st->opt.unix_path.empty()) ::unlink(st->opt.unix_path.c_str());  // the socket file goes with the listener
  }
  st->sessions.cancel(asio::cancellation_type::terminal, true);
  auto drained = st->sessions.wait_empty(clock::now() + st->opt.shutdown_timeout);
  if (!co_await std::move(drained)) st->sessions.cancel(asio::cancellation_type::terminal);
}

}  // namespace

void server::stop() {
  if (state_->stopping.exchange(true)) return;
  asio::co_spawn(state_->acceptor.get_executor(), shut_down(state_), log_exception{"the HTTP server's stop"});
}

outcome<tcp::endpoint> server::adopt(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    return make_failure(errc::io_error, "socket activation: fd " + std::to_string(fd) + ": " + std::strerror(errno));
  beast::error_code ec;
  if (addr.ss_family == AF_UNIX) {
    state_->opt.unix_path.clear();  // systemd owns the socket file: never unlinked here
    state_->unix_acceptor.assign(unix_socket(), fd, ec);
    if (ec) return make_failure(errc::io_error, "socket activation: " + ec.message());
    state_->adopted_unix = true;
    return tcp::endpoint();
  }
  const tcp protocol = addr.ss_family == AF_INET6 ? tcp::v6() : tcp::v4();
  state_->acceptor.assign(protocol, fd, ec);
  if (ec) return make_failure(errc::io_error, "socket activation: " + ec.message());
  return state_->acceptor.local_endpoint(ec);
}

outcome<void> server::listen_unix() {
  const std::string& path = state_->opt.unix_path;
  const std::string where = "unix:" + path;
  beast::error_code ec;
  // A socket file left by a process that died: replaced. One that answers belongs to a live server.
  struct stat info {};
  if (::lstat(path.c_str(), &info) == 0) {
    if (!S_ISSOCK(info.st_mode)) return make_failure(errc::io_error, "cannot listen on " + where + ": the file exists and is not a socket");
    asio::io_context probe_ctx;
    unix_socket::socket probe(probe_ctx);
    if (probe.connect(unix_socket::endpoint(path), ec); !ec)
      return make_failure(errc::io_error, "cannot listen on " + where + ": another server is listening on it");
    ::unlink(path.c_str());
  }
  auto& acc = state_->unix_acceptor;
  const unix_socket::endpoint ep(path);
  if (acc.open(ep.protocol(), ec); ec) return make_failure(errc::io_error, "cannot open a socket for " + where + ": " + ec.message());
  if (acc.bind(ep, ec); ec) return make_failure(errc::io_error, "cannot listen on " + where + ": " + ec.message());
  if (::chmod(path.c_str(), state_->opt.unix_mode) != 0)
    return make_failure(errc::io_error, "cannot set the mode of " + where + ": " + std::string(std::strerror(errno)));
  if (acc.listen(asio::socket_base::max_listen_connections, ec); ec)
    return make_failure(errc::io_error, "cannot listen on " + where + ": " + ec.message());
  return {};
}

std::size_t server::active_connections() const { return state_->sessions.size(); }

connection_counts server::connections() const {
  const auto c = state_->sessions.count();
  connection_counts out;
  out.open = c.open;
  out.busy = c.busy;
  return out;
}

}  // namespace pipehook::http
