// `rabbitmq`: publishes each event to a RabbitMQ exchange over AMQP 0-9-1 (rabbitmq-c), with a
// routing key built from a template (default "{entity}.{action}"), as a persistent message
// (delivery_mode 2) whose message_id is the event key and whose headers carry entity, action and
// ids. The channel is in confirm mode: a delivery is done only when the broker confirms it
// (basic.ack); a nack, a return (mandatory: no queue took it) or a connection lost before the
// confirm is a retry. One connection per handler, driven by a thread of its own that pipelines
// the publishes of up to `concurrency` deliveries; it reconnects with backoff (0.5 s doubling to 10 s). Optionally it
// declares the exchange (and a queue bound to it) on connecting.
#include "handlers.hpp"

#include "pipehook/event/json.hpp"
#include "pipehook/core/use_tuple.hpp"

#include <amqp.h>
#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json/serialize.hpp>
#include <poll.h>
#include <pthread.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

namespace pipehook::handlers {
namespace {

namespace asio = boost::asio;
using clock = std::chrono::steady_clock;

struct rabbitmq_options {
  std::string url;          // amqp://user:password@host:port/vhost (amqps:// for TLS), secrets expanded
  std::string shown_url;    // the same without the password, for messages
  std::string exchange = "pipedrive";
  std::string routing_key = "{entity}.{action}";
  bool declare = false;
  std::string exchange_type = "topic";
  std::string queue;        // with declare: a durable queue bound to the exchange
  std::string bind_key = "#";
  bool mandatory = true;
  bool envelope = false;
  std::int64_t timeout_ms = 10'000;  // connect, and a publish's confirm
  std::string ca_file, client_cert, client_key;
};

// One delivery waiting for the broker, and the coroutine waiting for it.
struct waiter {
  explicit waiter(asio::any_io_executor ex) : ex(ex), timer(ex) { timer.expires_at(clock::time_point::max()); }
  asio::any_io_executor ex;
  asio::steady_timer timer;  // cancelled when `result` is set
  dispatch::delivery_result result = dispatch::delivery_result::retry("no answer");
};

struct publish_request {
  std::string routing_key, body, message_id, entity, action, entity_id, event_id;
  std::shared_ptr<waiter> w;
  clock::time_point deadline;
  bool returned = false;
  std::string return_text;
};

std::string reply_text(const amqp_rpc_reply_t& r, std::string_view what) {
  std::string out(what);
  switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
      return out + ": ok";
    case AMQP_RESPONSE_NONE:
      return out + ": no reply";
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
      return out + ": " + amqp_error_string2(r.library_error);
    case AMQP_RESPONSE_SERVER_EXCEPTION:
      if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
        const auto* m = static_cast<amqp_connection_close_t*>(r.reply.decoded);
        return out + ": the broker closed the connection: " + std::to_string(m->reply_code) + " " +
               std::string(static_cast<const char*>(m->reply_text.bytes), m->reply_text.len);
      }
      if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        const auto* m = static_cast<amqp_channel_close_t*>(r.reply.decoded);
        return out + ": the broker closed the channel: " + std::to_string(m->reply_code) + " " +
               std::string(static_cast<const char*>(m->reply_text.bytes), m->reply_text.len);
      }
      return out + ": the broker answered method " + std::to_string(r.reply.id);
  }
  return out;
}

amqp_bytes_t bytes(const std::string& s) { return {s.size(), const_cast<char*>(s.data())}; }

