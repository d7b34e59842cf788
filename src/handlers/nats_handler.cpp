// `nats`: publishes each event to NATS JetStream (the nats.c client, libnats) on a subject built
// from a template (default "pipedrive.{entity}.{action}"), with Nats-Msg-Id = the event key so
// JetStream's duplicate window drops redeliveries. A delivery is done only after the PubAck.
// The client reconnects on its own; while the server is away, publishes time out and the outbox
// retries them. Creating the stream is optional and off by default (create_stream = true makes it
// capture the subject's literal prefix, "pipedrive.>", with file storage). Authentication: a .creds
// file (credentials_file) or an nkey with its seed file; TLS (tls://, ca_file, client_cert/key).
#include "handlers.hpp"

#include "pipehook/event/json.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/serialize.hpp>
#include <nats/nats.h>

#include <mutex>
#include <unistd.h>

namespace pipehook::handlers {
namespace {

namespace asio = boost::asio;

struct nats_options {
  std::string url;
  std::string subject;  // template
  std::string stream;
  bool create_stream = false;
  bool envelope = false;
  std::int64_t timeout_ms = 5'000;
  // Authentication and TLS (each optional): a .creds file (JWT + seed), or an nkey and its seed
  // file; TLS with a CA bundle and a client certificate.
  std::string credentials_file, nkey, nkey_seed_file;
  bool tls = false;
  std::string ca_file, client_cert, client_key;
};

std::string stream_filter(const std::string& tmpl) {
  // The literal tokens before the first placeholder, then ">".
  std::string out;
  std::size_t pos = 0;
  while (pos < tmpl.size()) {
    const auto dot = tmpl.find('.', pos);
    const std::string token = tmpl.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos);
    if (token.find('{') != std::string::npos) break;
    out += token + ".";
    if (dot == std::string::npos) return tmpl;  // no placeholder at all
    pos = dot + 1;
  }
  return out + ">";
}

class nats_handler final : public dispatch::handler {
 public:
  nats_handler(nats_options o, unsigned threads) : o_(std::move(o)), pool_(threads) {}
  ~nats_handler() override {
    pool_.join();
    if (js_) jsCtx_Destroy(js_);
    if (nc_) natsConnection_Destroy(nc_);
  }

  std::string subject_for(const event::event& e) const { return render_topic(o_.subject, e); }

  asio::awaitable<dispatch::delivery_result> deliver(const event::stored_event& se) override {
    std::string payload = o_.envelope ? boost::json::serialize(event::to_json_envelope(se)) : se.ev.body;
    auto op = asio::co_spawn(pool_.get_executor(),
                             publish_on_pool(this, subject_for(se.ev), std::move(payload), se.ev.event_key, se.ev.entity,
                                             se.ev.action, se.id),
                             asio::use_awaitable);
    co_return co_await std::move(op);
  }

 private:
  static asio::awaitable<dispatch::delivery_result> publish_on_pool(nats_handler* self, std::string subject,
                                                                    std::string payload, std::string key,
                                                                    std::string entity, std::string action,
                                                                    std::int64_t id) {
    co_return self->publish(subject, payload, key, entity, action, id);
  }

  static std::string describe(natsStatus s, jsErrCode jerr = static_cast<jsErrCode>(0)) {
    std::string out = natsStatus_GetText(s);
    if (jerr) out += " (JetStream error " + std::to_string(static_cast<int>(jerr)) + ")";
    const char* last = nats_GetLastError(nullptr);
    if (last && *last && out.find(last) == std::string::npos) out += ": " + std::string(last);
    return out;
  }

