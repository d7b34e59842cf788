#pragma once
// pipehook's configuration: the structs with their safe defaults, TOML loading with strict key
// checking, environment overrides for secrets, and the effective config as text (secrets masked).

#include "pipehook/core/error.hpp"

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace pipehook::config {

struct server_config {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8080;
  std::string unix_path;                     // listen = "unix:/run/pipehook/pipehook.sock" instead of host:port
  unsigned socket_mode = 0660;               // that socket file's permissions
  std::string path = "/webhooks/pipedrive";
  std::uint64_t max_body_bytes = 1024 * 1024;
  std::uint32_t max_connections = 1024;
  std::int64_t read_timeout_ms = 10'000;     // a request must arrive whole within this, once begun
  std::int64_t idle_timeout_ms = 60'000;     // a keep-alive connection may wait this long for a request
  std::int64_t shutdown_timeout_ms = 15'000; // in-flight requests get this long after SIGTERM
  unsigned threads = 1;                      // I/O threads (the SQLite writer has its own)
  std::vector<std::string> trusted_proxies;  // CIDRs whose Forwarded / X-Forwarded-* headers are believed; "unix": Unix-socket peers
  std::vector<std::string> allow_from;       // CIDRs allowed to POST webhooks (empty: anyone)
  // This process among the replicas of one PostgreSQL log: in logs, claims and /api/v1/replicas.
  // "" : "<host name>-<pid>".
  std::string replica_id;
  bool operator==(const server_config&) const = default;
};

struct auth_config {
  bool enabled = true;
  std::string user = "pipedrive";
  std::string password;         // secret: never logged or printed
  std::string password_source;  // where the password came from, for check-config
  bool operator==(const auth_config&) const = default;
};

enum class durability { full, normal };

// Where the event log lives: SQLite on this machine (the embedded default), or a PostgreSQL server
// that several pipehook processes may share.
enum class store_backend { sqlite, postgres };

struct store_config {
  store_backend backend = store_backend::sqlite;
  std::string path = "var/pipehook.db";  // sqlite
  // postgres: a libpq connection URI (postgresql://user@host:5432/db?sslmode=verify-full&...).
  std::string url;
  std::string password;         // secret: PGPASSWORD, store.password(_file), or the URI's own
  std::string password_source;
  std::int64_t connect_timeout_ms = 5'000;
  // postgres: how long a replica's claim on an outbox row holds without renewal (a heartbeat renews
  // it every third of it); the rows of a replica that died go to the others after this.
  std::int64_t claim_lease_ms = 30'000;
  // The admin API's query threads, each with its own read connection (both backends).
  std::uint32_t pool_size = 4;
  durability sync = durability::full;
  std::uint32_t queue_capacity = 4096;   // events waiting for the writer; beyond it ingest answers 503
  std::uint32_t batch_max = 512;         // events per transaction (group commit)
  std::int64_t busy_timeout_ms = 2'000;  // wait for a lock held by another process before giving up
  std::uint32_t retry_after_s = 5;       // Retry-After sent with 503 when the store cannot take an event
  // [store.retention]: 0 = no limit. Old rows go in small batches; pending deliveries keep theirs.
  std::int64_t retention_max_age_ms = 0;
  std::uint64_t retention_max_bytes = 0;
  std::int64_t retention_interval_ms = 60'000;
  bool operator==(const store_config&) const = default;
};

// The admin listener: query API, web page, metrics. Never the webhook port.
struct admin_config {
  bool enabled = true;
  std::string host = "127.0.0.1";
  std::uint16_t port = 8081;
  std::string token;         // secret: "Authorization: Bearer <token>"; required beyond loopback
  std::string token_source;
  std::vector<std::string> allowed_hosts;  // Host names it answers besides localhost and its own address
  bool operator==(const admin_config&) const = default;
};

struct log_config {
  std::string level = "info";   // trace, debug, info, warn, error, critical, off
  std::string format = "text";  // "text" or "json" (one JSON object per line)
  std::string file;             // "" = stderr; else appended to, reopened on SIGHUP (log rotation)
  bool operator==(const log_config&) const = default;
};

// How pipehook talks to Pipedrive's REST API (the registrar and `pipehook webhooks`).
struct pipedrive_config {
  std::string api_base = "https://api.pipedrive.com/v1";  // includes the API version path
  std::string api_token;                                  // secret: x-api-token
  std::string api_token_source;
  std::string oauth_token;                                // secret: Authorization: Bearer
  std::string oauth_token_source;
  std::string ca_file;                                    // extra trusted CA (PEM) besides the system store
  std::int64_t connect_timeout_ms = 5'000;
  std::int64_t timeout_ms = 15'000;                       // one request: write it and read the whole answer
  unsigned max_attempts = 4;                              // per call, for 429, 5xx and unreachable
  std::int64_t retry_base_ms = 1'000;                     // first backoff; doubles, with jitter
  std::int64_t retry_max_ms = 60'000;                     // longest single wait (rate-limit hints included)
  // serve fetches the field definitions (names of custom fields and options) at start-up and this
  // often, when a token is set; 0: never.
  std::int64_t fields_refresh_ms = 3'600'000;
  bool operator==(const pipedrive_config&) const = default;
};

// One desired subscription: Pipedrive's event_action / event_object pair ("*" allowed in both).
struct webhook_subscription {
  std::string event_action;
  std::string event_object;
  bool operator==(const webhook_subscription&) const = default;
};

struct registrar_config {
  bool enabled = false;           // serve reconciles the webhooks at start-up (and every resync_interval)
  std::string subscription_url;   // the public URL Pipedrive calls (behind the reverse proxy)
  std::string version = "2.0";    // "1.0" or "2.0"
  std::string name = "pipehook";  // the webhooks' name in Pipedrive
  std::int64_t user_id = 0;       // authorize the webhooks as this user (0: the token's user)
  bool prune = false;             // delete webhooks at subscription_url that are no longer listed
  bool delete_on_shutdown = false;
  std::int64_t resync_interval_ms = 3'600'000;  // 0: reconcile only at start-up
  // Replicas on one PostgreSQL log: how often one in standby looks whether the registering replica
  // is gone (and the registering one whether it still is).
  std::int64_t takeover_check_ms = 60'000;
  std::vector<webhook_subscription> webhooks;
  bool operator==(const registrar_config&) const = default;
};

// [backfill]: recovering what Pipedrive never delivered, through its API (GET /recents).
struct backfill_config {
  // serve detects gaps (its own downtime; a managed webhook deleted, inactive or failing at
  // Pipedrive) and backfills them. Needs a Pipedrive token.
  bool enabled = false;
  std::int64_t min_gap_ms = 120'000;                  // a downtime shorter than this is left to Pipedrive's retries
  std::int64_t max_window_ms = 7LL * 24 * 3'600'000;  // an automatic window goes back at most this far
  std::uint32_t max_calls = 500;                      // API calls per run; then it stops as "capped"
  std::uint32_t page_size = 500;                      // records per /recents page
  // What is recovered: recents item names. Empty: the registrar's objects ("*": all of them).
  std::vector<std::string> objects;
  std::int64_t heartbeat_ms = 30'000;                 // how often serve writes "still running" into the log
  bool operator==(const backfill_config&) const = default;
};

// [alerts]: a JSON notice to `url` when a handler pauses or resumes, when a handler's first dead
// letter appears after `quiet` without one, and when the registrar fails to reconcile.
struct alerts_config {
  std::string url;                    // empty: no alerts (they are logged at warning level either way)
  std::string signing_secret;         // Standard Webhooks signature ("whsec_..." or raw bytes); empty: unsigned
  std::string signing_secret_source;
  std::string ca_file;                // for an https url: the CA bundle (empty: the system's)
  std::int64_t timeout_ms = 10'000;
  std::uint32_t max_attempts = 4;     // per notice (1 s, 5 s, 25 s between them)
  std::uint32_t max_per_hour = 60;    // beyond: notices are dropped (and counted in the next one sent)
  std::int64_t quiet_ms = 3'600'000;  // a dead letter after this long without one is a notice
  bool operator==(const alerts_config&) const = default;
};

// A handler-specific setting as the config file gave it; the handler type validates its own keys.
using setting_value = std::variant<std::string, std::int64_t, double, bool, std::vector<std::string>,
                                   std::map<std::string, std::string>>;

// Which events a handler gets: each list empty = any; entries may use '*' as a wildcard ("deal*").
struct match_config {
  std::vector<std::string> entity;
  std::vector<std::string> action;
  std::vector<std::string> company_id;
  // [[handlers]] when_changed: only changes that touch one of these fields (keys, v1 custom-field
  // hashes, or "custom_fields.<hash>" for v2); creates only with "*created", deletes only with
  // "*deleted". Empty: every event.
  std::vector<std::string> changed;
  // [[handlers]] backfill: false keeps recovered events (source_action "backfill") away.
  bool backfill = true;
  bool operator==(const match_config&) const = default;
};

struct retry_config {
  std::vector<std::int64_t> schedule_ms{1'000, 5'000, 30'000, 120'000, 600'000, 3'600'000};  // the last repeats
  std::int64_t max_age_ms = 24LL * 3'600'000;  // then dead
  std::uint32_t max_attempts = 0;               // 0: limited by max_age only
  bool operator==(const retry_config&) const = default;
};

// "50/s", "600/m", "1000/h" -> deliveries per second; nullopt when malformed or not positive.
std::optional<double> parse_rate(std::string_view text);

// A secret kept in a file (`key`_file): its content without the trailing newline. Errors name
// `key`; a file others can read adds a warning.
outcome<std::string> read_secret_file(const std::string& path, std::string_view key, std::vector<std::string>& warnings);

// One [[handlers]] table.
struct handler_config {
  std::string name;
  std::string type;
  std::string where;        // "handlers[0]" (or its name), for error messages
  match_config match;
  retry_config retry;
  bool ordered = false;     // per-entity order: one stuck event holds back only its own entity
  std::uint32_t concurrency = 8;
  // rate = "50/s" (or "/m", "/h"): deliveries started at most this fast, across the concurrency
  // (a token bucket; a delivery waits for a token, it never fails for one). 0: no limit.
  double rate_per_s = 0;
  std::string rate_text;        // as written, for messages and the effective config
  std::uint32_t rate_burst = 0; // tokens the bucket holds (default: one second's worth, at least 1)
  // The circuit breaker: after `pause_after` consecutive failed attempts (0: never) the handler is
  // paused for `pause_for`, then one delivery probes; each failed probe doubles the pause, up to
  // `pause_max`; a success resumes it.
  std::uint32_t pause_after = 20;
  std::int64_t pause_for_ms = 30'000;
  std::int64_t pause_max_ms = 600'000;
  std::map<std::string, setting_value> settings;  // the type's own keys (url, subject, ...)
  bool operator==(const handler_config&) const = default;
};

struct config {
  server_config server;
  auth_config auth;
  admin_config admin;
  store_config store;
  log_config log;
  pipedrive_config pipedrive;
  registrar_config registrar;
  backfill_config backfill;
  alerts_config alerts;
  std::vector<handler_config> handlers;
  std::string source;  // the file it came from, or "(defaults)"
  // What is allowed but unwise (a secret in a file others can read, a short password): shown by
  // check-config and logged by serve at start-up, each naming the key or file.
  std::vector<std::string> warnings;
  std::vector<std::string> inline_secrets;  // keys whose secret is written in the file itself
};

// Environment lookup; nullopt when unset. Tests pass their own.
using env_lookup = std::function<std::optional<std::string>(const std::string&)>;
env_lookup process_env();

// Parses TOML text. Unknown keys and bad values are errors that name the key.
outcome<config> parse_config(std::string_view toml_text, std::string_view source_name, const env_lookup& env);

// Loads a file (or the defaults when path is empty), then applies the environment:
// PIPEHOOK_AUTH_PASSWORD overrides auth.password / auth.password_file, PIPEHOOK_ADMIN_TOKEN the
// admin token, PIPEDRIVE_API_TOKEN the API token, PIPEHOOK_TRUSTED_PROXIES (comma-separated)
// server.trusted_proxies. Fills `warnings`.
outcome<config> load_config(const std::string& path, const env_lookup& env);

// Checks what `serve` needs beyond a well-formed config: a password (not only whitespace) unless
// auth is disabled, a token for an admin listener beyond loopback, distinct listeners. check-config
// runs exactly this too.
outcome<void> check_serve_ready(const config& c);

// Checks what talking to Pipedrive needs: exactly one token (API or OAuth).
outcome<void> check_pipedrive_ready(const config& c);

// Checks what reconciling needs: a token, a subscription URL, at least one webhook, and the
// Basic-auth credentials Pipedrive will be given (a password unless auth is disabled).
outcome<void> check_registrar_ready(const config& c);


// The effective configuration as TOML, with secrets masked.
std::string render_effective(const config& c);

}  // namespace pipehook::config