class rabbitmq_handler final : public dispatch::handler {
 public:
  rabbitmq_handler(rabbitmq_options o, asio::any_io_executor ex) : o_(std::move(o)), ex_(ex) {
    wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    thread_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "ph-rabbitmq");
      run();
    });
  }

  ~rabbitmq_handler() override {
    stop_ = true;
    wake();
    thread_.join();
    ::close(wake_fd_);
  }

  asio::awaitable<dispatch::delivery_result> deliver(const event::stored_event& se) override {
    auto w = std::make_shared<waiter>(ex_);
    publish_request r;
    r.routing_key = render_topic(o_.routing_key, se.ev);
    r.body = o_.envelope ? boost::json::serialize(event::to_json_envelope(se)) : se.ev.body;
    r.message_id = se.ev.event_key;
    r.entity = se.ev.entity;
    r.action = se.ev.action;
    r.entity_id = se.ev.entity_id;
    r.event_id = std::to_string(se.id);
    r.w = w;
    {
      std::lock_guard lk(mu_);
      incoming_.push_back(std::move(r));
    }
    wake();
    // Set and cancelled by the connection's thread (posted here: nothing runs before this wait).
    auto op = w->timer.async_wait(use_tuple);
    co_await std::move(op);
    co_return w->result;
  }

  void cancel() override {
    cancel_ = true;
    wake();
  }

 private:
  void wake() {
    const std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
  }

  static void finish(publish_request& r, dispatch::delivery_result result) {
    asio::post(r.w->ex, [w = r.w, result = std::move(result)]() mutable {
      w->result = std::move(result);
      w->timer.cancel();
    });
  }

  // The connection's thread: connect when there is something to publish, publish what comes in,
  // read the broker's confirms and returns, and settle each delivery.
  void run() {
    while (!stop_) {
      std::deque<publish_request> fresh;
      {
        std::lock_guard lk(mu_);
        fresh.swap(incoming_);
      }
      if (cancel_.exchange(false)) {
        for (auto& r : fresh) finish(r, dispatch::delivery_result::retry("cancelled at shutdown"));
        fresh.clear();
        broken("cancelled at shutdown");
      }
      if (!fresh.empty() && !conn_) {
        if (clock::now() < next_connect_) {
          const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(next_connect_ - clock::now()).count();
          for (auto& r : fresh)
            finish(r, dispatch::delivery_result::retry("not connected to " + o_.shown_url + " (" + last_error_ +
                                                       "); reconnecting in " + std::to_string(ms) + " ms"));
          fresh.clear();
        } else if (auto err = connect()) {
          last_error_ = *err;
          backoff_ = std::min<std::int64_t>(backoff_ ? backoff_ * 2 : 500, 10'000);
          next_connect_ = clock::now() + std::chrono::milliseconds(backoff_);
          spdlog::warn("rabbitmq {}: {}; reconnecting in {} ms", o_.shown_url, *err, backoff_);
          for (auto& r : fresh) finish(r, dispatch::delivery_result::retry(*err));
          fresh.clear();
        } else {
          backoff_ = 0;
        }
      }
      for (auto& r : fresh) publish(std::move(r));
      wait_and_read();
      if (conn_) expire();
    }
    for (auto& [tag, r] : outstanding_) finish(r, dispatch::delivery_result::retry("the handler stopped"));
    outstanding_.clear();
    close();
  }

  void publish(publish_request r) {
    if (!conn_) {
      finish(r, dispatch::delivery_result::retry("the connection to " + o_.shown_url + " was lost: " + last_error_));
      return;
    }
    amqp_basic_properties_t props{};
    props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG |
                   AMQP_BASIC_HEADERS_FLAG | AMQP_BASIC_TIMESTAMP_FLAG | AMQP_BASIC_APP_ID_FLAG;
    props.content_type = amqp_cstring_bytes("application/json");
    props.delivery_mode = AMQP_DELIVERY_PERSISTENT;
    props.message_id = bytes(r.message_id);
    props.timestamp = static_cast<std::uint64_t>(std::time(nullptr));
    props.app_id = amqp_cstring_bytes("pipehook");
    amqp_table_entry_t entries[4];
    const std::pair<const char*, const std::string*> hs[] = {
        {"pipehook-entity", &r.entity}, {"pipehook-action", &r.action}, {"pipehook-entity-id", &r.entity_id},
        {"pipehook-event-id", &r.event_id}};
    for (std::size_t i = 0; i < 4; ++i) {
      entries[i].key = amqp_cstring_bytes(hs[i].first);
      entries[i].value.kind = AMQP_FIELD_KIND_UTF8;
      entries[i].value.value.bytes = bytes(*hs[i].second);
    }
    props.headers.num_entries = 4;
    props.headers.entries = entries;
    const int rc = amqp_basic_publish(conn_, 1, bytes(o_.exchange), bytes(r.routing_key), o_.mandatory ? 1 : 0, 0, &props,
                                      bytes(r.body));
    if (rc != AMQP_STATUS_OK) {
      const std::string why = std::string("publishing to ") + o_.shown_url + " failed: " + amqp_error_string2(rc);
      finish(r, dispatch::delivery_result::retry(why));
      broken(why);
      return;
    }
    r.deadline = clock::now() + std::chrono::milliseconds(o_.timeout_ms);
    outstanding_.emplace(++next_tag_, std::move(r));
  }

  // Waits for the broker (when connected) or for new deliveries, whichever comes first; reads
  // every frame that arrived.
  void wait_and_read() {
    pollfd fds[2] = {{wake_fd_, POLLIN, 0}, {conn_ ? amqp_get_sockfd(conn_) : -1, POLLIN, 0}};
    const bool buffered = conn_ && (amqp_frames_enqueued(conn_) || amqp_data_in_buffer(conn_));
    // A short timeout while confirms are due (TLS may hold decrypted bytes the socket does not show).
    const int timeout_ms = buffered ? 0 : !outstanding_.empty() ? 50 : 1000;
    ::poll(fds, conn_ ? 2 : 1, timeout_ms);
    if (fds[0].revents & POLLIN) {
      std::uint64_t n;
      [[maybe_unused]] auto r = ::read(wake_fd_, &n, sizeof n);
    }
    if (!conn_ || (!buffered && !(fds[1].revents & (POLLIN | POLLHUP | POLLERR)) && outstanding_.empty())) return;
    for (;;) {
      amqp_frame_t frame;
      timeval zero{0, 0};
      amqp_maybe_release_buffers(conn_);
      const int rc = amqp_simple_wait_frame_noblock(conn_, &frame, &zero);
      if (rc == AMQP_STATUS_TIMEOUT) return;
      if (rc != AMQP_STATUS_OK) {
        broken(std::string("the connection to ") + o_.shown_url + " failed: " + amqp_error_string2(rc));
        return;
      }
      if (frame.frame_type != AMQP_FRAME_METHOD) continue;
      switch (frame.payload.method.id) {
        case AMQP_BASIC_ACK_METHOD: {
          const auto* ack = static_cast<amqp_basic_ack_t*>(frame.payload.method.decoded);
          settle(ack->delivery_tag, ack->multiple, true);
          break;
        }
        case AMQP_BASIC_NACK_METHOD: {
          const auto* nack = static_cast<amqp_basic_nack_t*>(frame.payload.method.decoded);
          settle(nack->delivery_tag, nack->multiple, false);
          break;
        }
        case AMQP_BASIC_RETURN_METHOD: {
          const auto* ret = static_cast<amqp_basic_return_t*>(frame.payload.method.decoded);
          const std::string text = std::to_string(ret->reply_code) + " " +
                                   std::string(static_cast<const char*>(ret->reply_text.bytes), ret->reply_text.len);
          amqp_message_t msg;
          const amqp_rpc_reply_t rr = amqp_read_message(conn_, frame.channel, &msg, 0);
          if (rr.reply_type != AMQP_RESPONSE_NORMAL) {
            broken(reply_text(rr, "reading a returned message"));
            return;
          }
          // The return comes before the confirm of the same message: the confirm then settles it as a retry.
          const std::string id = (msg.properties._flags & AMQP_BASIC_MESSAGE_ID_FLAG)
                                     ? std::string(static_cast<const char*>(msg.properties.message_id.bytes),
                                                   msg.properties.message_id.len)
                                     : std::string();
          for (auto& [tag, r] : outstanding_)
            if (r.message_id == id && !r.returned) {
              r.returned = true;
              r.return_text = text;
              break;
            }
          amqp_destroy_message(&msg);
          break;
        }
        case AMQP_CHANNEL_CLOSE_METHOD: {
          const auto* m = static_cast<amqp_channel_close_t*>(frame.payload.method.decoded);
          broken("the broker closed the channel: " + std::to_string(m->reply_code) + " " +
                 std::string(static_cast<const char*>(m->reply_text.bytes), m->reply_text.len));
          return;
        }
        case AMQP_CONNECTION_CLOSE_METHOD: {
          const auto* m = static_cast<amqp_connection_close_t*>(frame.payload.method.decoded);
          broken("the broker closed the connection: " + std::to_string(m->reply_code) + " " +
                 std::string(static_cast<const char*>(m->reply_text.bytes), m->reply_text.len));
          return;
        }
        default:
          break;
      }
    }
  }

  void settle(std::uint64_t tag, bool multiple, bool acked) {
    auto begin = multiple ? outstanding_.begin() : outstanding_.find(tag);
    if (begin == outstanding_.end()) return;
    auto end = multiple ? outstanding_.upper_bound(tag) : std::next(begin);
    for (auto it = begin; it != end; ++it) {
      publish_request& r = it->second;
      if (acked && !r.returned) {
        finish(r, dispatch::delivery_result::ok());
      } else if (r.returned) {
        finish(r, dispatch::delivery_result::retry("returned by " + o_.shown_url + " (" + r.return_text + "): exchange \"" +
                                                   o_.exchange + "\" routed \"" + r.routing_key + "\" to no queue"));
      } else {
        finish(r, dispatch::delivery_result::retry("the broker refused the message (basic.nack) on " + o_.shown_url));
      }
    }
    outstanding_.erase(begin, end);
  }

  // A publish unconfirmed past its deadline: the connection is not to be trusted; start over.
  void expire() {
    const auto now = clock::now();
    for (const auto& [tag, r] : outstanding_)
      if (r.deadline <= now) {
        broken("no confirm from " + o_.shown_url + " within " + std::to_string(o_.timeout_ms) + " ms");
        return;
      }
  }

  // Every unconfirmed delivery is a retry (it may or may not be in the broker: at least once).
  void broken(const std::string& why) {
    if (!conn_ && outstanding_.empty()) return;
    for (auto& [tag, r] : outstanding_) finish(r, dispatch::delivery_result::retry(why + "; not confirmed"));
    outstanding_.clear();
    if (conn_) spdlog::warn("rabbitmq {}: {}", o_.shown_url, why);
    last_error_ = why;
    close();
  }

  void close() {
    if (!conn_) return;
    amqp_destroy_connection(conn_);  // no goodbye: the socket may be gone
    conn_ = nullptr;
  }

  std::optional<std::string> connect() {
    std::string url = o_.url;
    amqp_connection_info info;
    if (amqp_parse_url(url.data(), &info) != AMQP_STATUS_OK) return "cannot parse " + o_.shown_url;
    conn_ = amqp_new_connection();
    amqp_socket_t* sock = info.ssl ? amqp_ssl_socket_new(conn_) : amqp_tcp_socket_new(conn_);
    if (!sock) {
      close();
      return std::string("cannot create a socket");
    }
    if (info.ssl) {
      if (!o_.ca_file.empty() && amqp_ssl_socket_set_cacert(sock, o_.ca_file.c_str()) != AMQP_STATUS_OK) {
        close();
        return "cannot read ca_file " + o_.ca_file;
      }
      if (!o_.client_cert.empty() &&
          amqp_ssl_socket_set_key(sock, o_.client_cert.c_str(), o_.client_key.c_str()) != AMQP_STATUS_OK) {
        close();
        return "cannot load client_cert " + o_.client_cert + " / client_key " + o_.client_key;
      }
      amqp_ssl_socket_set_verify_peer(sock, 1);
      amqp_ssl_socket_set_verify_hostname(sock, 1);
    }
    timeval tv{static_cast<time_t>(o_.timeout_ms / 1000), static_cast<suseconds_t>((o_.timeout_ms % 1000) * 1000)};
    if (const int rc = amqp_socket_open_noblock(sock, info.host, info.port, &tv); rc != AMQP_STATUS_OK) {
      close();
      return "cannot connect to " + o_.shown_url + ": " + amqp_error_string2(rc);
    }
    amqp_set_rpc_timeout(conn_, &tv);
    // "amqp://host/" parses as the vhost "" (the URI spec); nobody names a vhost so: it means "/".
    const char* vhost = info.vhost && *info.vhost ? info.vhost : "/";
    amqp_rpc_reply_t r = amqp_login(conn_, vhost, 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, info.user, info.password);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
      const std::string why = reply_text(r, "logging in to " + o_.shown_url);
      close();
      return why;
    }
    amqp_channel_open(conn_, 1);
    if (r = amqp_get_rpc_reply(conn_); r.reply_type != AMQP_RESPONSE_NORMAL) return fail_setup(reply_text(r, "opening a channel"));
    amqp_confirm_select(conn_, 1);
    if (r = amqp_get_rpc_reply(conn_); r.reply_type != AMQP_RESPONSE_NORMAL)
      return fail_setup(reply_text(r, "turning on publisher confirms"));
    if (o_.declare) {
      amqp_exchange_declare(conn_, 1, bytes(o_.exchange), bytes(o_.exchange_type), 0, 1, 0, 0, amqp_empty_table);
      if (r = amqp_get_rpc_reply(conn_); r.reply_type != AMQP_RESPONSE_NORMAL)
        return fail_setup(reply_text(r, "declaring exchange \"" + o_.exchange + "\""));
      if (!o_.queue.empty()) {
        amqp_queue_declare(conn_, 1, bytes(o_.queue), 0, 1, 0, 0, amqp_empty_table);
        if (r = amqp_get_rpc_reply(conn_); r.reply_type != AMQP_RESPONSE_NORMAL)
          return fail_setup(reply_text(r, "declaring queue \"" + o_.queue + "\""));
        amqp_queue_bind(conn_, 1, bytes(o_.queue), bytes(o_.exchange), bytes(o_.bind_key), amqp_empty_table);
        if (r = amqp_get_rpc_reply(conn_); r.reply_type != AMQP_RESPONSE_NORMAL)
          return fail_setup(reply_text(r, "binding queue \"" + o_.queue + "\""));
      }
    }
    next_tag_ = 0;  // delivery tags count from 1 on each new channel
    spdlog::info("rabbitmq {}: connected (publisher confirms on, exchange \"{}\")", o_.shown_url, o_.exchange);
    return std::nullopt;
  }

  std::string fail_setup(std::string why) {
    close();
    return why;
  }

  rabbitmq_options o_;
  asio::any_io_executor ex_;
  int wake_fd_ = -1;
  std::atomic<bool> stop_{false}, cancel_{false};
  std::mutex mu_;
  std::deque<publish_request> incoming_;  // under mu_
  // The connection's thread only:
  amqp_connection_state_t conn_ = nullptr;
  std::map<std::uint64_t, publish_request> outstanding_;  // delivery tag -> published, not confirmed
  std::uint64_t next_tag_ = 0;
  std::int64_t backoff_ = 0;
  clock::time_point next_connect_{};
  std::string last_error_;
  std::thread thread_;  // last: started once the rest is built
};