  // Blocking, on the pool: connect on first use, (optionally) create the stream, publish, await the PubAck.
  dispatch::delivery_result publish(const std::string& subject, const std::string& payload, const std::string& key,
                                    const std::string& entity, const std::string& action, std::int64_t id) {
    if (auto err = ensure_ready()) return dispatch::delivery_result::retry(*err);
    natsMsg* msg = nullptr;
    natsStatus s = natsMsg_Create(&msg, subject.c_str(), nullptr, payload.data(), static_cast<int>(payload.size()));
    if (s != NATS_OK) return dispatch::delivery_result::permanent("cannot build a message for " + subject + ": " + describe(s));
    natsMsgHeader_Set(msg, "Pipehook-Entity", entity.c_str());
    natsMsgHeader_Set(msg, "Pipehook-Action", action.c_str());
    natsMsgHeader_Set(msg, "Pipehook-Event-Id", std::to_string(id).c_str());
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MsgId = key.c_str();  // JetStream drops a repeat within the stream's duplicate window
    po.MaxWait = o_.timeout_ms;
    jsPubAck* ack = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    s = js_PublishMsg(&ack, js_, msg, &po, &jerr);
    natsMsg_Destroy(msg);
    if (s == NATS_OK) {
      jsPubAck_Destroy(ack);
      return dispatch::delivery_result::ok();
    }
    std::string why = "publish to " + subject + " on " + o_.url + " failed: " + describe(s, jerr);
    if (s == NATS_NO_RESPONDERS)
      why += "; no JetStream stream captures this subject (create one, or set create_stream = true)";
    return dispatch::delivery_result::retry(why);
  }

  std::optional<std::string> ensure_ready() {
    std::lock_guard lk(mu_);
    if (!nc_) {
      natsOptions* opts = nullptr;
      natsOptions_Create(&opts);
      natsOptions_SetURL(opts, o_.url.c_str());
      natsOptions_SetTimeout(opts, o_.timeout_ms);
      natsOptions_SetMaxReconnect(opts, -1);  // forever: the outbox holds what is not acknowledged
      natsOptions_SetReconnectWait(opts, 500);
      // With a callback the first connect is asynchronous: without one, nats.c blocks here until it
      // connects (forever, with MaxReconnect -1), holding every delivery and the shutdown.
      natsOptions_SetRetryOnFailedConnect(opts, true, [](natsConnection*, void*) {}, nullptr);
      if (auto err = secure(opts)) {
        natsOptions_Destroy(opts);
        return *err;
      }
      natsStatus s = natsConnection_Connect(&nc_, opts);
      natsOptions_Destroy(opts);
      if (s != NATS_OK && s != NATS_NOT_YET_CONNECTED) {
        nc_ = nullptr;
        return "cannot connect to " + o_.url + ": " + describe(s);
      }
      jsOptions jo;
      jsOptions_Init(&jo);
      jo.Wait = o_.timeout_ms;
      s = natsConnection_JetStream(&js_, nc_, &jo);
      if (s != NATS_OK) return "cannot use JetStream on " + o_.url + ": " + describe(s);
    }
    if (o_.create_stream && !stream_ready_) {
      jsStreamConfig cfg;
      jsStreamConfig_Init(&cfg);
      cfg.Name = o_.stream.c_str();
      const std::string filter = stream_filter(o_.subject);
      const char* subjects[] = {filter.c_str()};
      cfg.Subjects = subjects;
      cfg.SubjectsLen = 1;
      cfg.Storage = js_FileStorage;
      jsStreamInfo* si = nullptr;
      jsErrCode jerr = static_cast<jsErrCode>(0);
      natsStatus s = js_AddStream(&si, js_, &cfg, nullptr, &jerr);
      if (si) jsStreamInfo_Destroy(si);
      if (s != NATS_OK && jerr != JSStreamNameExistErr)
        return "cannot create stream " + o_.stream + " (" + filter + ") on " + o_.url + ": " + describe(s, jerr);
      stream_ready_ = true;
    }
    return std::nullopt;
  }

