#include "fake_pipedrive.hpp"

#include <boost/json.hpp>

#include <algorithm>
#include <thread>
#include <tuple>

namespace pipehook::test {

namespace json = boost::json;

namespace {

json::object webhook_json(const fake_webhook& w, std::int64_t company_id) {
  json::object o;
  o["id"] = w.id;
  o["company_id"] = company_id;
  o["owner_id"] = w.user_id;
  o["user_id"] = w.user_id;
  o["event_action"] = w.event_action;
  o["event_object"] = w.event_object;
  o["subscription_url"] = w.subscription_url;
  o["version"] = w.version;
  o["is_active"] = w.is_active ? 1 : 0;
  o["add_time"] = "2024-05-01T10:00:00.000Z";
  o["remove_time"] = nullptr;
  o["type"] = "general";
  if (w.http_auth_user.empty()) o["http_auth_user"] = nullptr;
  else o["http_auth_user"] = w.http_auth_user;
  // The spec lists the password among the webhook's fields.
  if (w.http_auth_password.empty()) o["http_auth_password"] = nullptr;
  else o["http_auth_password"] = w.http_auth_password;
  o["remove_reason"] = nullptr;
  o["last_delivery_time"] = nullptr;
  o["last_http_status"] = nullptr;
  o["admin_id"] = w.user_id;
  o["name"] = w.name;
  return o;
}

std::string bad_request(const std::string& field, const std::string& message) {
  json::object errors;
  errors[field] = json::array{json::value(message)};
  return json::serialize(json::object{{"status", "error"}, {"success", false}, {"errors", errors}});
}

std::string generic_error(const std::string& message) {
  return json::serialize(json::object{{"success", false},
                                      {"error", message},
                                      {"error_info", "Please check developers.pipedrive.com"},
                                      {"data", nullptr},
                                      {"additional_data", nullptr}});
}

}  // namespace

struct fake_pipedrive::impl {
  std::string token;
  std::string prefix;
  mutable std::mutex mu;
  static constexpr std::int64_t user_id = fake_pipedrive::user_id;
  static constexpr std::int64_t company_id = fake_pipedrive::company_id;
  std::int64_t next_id = 1;
  std::map<std::int64_t, fake_webhook> hooks;
  std::vector<fake_request> log;
  std::deque<fake_fault> faults;
  std::map<std::string, std::vector<fake_field>> fields;  // by object
  std::map<std::pair<std::string, std::int64_t>, json::object> records;  // (item, id) -> data, for /recents

  using answer = canned_response;

