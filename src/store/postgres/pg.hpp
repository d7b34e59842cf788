#pragma once
// Small RAII helpers over libpq, internal to the store module: connections, results, text
// parameters, errors mapped to the project's (SQLSTATE class 53 -> store_full, lock and
// serialization failures -> store_busy, the rest -> store_io), and pipelines (every statement of a
// batch sent in one round trip).

#include "pipehook/core/error.hpp"
#include "pipehook/store/location.hpp"

#include <libpq-fe.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pipehook::store::pg {

struct conn_deleter {
  void operator()(PGconn* c) const { PQfinish(c); }
};
using connection = std::unique_ptr<PGconn, conn_deleter>;

struct result_deleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using result = std::unique_ptr<PGresult, result_deleter>;

struct connect_options {
  std::string url;       // a libpq URI
  std::string password;  // overrides the URI's when set
  std::int64_t connect_timeout_ms = 5'000;
  std::int64_t lock_timeout_ms = 0;  // > 0: a lock held elsewhere longer than this fails the statement (store_busy)
  std::string application_name = "pipehook";  // the fallback: a URI's application_name wins
};

// The options for a location: its server, password, timeout, and "pipehook/<purpose>" as the name.
connect_options options_of(const location& where);

// Connects (and sets the session up: UTC, no statement over 60 s). Errors name the server with
// its password masked.
outcome<connection> connect(const connect_options& o);

// The error of a failed result (or of the connection when r is null), as a project failure.
failure failure_of(PGconn* c, const PGresult* r, std::string_view what);

// True when the connection is gone (the next use needs a new one).
inline bool broken(PGconn* c) { return !c || PQstatus(c) != CONNECTION_OK; }
// Reads what the server sent meanwhile without waiting: a connection the server closed (a
// restart, an idle timeout) shows as broken before it is used, not by failing a statement.
bool still_open(PGconn* c);

// A connection that comes back: get() reconnects when the last one was lost (a server restart, a
// network cut), at most once per second, and runs `setup` on each new connection.
class params;

class session {
 public:
  session(connect_options o, std::string setup = {}) : opts_(std::move(o)), setup_(std::move(setup)) {}
  // The first connection, for open(): errors are the caller's to report.
  outcome<void> open();
  outcome<PGconn*> get();
  // After a failure that left the connection unusable (mid-pipeline): the next get() reconnects.
  void discard() { c_.reset(); }
  // One statement on the session's connection; a connection it finds broken is reopened by the next call.
  outcome<result> exec(std::string_view sql, const params& p);
  // Counts the connections opened: a change means session state (locks, settings) is gone.
  std::uint64_t generation() const { return generation_; }

 private:
  connect_options opts_;
  std::string setup_;
  connection c_;
  std::uint64_t generation_ = 0;
  std::chrono::steady_clock::time_point next_try_{};
};

// Parameters for one statement: text, except bytes() (binary, for bytea); null() is SQL NULL.
class params {
 public:
  params& text(std::string_view v);
  params& text_or_null(std::string_view v);  // "" is NULL (absent optional fields)
  params& integer(std::int64_t v);
  params& bytes(std::string_view v);
  params& null();
  int size() const { return static_cast<int>(values_.size()); }
  const char* const* values() const { return values_.data(); }
  // For libpq: nullptr (all text) unless a binary parameter is among them.
  const int* lengths() const { return binary_ ? lengths_.data() : nullptr; }
  const int* formats() const { return binary_ ? formats_.data() : nullptr; }

 private:
  std::deque<std::string> storage_;  // stable addresses
  std::vector<const char*> values_;
  std::vector<int> lengths_, formats_;
  bool binary_ = false;
};

// One statement, parameters as text; the result must be COMMAND_OK or TUPLES_OK.
outcome<result> exec(PGconn* c, std::string_view sql, const params& p = {});

// The cell as text / integer ("" and 0 for NULL).
std::string text(const PGresult* r, int row, int col);
// A bytea cell (text format, hex) as its bytes.
std::string bytes(const PGresult* r, int row, int col);
std::int64_t integer(const PGresult* r, int row, int col);

// Prepares a named statement on the connection.
outcome<void> prepare(PGconn* c, const char* name, std::string_view sql);

// A pipeline: statements queued with send(), then run() sends them all with one sync and reads
// every result in order (one round trip). After a failed statement the rest are aborted by the
// server; run() reports the first failure.
class pipeline {
 public:
  explicit pipeline(PGconn* c) : c_(c) {}
  void send_prepared(const char* name, const params& p);
  void send(std::string_view sql, const params& p = {});
  // The results of the statements in the order sent; `deadline` bounds the wait for the server.
  outcome<std::vector<result>> run(std::chrono::milliseconds deadline);

 private:
  PGconn* c_;
  std::size_t sent_ = 0;
  bool send_failed_ = false;
};

}  // namespace pipehook::store::pg
