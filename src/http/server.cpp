#include "pipehook/http/server.hpp"

#include "padded_body.hpp"
#include "pipehook/core/use_tuple.hpp"
#include "pipehook/http/proxy.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/optional/optional.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
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
#include <list>
#include <mutex>

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

namespace {

// A connection as the shutdown code sees it; touched only on the connection's own executor.
struct connection {
  asio::any_io_executor ex;       // the connection's strand (immutable)
  std::function<void()> cancel;   // cancels the stream's operations; empty once the session ended
  bool idle = false;              // waiting for the next request (safe to close)
};

}  // namespace

struct server::state : std::enable_shared_from_this<server::state> {
  asio::io_context& ioc;
  server_options opt;
  std::vector<route> routes;
  tcp::acceptor acceptor;
  unix_socket::acceptor unix_acceptor;  // instead of `acceptor` when opt.unix_path is set (or adopted)
  bool adopted_unix = false;            // a Unix socket passed by systemd
  asio::steady_timer slot_freed;       // wakes the accept loop when a connection ends at the cap
  asio::steady_timer shutdown_deadline;  // on the acceptor's strand, like slot_freed
  std::atomic<bool> stopping{false};
  std::atomic<std::size_t> active{0};
  std::mutex mu;
  std::list<std::shared_ptr<connection>> connections;

  state(asio::io_context& c, server_options o, std::vector<route> r)
      : ioc(c),
        opt(std::move(o)),
        routes(std::move(r)),
        acceptor(asio::make_strand(c)),
        unix_acceptor(acceptor.get_executor()),
        slot_freed(acceptor.get_executor()),
        shutdown_deadline(acceptor.get_executor()) {}

  void report(const request_head& head, const response& res, std::chrono::steady_clock::time_point start) {
    if (opt.on_response)
      opt.on_response(head, res, std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start));
  }
};