  // The API itself, as the spec describes it.
  answer respond(const std::string& method, const std::string& path, const fake_request& req) {
    std::lock_guard lk(mu);
    const bool authorized = (!req.api_token.empty() && req.api_token == token) || req.authorization == "Bearer " + token;
    if (!authorized)
      return {401, json::serialize(json::object{{"success", false}, {"error", "unauthorized access"}, {"errorCode", 401}})};
    if (method == "GET" && path == "/users/me") {
      json::object data{{"id", user_id},
                        {"name", "Test Admin"},
                        {"email", "admin@example.com"},
                        {"access", json::array{json::object{{"app", "global"}, {"admin", true}}}},
                        {"company_id", company_id},
                        {"company_name", "Example Ltd"},
                        {"company_domain", "example-ltd"}};
      return {200, json::serialize(json::object{{"success", true}, {"data", data}})};
    }
    if (method == "GET" && path.size() > 1 && path.find("Fields") != std::string::npos) {
      // /dealFields?start=0&limit=500: a page of the object's fields, and whether more follow.
      const std::string route = path.substr(0, path.find('?'));
      const std::string object = route.substr(1, route.size() - 1 - std::string("Fields").size());
      auto it = fields.find(object);
      if (route.size() < 8 || route.substr(route.size() - 6) != "Fields" || it == fields.end())
        return {404, generic_error("Unknown method .")};
      auto query_int = [&](const std::string& name, std::int64_t fallback) {
        const auto at = path.find(name + "=");
        return at == std::string::npos ? fallback : std::stoll(path.substr(at + name.size() + 1));
      };
      const auto& all = it->second;
      const std::int64_t start = query_int("start", 0), limit = query_int("limit", 100);
      json::array data;
      for (std::int64_t i = start; i < static_cast<std::int64_t>(all.size()) && i < start + limit; ++i) {
        const auto& f = all[static_cast<std::size_t>(i)];
        json::value options = nullptr;
        if (!f.options.empty()) {
          json::array opts;
          for (const auto& [id, label] : f.options) opts.push_back(json::object{{"id", id}, {"label", label}});
          options = std::move(opts);
        }
        data.push_back(json::object{{"id", i + 1}, {"key", f.key}, {"name", f.name}, {"field_type", f.field_type},
                                    {"edit_flag", f.custom}, {"options", options}});
      }
      const bool more = start + limit < static_cast<std::int64_t>(all.size());
      json::object pagination{{"start", start}, {"limit", limit}, {"more_items_in_collection", more}};
      if (more) pagination["next_start"] = start + limit;
      return {200, json::serialize(json::object{{"success", true}, {"data", data},
                                                {"additional_data", json::object{{"pagination", pagination}}}})};
    }
    if (method == "GET" && path.rfind("/recents", 0) == 0 && (path.size() == 8 || path[8] == '?')) return recents(path);
    if (method == "GET" && path == "/webhooks") {
      json::array data;
      for (const auto& [id, w] : hooks) data.push_back(webhook_json(w, company_id));
      return {200, json::serialize(json::object{{"status", "ok"}, {"success", true}, {"data", data}})};
    }
    if (method == "POST" && path == "/webhooks") {
      if (req.content_type.find("application/json") == std::string::npos)
        return {400, bad_request("body", "expected application/json")};
      json::error_code ec;
      json::value v = json::parse(req.body, ec);
      if (ec || !v.is_object()) return {400, bad_request("body", "invalid JSON")};
      const json::object& o = v.as_object();
      auto str = [&](const char* k) -> std::optional<std::string> {
        auto* p = o.if_contains(k);
        if (!p || !p->is_string()) return std::nullopt;
        return std::string(p->as_string());
      };
      for (const char* required : {"subscription_url", "event_action", "event_object", "name"})
        if (!str(required)) return {400, bad_request(required, "is required")};
      const std::string action = *str("event_action"), object = *str("event_object");
      if (action != "create" && action != "change" && action != "delete" && action != "*")
        return {400, bad_request("event_action", "invalid value")};
      // The spec's enum for POST /webhooks, plus activityType for v1 (the spec's own examples and
      // Pipedrive's list of v1 webhooks have it; the enum lacks it). Anything else: 400.
      static const std::vector<std::string> objects{"activity", "deal",    "lead",  "note", "organization", "person",
                                                    "pipeline", "product", "stage", "user", "*"};
      const std::string version = str("version").value_or("2.0");
      if (version != "1.0" && version != "2.0") return {400, bad_request("version", "invalid value")};
      if (std::find(objects.begin(), objects.end(), object) == objects.end() && !(object == "activityType" && version == "1.0"))
        return {400, bad_request("event_object", "invalid value")};
      if (str("subscription_url")->rfind("http", 0) != 0)
        return {400, bad_request("subscription_url", "invalid or non-reachable URL")};
      fake_webhook w;
      w.user_id = user_id;
      if (auto* u = o.if_contains("user_id")) {
        if (!u->is_int64()) return {400, bad_request("user_id", "must be an integer")};
        w.user_id = u->as_int64();
      }
      std::size_t owned = 0;
      for (const auto& [id, h] : hooks) owned += h.user_id == w.user_id;
      if (owned >= 40) return {422, generic_error("Webhooks limit reached")};
      w.id = next_id++;
      w.event_action = action;
      w.event_object = object;
      w.subscription_url = *str("subscription_url");
      w.version = version;
      w.name = *str("name");
      w.http_auth_user = str("http_auth_user").value_or("");
      w.http_auth_password = str("http_auth_password").value_or("");
      hooks[w.id] = w;
      return {201, json::serialize(
                       json::object{{"status", "ok"}, {"success", true}, {"data", webhook_json(w, company_id)}})};
    }
    if (method == "DELETE" && path.rfind("/webhooks/", 0) == 0) {
      const std::string id_text = path.substr(10);
      std::int64_t id = 0;
      try {
        id = std::stoll(id_text);
      } catch (...) {
        return {400, bad_request("id", "must be an integer")};
      }
      if (!hooks.erase(id))
        return {404, json::serialize(json::object{
                         {"status", "error"}, {"success", false}, {"errors", json::object{{"id", json::array{"not found"}}}}})};
      return {200, json::serialize(json::object{{"status", "ok"}, {"success", true}})};
    }
    return {404, generic_error("Unknown method .")};
  }