  // Credentials and TLS onto the connection's options; an error names what could not be used.
  std::optional<std::string> secure(natsOptions* opts) const {
    natsStatus s = NATS_OK;
    if (!o_.credentials_file.empty() &&
        (s = natsOptions_SetUserCredentialsFromFiles(opts, o_.credentials_file.c_str(), nullptr)) != NATS_OK)
      return "cannot use credentials_file " + o_.credentials_file + ": " + describe(s);
    if (!o_.nkey.empty() && (s = natsOptions_SetNKeyFromSeed(opts, o_.nkey.c_str(), o_.nkey_seed_file.c_str())) != NATS_OK)
      return "cannot use nkey_seed_file " + o_.nkey_seed_file + ": " + describe(s);
    if (o_.tls && (s = natsOptions_SetSecure(opts, true)) != NATS_OK) return "cannot turn on TLS: " + describe(s);
    if (!o_.ca_file.empty() && (s = natsOptions_LoadCATrustedCertificates(opts, o_.ca_file.c_str())) != NATS_OK)
      return "cannot load ca_file " + o_.ca_file + ": " + describe(s);
    if (!o_.client_cert.empty() &&
        (s = natsOptions_LoadCertificatesChain(opts, o_.client_cert.c_str(), o_.client_key.c_str())) != NATS_OK)
      return "cannot load client_cert " + o_.client_cert + " / client_key " + o_.client_key + ": " + describe(s);
    return std::nullopt;
  }

  nats_options o_;
  asio::thread_pool pool_;
  std::mutex mu_;
  natsConnection* nc_ = nullptr;
  jsCtx* js_ = nullptr;
  bool stream_ready_ = false;
};

outcome<std::unique_ptr<dispatch::handler>> make_nats(const config::handler_config& h, dispatch::settings_reader& s,
                                                      asio::any_io_executor) {
  nats_options o;
  auto url = s.string("url", "nats://127.0.0.1:4222");
  if (!url) return url.error();
  o.url = *url;
  if (o.url.find("://") == std::string::npos)
    return make_failure(errc::invalid_config, s.name("url") + " must be like nats://host:4222 (got \"" + o.url + "\")");
  auto subject = s.string("subject", "pipedrive.{entity}.{action}");
  if (!subject) return subject.error();
  o.subject = *subject;
  if (auto ok = check_topic_template(o.subject, s.name("subject")); !ok) return ok.error();
  if (o.subject.empty() || o.subject.find_first_of(" *>") != std::string::npos || o.subject.front() == '.' ||
      o.subject.back() == '.')
    return make_failure(errc::invalid_config, s.name("subject") + " \"" + o.subject + "\" is not a valid NATS subject");
  auto stream = s.string("stream", "PIPEDRIVE");
  if (!stream) return stream.error();
  o.stream = *stream;
  auto create = s.boolean("create_stream", false);
  if (!create) return create.error();
  o.create_stream = *create;
  auto body = s.one_of("body", "original", {"original", "envelope"});
  if (!body) return body.error();
  o.envelope = *body == "envelope";
  auto timeout = s.duration_ms("timeout", 5'000, 100, 600'000);
  if (!timeout) return timeout.error();
  o.timeout_ms = *timeout;
  for (auto [key, out] : {std::pair<const char*, std::string*>{"credentials_file", &o.credentials_file},
                          {"nkey_seed_file", &o.nkey_seed_file}}) {
    auto v = s.readable_file(key);
    if (!v) return v.error();
    *out = *v;
  }
  auto nkey = s.string("nkey");
  if (!nkey) return nkey.error();
  o.nkey = *nkey;
  auto files = s.tls();
  if (!files) return files.error();
  o.ca_file = files->ca_file, o.client_cert = files->client_cert, o.client_key = files->client_key;
  auto tls = s.boolean("tls", o.url.rfind("tls://", 0) == 0 || !o.ca_file.empty() || !o.client_cert.empty());
  if (!tls) return tls.error();
  o.tls = *tls;
  if (!o.credentials_file.empty() && !o.nkey.empty())
    return make_failure(errc::invalid_config, s.name("credentials_file") + " and " + s.name("nkey") + " are both set: keep one");
  if (o.nkey.empty() != o.nkey_seed_file.empty())
    return make_failure(errc::invalid_config, s.name("nkey") + " (the public key, U...) and " + s.name("nkey_seed_file") + " go together");
  if (!o.nkey.empty() && o.nkey[0] != 'U')
    return make_failure(errc::invalid_config, s.name("nkey") + " must be a user's public nkey (it starts with U)");
  return std::make_unique<nats_handler>(std::move(o), h.concurrency);
}

}  // namespace

void register_nats() { dispatch::register_handler_type("nats", make_nats); }

}  // namespace pipehook::handlers