namespace {

using state_ptr = std::shared_ptr<server::state>;

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

// Points the head's views at a parsed message's header (valid while that message lives).
template <class Message>
void fill_head(request_head& head, const Message& m) {
  head.method = m.method_string();
  head.target = m.target();
  head.path = head.target.substr(0, head.target.find('?'));
  head.content_type = m[bhttp::field::content_type];
  head.authorization = m[bhttp::field::authorization];
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
// still sends for a moment, so that it sees our answer instead of a connection reset.
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

// Answers a request that will not be served further, then closes the connection; the body, if
// the client is still sending one, is drained for a moment so that it sees the answer.
// (Callers build the awaitable in a statement of its own: GCC 12 destroys class temporaries of a
// co_await full-expression twice.)
template <class Stream>
asio::awaitable<void> refuse(Stream& stream, server::state& st, request_head head, response r,
                             unsigned version, std::chrono::steady_clock::time_point start, bool drain) {
  auto res = to_beast(r, version, false, head.method == "HEAD");
  auto [ec, n] = co_await bhttp::async_write(stream, res, use_tuple);
  st.report(head, r, start);
  if (!ec && drain) co_await lingering_close(stream, st.opt.max_body_bytes);
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

template <class Protocol>
asio::awaitable<void> run_session(state_ptr st, typename Protocol::socket socket) {
  beast::basic_stream<Protocol> stream(std::move(socket));
  auto conn = std::make_shared<connection>();
  conn->ex = stream.get_executor();
  conn->cancel = [&stream] { stream.cancel(); };
  std::list<std::shared_ptr<connection>>::iterator self;
  {
    std::lock_guard lk(st->mu);
    self = st->connections.insert(st->connections.end(), conn);
  }
  const auto [peer_ip, remote] = peer_of(stream);
  const std::string peer_text = peer_ip ? peer_ip->to_string() : remote;  // "unix" for a Unix-socket peer
  beast::flat_buffer buffer;

  for (;;) {
    // Between requests: wait for the first bytes of the next one, at most idle_timeout.
    if (buffer.size() == 0) {
      if (st->stopping) break;
      conn->idle = true;
      stream.expires_after(st->opt.idle_timeout);
      auto [ec, n] = co_await stream.async_read_some(buffer.prepare(4096), use_tuple);
      conn->idle = false;
      if (ec) break;  // closed by the client, idle timeout, or shutdown
      buffer.commit(n);
    }

    // A request has begun: all of it must arrive within read_timeout.
    const auto start = std::chrono::steady_clock::now();
    stream.expires_after(st->opt.read_timeout);
    bhttp::request_parser<bhttp::empty_body> head_parser;
    head_parser.header_limit(st->opt.header_limit);
    head_parser.body_limit(boost::none);  // an oversized Content-Length is answered 413 below, not a parse error
    auto [hec, hn] = co_await bhttp::async_read_header(stream, buffer, head_parser, use_tuple);
    request_head head;
    head.remote = remote;
    head.client = peer_text;
    if (hec) {
      if (hec == beast::error::timeout || hec == asio::error::operation_aborted || hec == bhttp::error::end_of_stream ||
          hec == asio::error::eof || hec == asio::error::connection_reset) {
        response r;
        r.status = 0;
        r.outcome = hec == beast::error::timeout ? "read_timeout" : "client_gone";
        r.note = "while reading the request head: " + hec.message();
        st->report(head, r, start);
        break;
      }
      const bool too_big = hec == bhttp::error::header_limit;
      response r = json_error(too_big ? 431 : 400, too_big ? "headers_too_large" : "bad_request",
                              too_big ? "the request head is larger than " + std::to_string(st->opt.header_limit) + " bytes"
                                      : "malformed HTTP request: " + hec.message());
      auto op = refuse(stream, *st, head, std::move(r), 11, start, true);
      co_await std::move(op);
      break;
    }

    const auto& req = head_parser.get();
    fill_head(head, req);
    if ((!st->opt.trusted_proxies.empty() && peer_ip) || (!peer_ip && st->opt.trust_unix_peers)) {
      auto joined = [&req](std::string_view name) {  // a header sent several times is one list
        std::string v;
        for (auto [it, end] = req.equal_range(name); it != end; ++it) v += (v.empty() ? "" : ",") + std::string(it->value());
        return v;
      };
      const client_address c =
          peer_ip ? resolve_client(*peer_ip, joined("Forwarded"), joined("X-Forwarded-For"), joined("X-Forwarded-Proto"),
                                   st->opt.trusted_proxies)
                  : resolve_forwarded(joined("Forwarded"), joined("X-Forwarded-For"), joined("X-Forwarded-Proto"),
                                      st->opt.trusted_proxies);
      if (c.forwarded) {
        head.client = c.address;
        head.proto = c.proto;
        head.remote = c.address + " via " + remote;
      }
    }
    if (auto len = head_parser.content_length()) head.content_length = *len;
    const unsigned version = req.version();

    // Checks on the head alone, in the documented order: 404, 405, 413, then the route's own.
    std::optional<response> refusal;
    std::string allow;
    const route* rt = find_route(*st, head.path, head.method, allow);
    if (!rt && allow.empty()) {
      refusal = json_error(404, "not_found", "no resource at " + std::string(head.path));
    } else if (!rt) {
      refusal = json_error(405, "method_not_allowed", std::string(head.method) + " is not allowed on " +
                                                         std::string(head.path) + " (allowed: " + allow + ")");
      refusal->headers.emplace_back("Allow", allow);
    } else if (head.content_length && *head.content_length > st->opt.max_body_bytes) {
      refusal = json_error(413, "payload_too_large", "the body is " + std::to_string(*head.content_length) +
                                                         " bytes; the limit is " + std::to_string(st->opt.max_body_bytes));
    } else if (rt->check) {
      refusal = rt->check(head);
    }
    if (refusal) {
      // The body (if any) stays unread: answer, then close the connection.
      auto op = refuse(stream, *st, head, std::move(*refusal), version, start, !head_parser.is_done());
      co_await std::move(op);
      break;
    }

    // Accepted so far: tell a client that waits for it to send the body, then read it.
    if (beast::iequals(req[bhttp::field::expect], "100-continue")) {
      bhttp::response<bhttp::empty_body> cont{bhttp::status::continue_, version};
      auto [cec, cn] = co_await bhttp::async_write(stream, cont, use_tuple);
      if (cec) break;
    }
    bhttp::request_parser<detail::padded_body> body_parser(std::move(head_parser));
    body_parser.body_limit(st->opt.max_body_bytes);
    fill_head(head, body_parser.get());  // the parser that now owns the header
    auto [bec, bn] = co_await bhttp::async_read(stream, buffer, body_parser, use_tuple);
    if (bec == bhttp::error::body_limit || bec == bhttp::error::buffer_overflow) {
      response r = json_error(413, "payload_too_large",
                              "the body is larger than the limit of " + std::to_string(st->opt.max_body_bytes) + " bytes");
      auto op = refuse(stream, *st, head, std::move(r), version, start, true);
      co_await std::move(op);
      break;
    }
    if (bec == beast::error::timeout || bec == bhttp::error::partial_message || bec == asio::error::eof ||
        bec == asio::error::connection_reset || bec == asio::error::operation_aborted) {
      response r;  // nobody to answer: the client stalled or went away
      r.status = 0;
      r.outcome = bec == beast::error::timeout ? "read_timeout" : "client_gone";
      r.note = "while reading the body: " + bec.message();
      st->report(head, r, start);
      break;
    }
    if (bec) {  // a malformed body (bad chunk framing, ...)
      auto op = refuse(stream, *st, head, json_error(400, "bad_request", "malformed HTTP body: " + bec.message()), version,
                       start, true);
      co_await std::move(op);
      break;
    }

    const bool keep_alive = body_parser.get().keep_alive();

    response r;
    if (rt->handle) {
      try {
        // Built in its own statement: GCC 12 destroys class temporaries of a co_await expression twice.
        auto op = rt->handle(head, std::move(body_parser.get().body()));
        r = co_await std::move(op);
      } catch (const std::exception& e) {
        // Last-resort safety net: a bug must not take the connection's peers down with it.
        spdlog::error("handler for {} {} threw: {}", head.method, head.path, e.what());
        r = json_error(500, "internal_error", "the request could not be processed; see the server log");
      }
    } else {
      r = json_error(500, "internal_error", "no handler");
    }
    const bool again = keep_alive && !st->stopping;
    if (r.stream) {
      auto op = write_streamed(stream, r, version, again, head.method == "HEAD", st->opt.read_timeout);
      const bool ok = co_await std::move(op);
      st->report(head, r, start);
      if (!ok || !again) break;
      continue;
    }
    auto res = to_beast(r, version, again, head.method == "HEAD");
    stream.expires_after(st->opt.read_timeout);
    auto [wec, wn] = co_await bhttp::async_write(stream, res, use_tuple);
    st->report(head, r, start);
    if (wec || !again) break;
  }

  beast::error_code ec;
  stream.socket().shutdown(asio::socket_base::shutdown_send, ec);
  stream.close();
  conn->cancel = nullptr;
  {
    std::lock_guard lk(st->mu);
    st->connections.erase(self);
  }
  const std::size_t before = st->active.fetch_sub(1);
  if (before == st->opt.max_connections) asio::post(st->slot_freed.get_executor(), [st] { st->slot_freed.cancel(); });
  // The last connection gone during shutdown: nothing left for the deadline to close.
  if (st->stopping)
    asio::post(st->shutdown_deadline.get_executor(), [st] {
      if (st->active.load() == 0) st->shutdown_deadline.cancel();
    });
}

template <class Protocol, class Acceptor>
asio::awaitable<void> accept_loop(state_ptr st, Acceptor& acceptor) {
  for (;;) {
    if (st->stopping) co_return;
    if (st->active.load() >= st->opt.max_connections) {
      // At the cap: further clients wait in the kernel's listen backlog until a connection ends.
      st->slot_freed.expires_after(std::chrono::seconds(1));
      co_await st->slot_freed.async_wait(use_tuple);
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
    st->active.fetch_add(1);
    auto ex = socket.get_executor();
    asio::co_spawn(ex, run_session<Protocol>(st, std::move(socket)), asio::detached);
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
  if (ec) return make_failure(errc::invalid_config, "server.listen: \"" + state_->opt.host + "\" is not an IP address");
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
  if (state_->opt.unix_path.empty() && !state_->adopted_unix) asio::co_spawn(ex, accept_loop<tcp>(state_, state_->acceptor), asio::detached);
  else asio::co_spawn(ex, accept_loop<unix_socket>(state_, state_->unix_acceptor), asio::detached);
}

void server::stop() {
  auto st = state_;
  if (st->stopping.exchange(true)) return;
  asio::post(st->acceptor.get_executor(), [st] {
    beast::error_code ec;
    st->acceptor.close(ec);
    if (st->unix_acceptor.is_open()) {
      st->unix_acceptor.close(ec);
      if (!st->opt.unix_path.empty()) ::unlink(st->opt.unix_path.c_str());  // the socket file goes with the listener
    }
    st->slot_freed.cancel();
  });
  std::vector<std::shared_ptr<connection>> conns;
  {
    std::lock_guard lk(st->mu);
    conns.assign(st->connections.begin(), st->connections.end());
  }
  for (auto& c : conns) {
    // Runs on the connection's executor, where `idle` and `stream` are consistent.
    asio::post(c->ex, [c] {
      if (c->cancel && c->idle) c->cancel();
    });
  }
  // In-flight requests get shutdown_timeout to finish; then whatever is left is closed. Armed on
  // the strand where session ends cancel it, so an already empty server does not wait for it.
  asio::post(st->shutdown_deadline.get_executor(), [st] {
    if (st->active.load() == 0) return;
    st->shutdown_deadline.expires_after(st->opt.shutdown_timeout);
    st->shutdown_deadline.async_wait([st](beast::error_code ec) {
      if (ec) return;
      std::lock_guard lk(st->mu);
      for (auto& c : st->connections) {
        asio::post(c->ex, [c] {
          if (c->cancel) c->cancel();
        });
      }
    });
  });
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

std::size_t server::active_connections() const { return state_->active.load(); }

}  // namespace pipehook::http