  // GET /recents?since_timestamp=YYYY-MM-DD HH:MM:SS&items=deal&start=0&limit=100 (openapi-v1.yaml):
  // the records whose update_time is at or after since_timestamp, oldest change first.
  answer recents(const std::string& path) {
    std::map<std::string, std::string> q;
    const auto qm = path.find('?');
    if (qm != std::string::npos) {
      std::string rest = path.substr(qm + 1);
      std::size_t at = 0;
      while (at <= rest.size()) {
        const auto amp = std::min(rest.find('&', at), rest.size());
        const std::string pair = rest.substr(at, amp - at);
        const auto eq = pair.find('=');
        if (eq != std::string::npos) q[pair.substr(0, eq)] = decode(pair.substr(eq + 1));
        at = amp + 1;
      }
    }
    const std::string since = q["since_timestamp"];
    auto digits = [](const std::string& s, std::size_t from, std::size_t n) {
      for (std::size_t i = from; i < from + n; ++i)
        if (i >= s.size() || s[i] < '0' || s[i] > '9') return false;
      return true;
    };
    if (since.size() != 19 || !digits(since, 0, 4) || since[4] != '-' || !digits(since, 5, 2) || since[7] != '-' ||
        !digits(since, 8, 2) || since[10] != ' ' || !digits(since, 11, 2) || since[13] != ':' || !digits(since, 14, 2) ||
        since[16] != ':' || !digits(since, 17, 2))
      return {400, bad_request("since_timestamp", "is required, as YYYY-MM-DD HH:MM:SS")};
    static const std::vector<std::string> items{"activity", "activityType", "deal",    "file",  "filter", "note",
                                                "person",   "organization", "pipeline", "product", "stage", "user"};
    const std::string item = q.count("items") ? q["items"] : "";
    if (!item.empty() && std::find(items.begin(), items.end(), item) == items.end())
      return {400, bad_request("items", "invalid value")};
    const std::int64_t start = q.count("start") ? std::stoll(q["start"]) : 0;
    const std::int64_t limit = q.count("limit") ? std::stoll(q["limit"]) : 100;
    std::vector<std::tuple<std::string, std::string, std::int64_t, const json::object*>> listed;  // update_time, item, id
    for (const auto& [key, data] : records) {
      const auto* ut = data.if_contains("update_time");
      const std::string t = ut && ut->is_string() ? std::string(ut->as_string()) : "";
      if (t < since || (!item.empty() && key.first != item)) continue;
      listed.emplace_back(t, key.first, key.second, &data);
    }
    std::sort(listed.begin(), listed.end(), [](const auto& a, const auto& b) {
      return std::tie(std::get<0>(a), std::get<1>(a), std::get<2>(a)) < std::tie(std::get<0>(b), std::get<1>(b), std::get<2>(b));
    });
    json::array data;
    std::string last;
    for (std::int64_t i = start; i < static_cast<std::int64_t>(listed.size()) && i < start + limit; ++i) {
      const auto& [t, it, id, d] = listed[static_cast<std::size_t>(i)];
      data.push_back(json::object{{"item", it}, {"id", id}, {"data", *d}});
      last = t;
    }
    const bool more = start + limit < static_cast<std::int64_t>(listed.size());
    json::object additional{{"since_timestamp", since},
                            {"last_timestamp_on_page", last.empty() ? since : last},
                            {"pagination", json::object{{"start", start}, {"limit", limit}, {"more_items_in_collection", more}}}};
    return {200, json::serialize(json::object{{"success", true}, {"data", data}, {"additional_data", additional}})};
  }

  static std::string decode(const std::string& v) {
    std::string out;
    for (std::size_t i = 0; i < v.size(); ++i) {
      if (v[i] == '%' && i + 2 < v.size()) {
        out += static_cast<char>(std::stoi(v.substr(i + 1, 2), nullptr, 16));
        i += 2;
      } else {
        out += v[i] == '+' ? ' ' : v[i];
      }
    }
    return out;
  }

