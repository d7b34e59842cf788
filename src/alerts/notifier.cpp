#include "pipehook/alerts/notifier.hpp"

#include "pipehook/core/spawn.hpp"
#include "pipehook/core/time.hpp"
#include "pipehook/core/use_tuple.hpp"
#include "pipehook/http/client.hpp"
#include "pipehook/http/signing.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <spdlog/spdlog.h>

#include <atomic>
#include <deque>
#include <pthread.h>
#include <random>
#include <thread>

namespace pipehook::alerts {

namespace asio = boost::asio;

namespace {
constexpr std::size_t max_queued = 100;
constexpr std::chrono::milliseconds retry_delays[] = {std::chrono::seconds(1), std::chrono::seconds(5), std::chrono::seconds(25)};
}  // namespace

struct notifier::impl {
  config::alerts_config cfg;
  std::string replica;
  url target;
  std::string key;  // signing key bytes; empty: unsigned
  asio::io_context ioc{1};
  asio::executor_work_guard<asio::io_context::executor_type> work{ioc.get_executor()};
  std::unique_ptr<http::client_connection> conn;
  asio::steady_timer wake{ioc};
  asio::steady_timer grace_timer{ioc};  // the stop's deadline for what is being sent
  std::thread thread;
  // On ioc:
  std::deque<notice> queue;
  std::deque<std::chrono::steady_clock::time_point> sent_times;  // the last hour's, for max_per_hour
  std::uint64_t dropped_since_sent = 0;
  bool stopping = false;  // nothing more is sent
  bool closing = false;   // stop() was called: the queue is sent until grace_timer
  bool running = false;
  std::mt19937_64 rng{std::random_device{}()};
  std::atomic<std::uint64_t> sent{0}, failed{0}, dropped{0};

  std::string body_of(const notice& n, const std::string& id) const {
    boost::json::object details;
    for (const auto& [k, v] : n.details) details[k] = v;
    boost::json::object o{{"id", id},
                          {"type", n.type},
                          {"subject", n.subject},
                          {"message", n.message},
                          {"at", format_rfc3339_us(now_us())},
                          {"replica", replica},
                          {"details", std::move(details)},
                          {"dropped_before", dropped_since_sent}};
    return boost::json::serialize(o);
  }

  // One notice, with retries. True when the url took it.
  asio::awaitable<bool> post(const notice& n) {
    char id[24];
    std::snprintf(id, sizeof id, "alert_%016llx", static_cast<unsigned long long>(rng()));
    const std::string body = body_of(n, id);
    for (std::uint32_t attempt = 1;; ++attempt) {
      http::client_request req;
      req.method = "POST";
      req.target = target.path.empty() ? "/" : target.path;
      req.idempotent = false;
      req.body = body;
      const std::string ts = std::to_string(now_us() / 1'000'000);
      req.headers = {{"Content-Type", "application/json"}, {"webhook-id", id}, {"webhook-timestamp", ts}};
      if (!key.empty()) req.headers.emplace_back("webhook-signature", http::webhook_signature(key, id, ts, body));
      auto op = conn->request(std::move(req));
      auto r = co_await std::move(op);
      std::string why;
      bool retry = true;
      if (r && r->status >= 200 && r->status < 300) co_return true;
      if (!r) {
        if (r.error().kind == http::client_errc::cancelled) co_return false;
        why = r.error().message;
      } else {
        why = "HTTP " + std::to_string(r->status) + ": " + http::snippet(r->body, 120);
        retry = r->status == 408 || r->status == 429 || r->status >= 500;
      }
      if (!retry || attempt >= cfg.max_attempts || stopping) {
        spdlog::warn("alerts: {} about {} not delivered to {} after {} attempt(s): {}", n.type, n.subject, target.authority(),
                     attempt, why);
        co_return false;
      }
      wake.expires_after(retry_delays[std::min<std::size_t>(attempt - 1, std::size(retry_delays) - 1)]);
      auto w = wake.async_wait(use_tuple);
      co_await std::move(w);
      if (stopping) co_return false;
    }
  }

