// `pipehook backfill`: recover what Pipedrive changed while its webhooks did not reach pipehook,
// through the API, in this process (with a progress line); `backfill list|show`: the recorded runs.
#include "common.hpp"

#include "pipehook/cli/logging.hpp"

#include "pipehook/admin/query.hpp"
#include "pipehook/core/run_blocking.hpp"
#include "pipehook/core/time.hpp"
#include "pipehook/dispatch/dispatcher.hpp"
#include "pipehook/handlers/builtin.hpp"
#include "pipehook/pipedrive/backfill.hpp"
#include "pipehook/store/presence.hpp"
#include "pipehook/store/reader.hpp"

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/json/serialize.hpp>

#include <atomic>
#include <csignal>
#include <iostream>
#include <memory>
#include <unistd.h>
#include <variant>

namespace pipehook::cli {
namespace {

namespace asio = boost::asio;
namespace pd = pipedrive;

struct run_flags {
  std::string since, until, objects;
  bool dry_run = false;
  std::int64_t resume = 0;
};

std::string progress_line(const store::backfill_run& r) {
  const std::string at = r.object_index < r.objects.size() ? r.objects[r.object_index] + " from " + std::to_string(r.next_start)
                                                           : std::string("end");
  return "backfill #" + std::to_string(r.id) + ": " + r.state + ", at " + at + ": " + std::to_string(r.records_read) +
         " read, " + std::to_string(r.events_stored) + (r.dry_run ? " would be stored, " : " stored, ") +
         std::to_string(r.already_known) + " already known, " + std::to_string(r.api_calls) + " call(s), " +
         std::to_string(r.token_cost) + " tokens";
}

// The run, then the signal wait goes too (the io_context's last work).
asio::awaitable<bool> carry_on(pd::backfill_context ctx, store::backfill_run* run, asio::signal_set* signals) {
  auto op = pd::run_backfill(std::move(ctx), *run);
  co_await std::move(op);
  boost::system::error_code ec;
  signals->cancel(ec);
  co_return true;
}

int cmd_backfill(const std::string& config_path, const run_flags& f) {
  auto cfg = load(config_path);
  if (!cfg) return fail(exit_usage, cfg.error().message);
  if (auto ready = config::check_pipedrive_ready(*cfg); !ready) return fail(exit_usage, ready.error().message);
  config::log_config to_stderr = cfg->log;  // stdout carries the run's JSON
  to_stderr.file.clear();
  if (auto logging = setup_logging(to_stderr); !logging) return fail_with(logging.error());
  const store::location where = store_location(*cfg);
  const std::string replica = pd::cli_replica_prefix + store::this_replica().id;

  // The run: resumed, or new from the flags.
  auto book = store::backfill_store::open(where);
  if (!book) return fail_with(book.error());
  store::backfill_run run;
  if (f.resume > 0) {
    if (!f.since.empty() || !f.until.empty() || !f.objects.empty())
      return fail(exit_usage, "--resume takes the run as it was recorded: leave out --since, --until and --objects");
    auto found = (*book)->get(f.resume);
    if (!found) return fail_with(found.error());
    if (!*found) return fail(exit_usage, "no backfill run " + std::to_string(f.resume) + " (see `pipehook backfill list`)");
    run = **found;
    if (run.state == "done" || run.state == "failed")
      return fail(exit_usage, "backfill run " + std::to_string(run.id) + " is " + run.state + ": nothing to resume");
    if (run.state == "capped") run.state = "interrupted";  // another max_calls' worth
  } else {
    admin::params p;
    if (f.since.empty()) return fail(exit_usage, "--since is required (or --resume ID): how far back to recover, e.g. 2h");
    p.emplace_back("since", f.since);
    if (!f.until.empty()) p.emplace_back("until", f.until);
    if (!f.objects.empty()) p.emplace_back("objects", f.objects);
    if (f.dry_run) p.emplace_back("dry_run", "true");
    auto parsed = admin::parse_backfill_request(p);
    if (!parsed) {
      std::string m = parsed.error().message;  // "objects: ..." -> "--objects: ..."
      return fail(exit_usage, "--" + m);
    }
    run = std::move(*parsed);
    if (run.objects.empty()) run.objects = pd::default_backfill_objects(*cfg);
    if (run.objects.empty()) return fail(exit_usage, "no object to recover: name them with --objects deal,person,...");
    if (auto r = (*book)->create(run); !r) return fail_with(r.error());
  }

  // Events go through a writer with the handlers' routes, as serve stores them; a running serve
  // delivers them from the outbox within its poll.
  handlers::register_builtin();
  std::unique_ptr<dispatch::dispatcher> dispatch;
  std::unique_ptr<store::event_log> log;
  if (!run.dry_run) {
    auto built = dispatch::dispatcher::create(cfg->handlers);
    if (!built) return fail(exit_usage, built.error().message);
    dispatch = std::move(*built);
    if (auto rd = store::reader::open(where); rd)  // when_changed by name
      if (auto all = (*rd)->all_fields(); all)
        for (auto& [object, fields] : *all) dispatch->set_fields(object, std::move(fields));
    store::writer_options writer;
    writer.queue_capacity = cfg->store.queue_capacity;
    writer.batch_max = cfg->store.batch_max;
    writer.route = dispatch->router();
    auto opened = open_event_log(*cfg, writer, replica);
    if (!opened) return fail_with(opened.error());
    log = std::move(*opened);
  }

  asio::io_context ioc;
  auto api = pd::client::create(ioc.get_executor(), cfg->pipedrive);
  if (!api) return fail(exit_usage, api.error().message);
  std::atomic<bool> stopping{false};
  asio::signal_set signals(ioc, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int) {
    if (ec) return;
    stopping = true;
    (*api)->cancel();
  });
  const bool tty = ::isatty(STDERR_FILENO) == 1;
  pd::backfill_context ctx;
  ctx.api = api->get();
  ctx.book = book->get();
  ctx.log = log.get();
  ctx.max_calls = cfg->backfill.max_calls;
  ctx.page_size = cfg->backfill.page_size;
  ctx.replica = replica;
  ctx.stopping = &stopping;
  ctx.progress = [tty](const store::backfill_run& r) {
    std::cerr << (tty ? "\r\033[K" : "") << progress_line(r) << (tty ? "" : "\n") << std::flush;
  };
  run_blocking(ioc, carry_on(std::move(ctx), &run, &signals));
  if (tty) std::cerr << "\n";
  if (log) log->close();
  std::cout << boost::json::serialize(admin::backfill_json(run)) << "\n";
  if (run.state == "done") return exit_ok;
  if (run.state == "interrupted")
    return fail(exit_failed, "backfill run " + std::to_string(run.id) + " interrupted (" + run.error +
                                 "): go on with `pipehook backfill --resume " + std::to_string(run.id) + "`");
  return fail(exit_failed, "backfill run " + std::to_string(run.id) + " " + run.state + ": " + run.error);
}

// The config's backfill bookkeeping, or the exit code after saying why not.
std::variant<std::unique_ptr<store::backfill_store>, int> open_book(const std::string& config_path) {
  auto cfg = load(config_path);
  if (!cfg) return fail(exit_usage, cfg.error().message);
  auto book = store::backfill_store::open(store_location(*cfg));
  if (!book) return fail_with(book.error());
  return std::move(*book);
}

int cmd_backfill_list(const std::string& config_path, int limit, const std::string& format) {
  auto book = open_book(config_path);
  if (auto* code = std::get_if<int>(&book)) return *code;
  auto rows = std::get<0>(book)->list(limit);
  if (!rows) return fail_with(rows.error());
  if (format == "json") {
    boost::json::array items;
    for (const auto& r : *rows) items.push_back(admin::backfill_json(r));
    std::cout << boost::json::serialize(boost::json::object{{"backfills", std::move(items)}}) << "\n";
    return exit_ok;
  }
  if (rows->empty()) {
    std::cerr << "no backfill runs\n";
    return exit_ok;
  }
  std::vector<std::vector<std::string>> cells;
  cells.push_back({"ID", "CREATED", "REASON", "STATE", "WINDOW", "OBJECTS", "READ", "STORED", "KNOWN", "CALLS", "TOKENS"});
  for (const auto& r : *rows)
    cells.push_back({std::to_string(r.id), relative(r.created_at_us), r.reason + (r.dry_run ? " (dry run)" : ""), r.state,
                     format_rfc3339_us(r.since_us) + " .. " + format_rfc3339_us(r.until_us), store::join_objects(r.objects),
                     std::to_string(r.records_read), std::to_string(r.events_stored), std::to_string(r.already_known),
                     std::to_string(r.api_calls), std::to_string(r.token_cost)});
  print_cells(cells);
  return exit_ok;
}

int cmd_backfill_show(const std::string& config_path, std::int64_t id) {
  auto book = open_book(config_path);
  if (auto* code = std::get_if<int>(&book)) return *code;
  auto r = std::get<0>(book)->get(id);
  if (!r) return fail_with(r.error());
  if (!*r) return fail(exit_usage, "no backfill run " + std::to_string(id));
  std::cout << boost::json::serialize(admin::backfill_json(**r)) << "\n";
  return exit_ok;
}

}  // namespace

