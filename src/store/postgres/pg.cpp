#include "pg.hpp"

#include "pipehook/core/url.hpp"

#include <poll.h>

#include <cstring>

namespace pipehook::store::pg {

outcome<connection> connect(const connect_options& o) {
  const std::string timeout = std::to_string(std::max<std::int64_t>(1, (o.connect_timeout_ms + 999) / 1000));
  // Later keywords override the URI's own (expand_dbname): the configured password and timeout.
  // tcp_user_timeout and keepalives notice a server that vanished without closing the socket.
  std::vector<const char*> keys{"dbname", "connect_timeout", "fallback_application_name", "tcp_user_timeout",
                                "keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count"};
  std::vector<const char*> values{o.url.c_str(), timeout.c_str(), o.application_name.c_str(), "15000", "1", "10", "5", "3"};
  if (!o.password.empty()) {
    keys.push_back("password");
    values.push_back(o.password.c_str());
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  connection c(PQconnectdbParams(keys.data(), values.data(), 1));
  if (!c) return make_failure(errc::store_io, "cannot connect to PostgreSQL: out of memory");
  if (PQstatus(c.get()) != CONNECTION_OK) {
    std::string why = PQerrorMessage(c.get());
    while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
    return make_failure(errc::store_io, "cannot connect to PostgreSQL at " + mask_url_password(o.url) + ": " + why);
  }
  std::string setup_sql = "SET TIME ZONE 'UTC'; SET statement_timeout = '60s'";
  if (o.lock_timeout_ms > 0) setup_sql += "; SET lock_timeout = '" + std::to_string(o.lock_timeout_ms) + "ms'";
  auto setup = exec(c.get(), setup_sql);
  if (!setup) return setup.error();
  return c;
}

connect_options options_of(const location& where) {
  connect_options o{where.url, where.password, where.connect_timeout_ms};
  if (!where.purpose.empty()) o.application_name += "/" + where.purpose;
  return o;
}

failure failure_of(PGconn* c, const PGresult* r, std::string_view what) {
  std::string msg(what);
  msg += ": ";
  const char* state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
  std::string detail = r ? PQresultErrorMessage(r) : "";
  if (detail.empty() && c) detail = PQerrorMessage(c);
  while (!detail.empty() && (detail.back() == '\n' || detail.back() == ' ')) detail.pop_back();
  if (broken(c)) {
    msg += "the connection to PostgreSQL was lost";
    if (!detail.empty()) msg += " (" + detail + ")";
    return make_failure(errc::store_io, std::move(msg));
  }
  msg += detail.empty() ? "unknown error" : detail;
  errc code = errc::store_io;
  if (state) {
    const std::string_view s(state);
    if (s.substr(0, 2) == "53") code = errc::store_full;  // insufficient resources: disk full, out of memory, too many connections
    else if (s == "40001" || s == "40P01" || s == "55P03" || s == "57014") code = errc::store_busy;
  }
  return make_failure(code, std::move(msg));
}

params& params::text(std::string_view v) {
  storage_.emplace_back(v);
  values_.push_back(storage_.back().c_str());
  lengths_.push_back(0);
  formats_.push_back(0);
  return *this;
}

params& params::bytes(std::string_view v) {
  storage_.emplace_back(v);
  values_.push_back(storage_.back().data());
  lengths_.push_back(static_cast<int>(v.size()));
  formats_.push_back(1);
  binary_ = true;
  return *this;
}

params& params::text_or_null(std::string_view v) { return v.empty() ? null() : text(v); }

params& params::integer(std::int64_t v) { return text(std::to_string(v)); }

params& params::null() {
  values_.push_back(nullptr);
  lengths_.push_back(0);
  formats_.push_back(0);
  return *this;
}

std::string bytes(const PGresult* r, int row, int col) {
  if (PQgetisnull(r, row, col)) return {};
  const char* v = PQgetvalue(r, row, col);
  const int n = PQgetlength(r, row, col);
  if (n < 2 || v[0] != '\\' || v[1] != 'x') return std::string(v, static_cast<std::size_t>(n));  // not hex output
  std::string out;
  out.reserve(static_cast<std::size_t>(n - 2) / 2);
  auto nibble = [](char c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; };
  for (int i = 2; i + 1 < n; i += 2) out.push_back(static_cast<char>(nibble(v[i]) << 4 | nibble(v[i + 1])));
  return out;
}

outcome<result> exec(PGconn* c, std::string_view sql, const params& p) {
  const std::string q(sql);
  result r(p.size() == 0 ? PQexec(c, q.c_str()) : PQexecParams(c, q.c_str(), p.size(), nullptr, p.values(), p.lengths(), p.formats(), 0));
  const auto st = r ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) return failure_of(c, r.get(), q.substr(0, 48));
  return r;
}

std::string text(const PGresult* r, int row, int col) {
  if (PQgetisnull(r, row, col)) return {};
  return std::string(PQgetvalue(r, row, col), static_cast<std::size_t>(PQgetlength(r, row, col)));
}

std::int64_t integer(const PGresult* r, int row, int col) {
  if (PQgetisnull(r, row, col)) return 0;
  return std::strtoll(PQgetvalue(r, row, col), nullptr, 10);
}

outcome<void> prepare(PGconn* c, const char* name, std::string_view sql) {
  const std::string q(sql);
  result r(PQprepare(c, name, q.c_str(), 0, nullptr));
  if (!r || PQresultStatus(r.get()) != PGRES_COMMAND_OK) return failure_of(c, r.get(), std::string("prepare ") + name);
  return {};
}

void pipeline::send_prepared(const char* name, const params& p) {
  if (sent_ == 0 && PQpipelineStatus(c_) == PQ_PIPELINE_OFF && !PQenterPipelineMode(c_)) send_failed_ = true;
  if (!send_failed_ && !PQsendQueryPrepared(c_, name, p.size(), p.values(), p.lengths(), p.formats(), 0)) send_failed_ = true;
  ++sent_;
}

void pipeline::send(std::string_view sql, const params& p) {
  if (sent_ == 0 && PQpipelineStatus(c_) == PQ_PIPELINE_OFF && !PQenterPipelineMode(c_)) send_failed_ = true;
  const std::string q(sql);
  if (!send_failed_ && !PQsendQueryParams(c_, q.c_str(), p.size(), nullptr, p.values(), p.lengths(), p.formats(), 0)) send_failed_ = true;
  ++sent_;
}

namespace {

// Sends what libpq has buffered, reading meanwhile so that the server never blocks on its own
// output while we block on ours.
outcome<void> flush_all(PGconn* c, std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    const int f = PQflush(c);
    if (f == 0) return {};
    if (f < 0) return failure_of(c, nullptr, "send to PostgreSQL");
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return make_failure(errc::store_io, "send to PostgreSQL: timed out");
    pollfd p{PQsocket(c), POLLIN | POLLOUT, 0};
    if (::poll(&p, 1, static_cast<int>(std::min<std::int64_t>(left.count(), 1000))) < 0 && errno != EINTR)
      return make_failure(errc::store_io, std::string("send to PostgreSQL: ") + std::strerror(errno));
    if ((p.revents & POLLIN) && !PQconsumeInput(c)) return failure_of(c, nullptr, "send to PostgreSQL");
  }
}

// Waits until a result is ready without blocking past the deadline.
outcome<void> wait_readable(PGconn* c, std::chrono::steady_clock::time_point deadline) {
  while (PQisBusy(c)) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return make_failure(errc::store_io, "PostgreSQL did not answer in time");
    pollfd p{PQsocket(c), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(std::min<std::int64_t>(left.count(), 1000))) < 0 && errno != EINTR)
      return make_failure(errc::store_io, std::string("read from PostgreSQL: ") + std::strerror(errno));
    if (!PQconsumeInput(c)) return failure_of(c, nullptr, "read from PostgreSQL");
  }
  return {};
}

}  // namespace