  asio::awaitable<void> run() {
    running = true;
    while (!queue.empty()) {
      notice n = std::move(queue.front());
      queue.pop_front();
      const auto now = std::chrono::steady_clock::now();
      while (!sent_times.empty() && now - sent_times.front() > std::chrono::hours(1)) sent_times.pop_front();
      if (sent_times.size() >= cfg.max_per_hour) {
        ++dropped, ++dropped_since_sent;
        spdlog::warn("alerts: {} about {} dropped: max_per_hour ({}) reached", n.type, n.subject, cfg.max_per_hour);
        continue;
      }
      sent_times.push_back(now);
      auto op = post(n);
      if (co_await std::move(op)) {
        ++sent;
        dropped_since_sent = 0;
      } else {
        ++failed;
      }
    }
    running = false;
    if (closing) grace_timer.cancel();  // all sent before the deadline: the thread ends now
  }
};

notifier::notifier(std::unique_ptr<impl> p) : p_(std::move(p)) {}

notifier::~notifier() {
  stop(std::chrono::milliseconds(0));
  if (p_->thread.joinable()) p_->thread.join();
}

outcome<std::unique_ptr<notifier>> notifier::create(const config::alerts_config& c, std::string replica) {
  auto p = std::make_unique<impl>();
  p->cfg = c;
  p->replica = std::move(replica);
  if (!c.url.empty()) {
    auto u = parse_url(c.url, "alerts.url", true);
    if (!u) return u.error();
    p->target = *u;
    if (!c.signing_secret.empty()) {
      auto k = http::signing_key(c.signing_secret, "alerts.signing_secret");
      if (!k) return k.error();
      p->key = *k;
    }
    auto tls = http::make_tls_settings(c.ca_file, "alerts.ca_file");
    if (!tls) return tls.error();
    http::client_options co;
    co.timeout_ms = c.timeout_ms;
    co.connect_timeout_ms = std::min<std::int64_t>(c.timeout_ms, 5'000);
    p->conn = std::make_unique<http::client_connection>(p->ioc.get_executor(), p->target, co, std::move(*tls));
    p->thread = std::thread([raw = p.get()] {
      pthread_setname_np(pthread_self(), "ph-alerts");
      raw->ioc.run();
    });
  }
  return std::unique_ptr<notifier>(new notifier(std::move(p)));
}

void notifier::send(notice n) {
  std::string extra;
  for (const auto& [k, v] : n.details) extra += " " + k + "=" + v;
  spdlog::warn("alert {} ({}): {}{}", n.type, n.subject, n.message, extra);
  if (!p_->conn) return;
  asio::post(p_->ioc, [p = p_.get(), n = std::move(n)]() mutable {
    if (p->closing) return;
    if (p->queue.size() >= max_queued) {
      ++p->dropped, ++p->dropped_since_sent;
      return;
    }
    p->queue.push_back(std::move(n));
    if (!p->running) asio::co_spawn(p->ioc, p->run(), log_exception{"the alerts sender"});
  });
}

void notifier::stop(std::chrono::milliseconds grace) {
  if (!p_->conn) return;
  asio::post(p_->ioc, [p = p_.get(), grace] {
    if (p->closing) return;
    p->closing = true;
    p->work.reset();
    if (!p->running) {
      p->stopping = true;
      return;
    }
    // What is being sent gets `grace`; then the rest is dropped.
    p->grace_timer.expires_after(grace);
    p->grace_timer.async_wait([p](boost::system::error_code ec) {
      if (ec) return;  // everything was sent first
      p->stopping = true;
      p->dropped += p->queue.size();
      if (!p->queue.empty()) spdlog::warn("alerts: {} notice(s) not sent at the stop", p->queue.size());
      p->queue.clear();
      p->wake.cancel();
      p->conn->cancel();
    });
  });
  if (grace.count() > 0 && p_->thread.joinable()) p_->thread.join();
}

notifier::counters notifier::stats() const { return {p_->sent.load(), p_->failed.load(), p_->dropped.load()}; }

}  // namespace pipehook::alerts
