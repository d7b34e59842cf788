#include "pipehook/pipedrive/fields_service.hpp"

#include "pipehook/core/backoff.hpp"
#include "pipehook/core/spawn.hpp"
#include "pipehook/core/time.hpp"
#include "pipehook/core/use_tuple.hpp"
#include "pipehook/pipedrive/client.hpp"
#include "pipehook/store/fields.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include <map>
#include <pthread.h>
#include <set>
#include <thread>

namespace pipehook::pipedrive {

namespace asio = boost::asio;

namespace {
constexpr auto stale_floor = std::chrono::minutes(1);  // between refreshes asked for by unknown fields, per object
}  // namespace

struct fields_service::impl {
  asio::io_context ioc{1};
  std::unique_ptr<client> api;
  store::location where;
  std::chrono::milliseconds every{3'600'000};
  asio::steady_timer wake{ioc};
  std::set<std::string> wanted;                                        // on ioc: objects to fetch now
  std::map<std::string, std::chrono::steady_clock::time_point> last_stale;  // on ioc: the last refresh an unknown field asked for
  bool stopping = false;                                               // on ioc
  fields_service::observer saved;
  std::thread thread;
};

namespace {

// Fetches and stores one object's fields; false after a failure (logged).
asio::awaitable<bool> refresh(fields_service::impl* self, std::string object) {
  auto op = self->api->list_fields(object);
  auto r = co_await std::move(op);
  if (!r) {
    spdlog::warn("fields: cannot read the {} fields from Pipedrive: {}", object, r.error().message);
    co_return false;
  }
  std::vector<store::field_definition> defs;
  defs.reserve(r->size());
  for (const auto& f : *r) {
    store::field_definition d{f.key, f.name, f.field_type, {}};
    for (const auto& o : f.options) d.options.emplace(o.id, o.label);
    defs.push_back(std::move(d));
  }
  // The observer first (the router's names), then the cache: whoever reads the cache can count on
  // the router knowing the names too.
  if (self->saved) {
    store::field_map map;
    for (const auto& d : defs) map.emplace(d.key, d);
    self->saved(object, map);
  }
  if (auto saved = store::save_fields(self->where, object, defs, now_us()); !saved) {
    spdlog::warn("fields: cannot store the {} fields: {}", object, saved.error().message);
    co_return false;
  }
  spdlog::info("fields: {} {} field(s) cached", defs.size(), object);
  co_return true;
}

asio::awaitable<void> run_loop(fields_service::impl* self) {
  unsigned failures = 0;
  auto next_full = std::chrono::steady_clock::now();
  while (!self->stopping) {
    const auto now = std::chrono::steady_clock::now();
    std::vector<std::string> todo;
    if (now >= next_full) {
      todo.assign(std::begin(store::field_objects), std::end(store::field_objects));
      self->wanted.clear();
    } else {
      todo.assign(self->wanted.begin(), self->wanted.end());
      self->wanted.clear();
    }
    bool ok = true;
    for (const auto& o : todo) {
      if (self->stopping) co_return;
      auto op = refresh(self, o);
      ok = (co_await std::move(op)) && ok;
    }
    if (now >= next_full) {  // a full round: the next one after fields_refresh, or sooner after a failure
      failures = ok ? 0 : failures + 1;
      next_full = std::chrono::steady_clock::now() +
                  (ok ? self->every
                      : std::min<std::chrono::milliseconds>(self->every, std::chrono::duration_cast<std::chrono::milliseconds>(backoff_delay(
                                                                              failures, std::chrono::seconds(30), std::chrono::minutes(30)))));
    }
    if (!self->wanted.empty()) continue;
    self->wake.expires_at(next_full);
    auto w = self->wake.async_wait(use_tuple);
    co_await std::move(w);
  }
}

}  // namespace

fields_service::fields_service(std::shared_ptr<impl> p) : p_(std::move(p)) {}
fields_service::~fields_service() { stop(); }

outcome<std::unique_ptr<fields_service>> fields_service::create(const config::config& c, const store::location& where) {
  if (auto ready = config::check_pipedrive_ready(c); !ready) return ready.error();
  auto p = std::make_shared<impl>();
  auto api = client::create(p->ioc.get_executor(), c.pipedrive);
  if (!api) return api.error();
  p->api = std::move(*api);
  p->where = where;
  p->every = std::chrono::milliseconds(c.pipedrive.fields_refresh_ms);
  return std::unique_ptr<fields_service>(new fields_service(std::move(p)));
}

void fields_service::set_observer(observer o) { p_->saved = std::move(o); }

void fields_service::start() {
  asio::co_spawn(p_->ioc, run_loop(p_.get()), log_exception{"the field definitions' refresh"});
  p_->thread = std::thread([p = p_.get()] {
    pthread_setname_np(pthread_self(), "ph-fields");
    p->ioc.run();
  });
}

void fields_service::stale(const std::string& object) {
  asio::post(p_->ioc, [p = p_.get(), object] {
    if (p->stopping) return;
    // At once the first time; then at most once a minute per object (an unknown key that stays
    // unknown, a field Pipedrive does not list, must not cost a request per page view).
    const auto now = std::chrono::steady_clock::now();
    const auto it = p->last_stale.find(object);
    if (it != p->last_stale.end() && now - it->second < stale_floor) return;
    p->last_stale[object] = now;
    p->wanted.insert(object);
    p->wake.cancel();
  });
}

void fields_service::stop() {
  if (!p_ || !p_->thread.joinable()) return;
  asio::post(p_->ioc, [p = p_.get()] {
    p->stopping = true;
    p->wake.cancel();
    p->api->cancel();
  });
  p_->thread.join();
}

}  // namespace pipehook::pipedrive
