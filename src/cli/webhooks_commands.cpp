// `pipehook webhooks list|sync|delete|whoami`: Pipedrive's webhooks through its REST API, one call at
// a time on a private io_context.
#include "common.hpp"

#include "pipehook/core/run_blocking.hpp"
#include "pipehook/pipedrive/client.hpp"
#include "pipehook/pipedrive/registrar.hpp"

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include <iostream>
#include <memory>
#include <variant>

namespace pipehook::cli {
namespace {

namespace asio = boost::asio;
namespace pd = pipedrive;

struct api_session {
  config::config cfg;
  asio::io_context ioc;
  std::unique_ptr<pd::client> api;
};

// Loads the config and builds the client; on failure prints why and returns the exit code.
std::variant<std::unique_ptr<api_session>, int> open_api(const std::string& config_path) {
  auto cfg = load(config_path);
  if (!cfg) return fail(exit_usage, cfg.error().message);
  if (auto ready = config::check_pipedrive_ready(*cfg); !ready) return fail(exit_usage, ready.error().message);
  auto s = std::make_unique<api_session>();
  s->cfg = *cfg;
  auto api = pd::client::create(s->ioc.get_executor(), s->cfg.pipedrive);
  if (!api) return fail(exit_usage, api.error().message);
  s->api = std::move(*api);
  return s;
}

int api_failed(const pd::api_error& e) { return fail(exit_failed, e.message); }

std::string event_label(const pd::webhook& w) {
  return pd::normalized_action(w.event_action) + "." + w.event_object;
}

int cmd_webhooks_list(const std::string& config_path, const std::string& format) {
  auto opened = open_api(config_path);
  if (auto* code = std::get_if<int>(&opened)) return *code;
  auto& s = *std::get<0>(opened);
  auto r = run_blocking(s.ioc, s.api->list_webhooks());
  if (!r) return api_failed(r.error());
  const std::string& ours = s.cfg.registrar.subscription_url;
  if (format == "json") {
    boost::json::array arr;
    for (const auto& w : *r) {
      boost::json::object o;
      o["id"] = w.id;
      o["event"] = event_label(w);
      o["event_action"] = w.event_action;
      o["event_object"] = w.event_object;
      o["version"] = w.version;
      o["subscription_url"] = w.subscription_url;
      o["ours"] = !ours.empty() && w.subscription_url == ours;
      o["is_active"] = w.is_active;
      o["name"] = w.name;
      o["type"] = w.type;
      o["user_id"] = w.user_id;
      o["http_auth_user"] = w.http_auth_user;
      o["add_time"] = w.add_time;
      if (w.last_http_status) o["last_http_status"] = w.last_http_status;
      else o["last_http_status"] = nullptr;
      if (w.last_delivery_time.empty()) o["last_delivery_time"] = nullptr;
      else o["last_delivery_time"] = w.last_delivery_time;
      arr.push_back(std::move(o));
    }
    std::cout << boost::json::serialize(arr) << "\n";
    return exit_ok;
  }
  if (r->empty()) {
    std::cerr << "no webhooks\n";
    return exit_ok;
  }
  std::vector<std::vector<std::string>> cells;
  cells.push_back({"ID", "EVENT", "VERSION", "ACTIVE", "LAST_DELIVERY", "USER", "NAME", "URL"});
  for (const auto& w : *r) {
    std::string last = w.last_http_status ? std::to_string(w.last_http_status) : "-";
    if (!w.last_delivery_time.empty()) last += " at " + w.last_delivery_time;
    std::string url = w.subscription_url;
    if (!ours.empty() && url == ours) url += "  (pipehook)";
    cells.push_back({std::to_string(w.id), event_label(w), w.version, w.is_active ? "yes" : "no", last,
                     w.user_id ? std::to_string(w.user_id) : "-", w.name, url});
  }
  print_cells(cells);
  return exit_ok;
}

// The fields of an object in Pipedrive: their keys (custom fields' 40-hex ones included) and option
// ids, which is what when_changed and the bodies use.
int cmd_webhooks_fields(const std::string& config_path, std::string object, const std::string& format) {
  if (object == "lead") object = "deal";  // leads use the deal fields
  if (!pd::has_fields_endpoint(object))
    return fail(exit_usage, "\"" + object + "\" has no fields in Pipedrive's API (deal, lead, person, organization, product, activity, note)");
  auto opened = open_api(config_path);
  if (auto* code = std::get_if<int>(&opened)) return *code;
  auto& s = *std::get<0>(opened);
  auto r = run_blocking(s.ioc, s.api->list_fields(object));
  if (!r) return api_failed(r.error());
  if (format == "json") {
    boost::json::array arr;
    for (const auto& f : *r) {
      boost::json::array options;
      for (const auto& o : f.options) options.push_back(boost::json::object{{"id", o.id}, {"label", o.label}});
      arr.push_back(boost::json::object{
          {"key", f.key}, {"name", f.name}, {"field_type", f.field_type}, {"custom", f.custom}, {"options", std::move(options)}});
    }
    std::cout << boost::json::serialize(arr) << "\n";
    return exit_ok;
  }
  std::vector<std::vector<std::string>> cells;
  cells.push_back({"KEY", "NAME", "TYPE", "CUSTOM", "OPTIONS"});
  for (const auto& f : *r) {
    std::string options;
    for (const auto& o : f.options) options += (options.empty() ? "" : ", ") + o.id + "=" + o.label;
    if (options.size() > 100) options = options.substr(0, 97) + "...";
    cells.push_back({f.key, f.name, f.field_type, f.custom ? "yes" : "-", options.empty() ? "-" : options});
  }
  print_cells(cells);
  return exit_ok;
}

int cmd_webhooks_whoami(const std::string& config_path) {
  auto opened = open_api(config_path);
  if (auto* code = std::get_if<int>(&opened)) return *code;
  auto& s = *std::get<0>(opened);
  auto r = run_blocking(s.ioc, s.api->whoami());
  if (!r) return api_failed(r.error());
  std::cout << "user:    " << r->id << " " << r->name << (r->email.empty() ? "" : " <" + r->email + ">")
            << (r->is_admin ? " (admin)" : "") << "\n"
            << "company: " << r->company_id << " " << r->company_name
            << (r->company_domain.empty() ? "" : " (" + r->company_domain + ".pipedrive.com)") << "\n"
            << "api:     " << s.api->base_url() << "\n";
  return exit_ok;
}

int cmd_webhooks_delete(const std::string& config_path, std::int64_t id) {
  auto opened = open_api(config_path);
  if (auto* code = std::get_if<int>(&opened)) return *code;
  auto& s = *std::get<0>(opened);
  auto r = run_blocking(s.ioc, s.api->delete_webhook(id));
  if (!r) return api_failed(r.error());
  std::cout << "deleted webhook #" << id << "\n";
  return exit_ok;
}

int cmd_webhooks_sync(const std::string& config_path, bool dry_run, bool prune) {
  auto opened = open_api(config_path);
  if (auto* code = std::get_if<int>(&opened)) return *code;
  auto& s = *std::get<0>(opened);
  if (auto ready = config::check_registrar_ready(s.cfg); !ready) return fail(exit_usage, ready.error().message);
  for (const auto& w : s.cfg.warnings)  // an object pipehook does not know, among others
    if (w.rfind("registrar.", 0) == 0) std::cerr << "warning: " << w << "\n";
  pd::desired_state d = pd::desired_from(s.cfg);
  d.prune = d.prune || prune;
  std::cout << (dry_run ? "dry run: " : "") << "webhooks for " << d.subscription_url << " (version " << d.version
            << (d.prune ? ", prune" : "") << ")\n";
  auto r = run_blocking(s.ioc, pd::reconcile(*s.api, d, dry_run, [](const std::string& line) {
    std::cout << line << "\n" << std::flush;
  }));
  if (!r) return api_failed(r.error());
  if (dry_run) {
    std::cout << "dry run: nothing was changed\n";
    return exit_ok;
  }
  std::cout << r->managed.size() << " webhook(s) in place (" << r->created.size() << " created, "
            << r->deleted.size() << " deleted)\n";
  return exit_ok;
}


}  // namespace

void add_webhooks_commands(CLI::App& app, context& ctx) {
  auto* webhooks = app.add_subcommand("webhooks", "the Pipedrive webhooks: list, sync with the config, delete");
  webhooks->require_subcommand(1);
  auto format = std::make_shared<std::string>("table");
  auto* list = webhooks->add_subcommand("list", "list the webhooks Pipedrive has for this token");
  list->add_option("--format", *format, "table or json")->check(CLI::IsMember({"table", "json"}));
  list->callback([&ctx, format] { ctx.exit_code = cmd_webhooks_list(ctx.config_path, *format); });

  struct sync_flags {
    bool dry_run = false, prune = false;
  };
  auto sf = std::make_shared<sync_flags>();
  auto* sync = webhooks->add_subcommand("sync", "create the configured webhooks that are missing (prints the plan)");
  sync->add_flag("--dry-run", sf->dry_run, "print the plan; call no write endpoint");
  sync->add_flag("--prune", sf->prune, "also delete webhooks at registrar.subscription_url that are not configured");
  sync->callback([&ctx, sf] { ctx.exit_code = cmd_webhooks_sync(ctx.config_path, sf->dry_run, sf->prune); });

  auto id = std::make_shared<std::int64_t>(0);
  auto* del = webhooks->add_subcommand("delete", "delete one webhook by id");
  del->add_option("id", *id, "webhook id")->required()->check(CLI::PositiveNumber);
  del->callback([&ctx, id] { ctx.exit_code = cmd_webhooks_delete(ctx.config_path, *id); });

  auto object = std::make_shared<std::string>();
  auto fields_format = std::make_shared<std::string>("table");
  auto* fields = webhooks->add_subcommand("fields", "an object's fields in Pipedrive: keys, names, option ids (for when_changed)");
  fields->add_option("object", *object, "deal, lead, person, organization, product, activity or note")->required();
  fields->add_option("--format", *fields_format, "table or json")->check(CLI::IsMember({"table", "json"}));
  fields->callback([&ctx, object, fields_format] { ctx.exit_code = cmd_webhooks_fields(ctx.config_path, *object, *fields_format); });

  webhooks->add_subcommand("whoami", "check the token: its user and company")->callback([&ctx] {
    ctx.exit_code = cmd_webhooks_whoami(ctx.config_path);
  });
}

}  // namespace pipehook::cli
