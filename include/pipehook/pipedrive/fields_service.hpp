#pragma once
// The field definitions inside `pipehook serve`: fetched from Pipedrive's API (GET /dealFields,
// personFields, organizationFields, productFields, activityFields, noteFields) at start-up, every
// pipedrive.fields_refresh, and soon after an event shows a custom field the cache does not name
// (at most once a minute per object), then written to the event log's database
// (store::save_fields), where the admin API and the CLI read them. On a thread of its own: a slow
// API or database never holds up webhooks.

#include "pipehook/config/config.hpp"
#include "pipehook/core/error.hpp"
#include "pipehook/store/fields.hpp"
#include "pipehook/store/location.hpp"

#include <functional>
#include <memory>
#include <string>

namespace pipehook::pipedrive {

class fields_service {
 public:
  // Fails on a config that cannot work (no token, a bad CA file); no I/O yet.
  static outcome<std::unique_ptr<fields_service>> create(const config::config& c, const store::location& where);
  ~fields_service();  // stops

  // Called on the service's thread with an object's fields, just before they are stored. Set before start().
  using observer = std::function<void(const std::string& object, const store::field_map& fields)>;
  void set_observer(observer o);

  void start();
  // The cached fields of `object` may be stale (an unknown custom field was seen). Any thread.
  void stale(const std::string& object);
  void stop();

  struct impl;

 private:
  explicit fields_service(std::shared_ptr<impl> p);
  std::shared_ptr<impl> p_;
};

}  // namespace pipehook::pipedrive