  std::optional<fake_fault> take_fault(const std::string& method, const std::string& path) {
    std::lock_guard lk(mu);
    for (auto it = faults.begin(); it != faults.end(); ++it) {
      if ((it->method.empty() || it->method == method) && (it->path.empty() || it->path == path)) {
        fake_fault f = *it;
        faults.erase(it);
        return f;
      }
    }
    return std::nullopt;
  }

  answer handle(const recorded_request& req) {
    fake_request r;
    r.method = req.method;
    r.target = req.target;
    r.body = req.body;
    r.api_token = req.header("x-api-token");
    r.authorization = req.header("authorization");
    r.content_type = req.header("content-type");
    {
      std::lock_guard lk(mu);
      log.push_back(r);
    }
    if (r.target.rfind(prefix, 0) != 0) return {404, generic_error("Unknown path")};
    const std::string path = r.target.substr(prefix.size());
    auto fault = take_fault(r.method, path);
    if (fault && fault->delay.count()) std::this_thread::sleep_for(fault->delay);
    if (fault && fault->status && !fault->apply_then_fail) {
      answer a;
      a.status = fault->status;
      a.body = fault->body.empty() ? generic_error("injected failure") : fault->body;
      a.headers = fault->headers;
      return a;
    }
    answer a = respond(r.method, path, r);
    if (fault && !fault->status)  // headers only (x-ratelimit-remaining, ...) on the real answer
      for (const auto& [k, v] : fault->headers) a.headers[k] = v;
    if (fault && fault->status) {  // applied, but the client is told it failed
      a.status = fault->status;
      a.body = fault->body.empty() ? generic_error("injected failure after applying") : fault->body;
      a.headers = fault->headers;
    }
    return a;
  }

};

fake_pipedrive::fake_pipedrive(std::string token, std::string prefix, std::optional<self_signed> cert,
                               unsigned short port)
    : p_(std::make_shared<impl>()), prefix_(prefix), tls_(cert.has_value()) {
  p_->token = std::move(token);
  p_->prefix = std::move(prefix);
  server_ = std::make_unique<http_test_server>(
      [p = p_](const recorded_request& r) {
        canned_response a = p->handle(r);
        a.headers.emplace("x-ratelimit-limit", "40");
        return a;
      },
      port, std::move(cert));
  port_ = server_->port();
}

fake_pipedrive::~fake_pipedrive() { stop(); }

void fake_pipedrive::stop() { server_->stop(); }

std::string fake_pipedrive::base_url(const std::string& host) const {
  return std::string(tls_ ? "https://" : "http://") + host + ":" + std::to_string(port_) + prefix_;
}

void fake_pipedrive::add_webhook(fake_webhook w) {
  std::lock_guard lk(p_->mu);
  if (w.id == 0) w.id = p_->next_id++;
  else p_->next_id = std::max(p_->next_id, w.id + 1);
  if (w.user_id == 0) w.user_id = fake_pipedrive::user_id;
  if (w.version.empty()) w.version = "2.0";
  if (w.name.empty()) w.name = "existing";
  p_->hooks[w.id] = w;
}

void fake_pipedrive::set_fields(const std::string& object, std::vector<fake_field> fields) {
  std::lock_guard lk(p_->mu);
  p_->fields[object] = std::move(fields);
}

void fake_pipedrive::put_record(const std::string& item, std::int64_t id, const std::string& data) {
  json::value v = json::parse(data);
  std::lock_guard lk(p_->mu);
  p_->records[{item, id}] = v.as_object();
}

void fake_pipedrive::remove_webhook(std::int64_t id) {
  std::lock_guard lk(p_->mu);
  p_->hooks.erase(id);
}

std::vector<fake_webhook> fake_pipedrive::webhooks() const {
  std::lock_guard lk(p_->mu);
  std::vector<fake_webhook> out;
  for (const auto& [id, w] : p_->hooks) out.push_back(w);
  return out;
}

std::vector<fake_request> fake_pipedrive::requests() const {
  std::lock_guard lk(p_->mu);
  return p_->log;
}

std::size_t fake_pipedrive::count(const std::string& method) const {
  std::lock_guard lk(p_->mu);
  std::size_t n = 0;
  for (const auto& r : p_->log) n += r.method == method;
  return n;
}

void fake_pipedrive::inject(fake_fault f) {
  std::lock_guard lk(p_->mu);
  p_->faults.push_back(std::move(f));
}

}  // namespace pipehook::test