// "amqp://user:secret@host/" -> "amqp://user@host/"
std::string without_password(const std::string& url) {
  const auto scheme = url.find("://");
  const auto at = url.find('@', scheme == std::string::npos ? 0 : scheme + 3);
  if (scheme == std::string::npos || at == std::string::npos) return url;
  const auto colon = url.find(':', scheme + 3);
  if (colon == std::string::npos || colon > at) return url;
  return url.substr(0, colon) + url.substr(at);
}

outcome<std::unique_ptr<dispatch::handler>> make_rabbitmq(const config::handler_config&, dispatch::settings_reader& s,
                                                          asio::any_io_executor ex) {
  rabbitmq_options o;
  auto url = s.string("url", "amqp://guest:guest@127.0.0.1:5672/");
  if (!url) return url.error();
  auto expanded = dispatch::expand_env(*url, s.name("url"), config::process_env());
  if (!expanded) return expanded.error();
  o.url = *expanded;
  o.shown_url = without_password(*url);
  {
    std::string copy = o.url;
    amqp_connection_info info;
    if ((o.url.rfind("amqp://", 0) != 0 && o.url.rfind("amqps://", 0) != 0) || amqp_parse_url(copy.data(), &info) != AMQP_STATUS_OK)
      return make_failure(errc::invalid_config,
                          s.name("url") + " must be like amqp://user:password@host:5672/vhost (or amqps://) (got \"" + o.shown_url + "\")");
  }
  auto text = [&](const char* key, std::string& out) -> outcome<void> {
    auto v = s.string(key, out);
    if (!v) return v.error();
    out = *v;
    return {};
  };
  for (auto [key, out] : {std::pair<const char*, std::string*>{"exchange", &o.exchange}, {"routing_key", &o.routing_key},
                          {"queue", &o.queue}, {"bind_key", &o.bind_key}})
    if (auto r = text(key, *out); !r) return r.error();
  auto tls = s.tls();
  if (!tls) return tls.error();
  o.ca_file = tls->ca_file, o.client_cert = tls->client_cert, o.client_key = tls->client_key;
  if (auto ok = check_topic_template(o.routing_key, s.name("routing_key")); !ok) return ok.error();
  if (o.routing_key.size() > 255) return make_failure(errc::invalid_config, s.name("routing_key") + " is longer than 255 bytes");
  auto type = s.one_of("exchange_type", "topic", {"topic", "direct", "fanout", "headers"});
  if (!type) return type.error();
  o.exchange_type = *type;
  auto declare = s.boolean("declare", false);
  if (!declare) return declare.error();
  o.declare = *declare;
  if (!o.queue.empty() && !o.declare) return make_failure(errc::invalid_config, s.name("queue") + " needs " + s.name("declare") + " = true");
  if (o.declare && o.exchange.empty())
    return make_failure(errc::invalid_config, s.name("declare") + ": the default exchange (\"\") cannot be declared");
  auto mandatory = s.boolean("mandatory", true);
  if (!mandatory) return mandatory.error();
  o.mandatory = *mandatory;
  auto body = s.one_of("body", "original", {"original", "envelope"});
  if (!body) return body.error();
  o.envelope = *body == "envelope";
  auto timeout = s.duration_ms("timeout", 10'000, 100, 600'000);
  if (!timeout) return timeout.error();
  o.timeout_ms = *timeout;
  return std::make_unique<rabbitmq_handler>(std::move(o), ex);
}

}  // namespace

void register_rabbitmq() { dispatch::register_handler_type("rabbitmq", make_rabbitmq); }

}  // namespace pipehook::handlers