void add_backfill_commands(CLI::App& app, context& ctx) {
  auto f = std::make_shared<run_flags>();
  auto* backfill = app.add_subcommand(
      "backfill", "recover from Pipedrive's API what its webhooks did not deliver (backfill --since 2h); list and show runs");
  backfill->require_subcommand(0, 1);
  backfill->add_option("--since", f->since, "from: RFC 3339, a date, epoch seconds, or an age like 2h");
  backfill->add_option("--until", f->until, "to (default: now), same forms");
  backfill->add_option("--objects", f->objects, "deal,person,... (default: backfill.objects, else the registrar's objects)");
  backfill->add_flag("--dry-run", f->dry_run, "read and count; store nothing");
  backfill->add_option("--resume", f->resume, "carry on with a recorded run that was interrupted or capped")->check(CLI::PositiveNumber);

  auto limit = std::make_shared<int>(20);
  auto format = std::make_shared<std::string>("table");
  auto* list = backfill->add_subcommand("list", "the recorded runs, newest first: window, state, counts, API calls and tokens");
  list->add_option("--limit", *limit, "at most this many (1-1000)")->check(CLI::Range(1, 1000));
  list->add_option("--format", *format, "table or json")->check(CLI::IsMember({"table", "json"}));
  list->callback([&ctx, limit, format] { ctx.exit_code = cmd_backfill_list(ctx.config_path, *limit, *format); });

  auto id = std::make_shared<std::int64_t>(0);
  auto* show = backfill->add_subcommand("show", "one run, as JSON");
  show->add_option("id", *id, "the run's id")->required()->check(CLI::PositiveNumber);
  show->callback([&ctx, id] { ctx.exit_code = cmd_backfill_show(ctx.config_path, *id); });

  backfill->callback([&ctx, f, list, show] {
    if (list->parsed() || show->parsed()) return;
    ctx.exit_code = cmd_backfill(ctx.config_path, *f);
  });
}

}  // namespace pipehook::cli