outcome<std::vector<result>> pipeline::run(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::vector<result> out;
  out.reserve(sent_);
  std::optional<failure> first_failure;
  if (send_failed_ || !PQpipelineSync(c_)) {
    failure f = failure_of(c_, nullptr, "send to PostgreSQL");
    PQexitPipelineMode(c_);
    return f;
  }
  if (PQsetnonblocking(c_, 1) != 0) return failure_of(c_, nullptr, "send to PostgreSQL");
  auto flushed = flush_all(c_, deadline);
  PQsetnonblocking(c_, 0);
  if (!flushed) return flushed.error();
  // Each statement: its result, then a null; the sync: PGRES_PIPELINE_SYNC.
  for (;;) {
    if (auto ready = wait_readable(c_, deadline); !ready) return ready.error();
    result r(PQgetResult(c_));
    if (!r) {
      if (broken(c_)) return failure_of(c_, nullptr, "read from PostgreSQL");
      continue;  // the end of one statement's results
    }
    const auto st = PQresultStatus(r.get());
    if (st == PGRES_PIPELINE_SYNC) break;
    if (st == PGRES_FATAL_ERROR && !first_failure) first_failure = failure_of(c_, r.get(), "write");
    if (st == PGRES_PIPELINE_ABORTED && !first_failure) first_failure = make_failure(errc::store_io, "write: aborted");
    out.push_back(std::move(r));
  }
  PQexitPipelineMode(c_);
  if (first_failure) return *first_failure;
  if (out.size() != sent_)
    return make_failure(errc::store_io, "write: PostgreSQL answered " + std::to_string(out.size()) + " of " +
                                            std::to_string(sent_) + " statements");
  return out;
}

bool still_open(PGconn* c) {
  if (broken(c)) return false;
  pollfd p{PQsocket(c), POLLIN, 0};
  if (::poll(&p, 1, 0) > 0) {
    // Readable while idle: a notice, or the server's goodbye (EOF).
    if (!PQconsumeInput(c)) return false;
    while (PGnotify* n = PQnotifies(c)) PQfreemem(n);
  }
  return !broken(c);
}

outcome<void> session::open() {
  auto c = connect(opts_);
  if (!c) return c.error();
  if (!setup_.empty())
    if (auto r = pg::exec(c->get(), setup_); !r) return r.error();
  c_ = std::move(*c);
  ++generation_;
  return {};
}

outcome<PGconn*> session::get() {
  if (c_ && still_open(c_.get())) return c_.get();
  c_.reset();
  const auto now = std::chrono::steady_clock::now();
  if (now < next_try_) return make_failure(errc::store_io, "the connection to PostgreSQL was lost; reconnecting");
  next_try_ = now + std::chrono::seconds(1);
  if (auto r = open(); !r) return r.error();
  return c_.get();
}

outcome<result> session::exec(std::string_view sql, const params& p) {
  auto c = get();
  if (!c) return c.error();
  auto r = pg::exec(*c, sql, p);
  if (!r && broken(*c)) discard();
  return r;
}

}  // namespace pipehook::store::pg
