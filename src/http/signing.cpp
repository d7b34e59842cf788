#include "pipehook/http/signing.hpp"

#include "pipehook/core/codec.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>

namespace pipehook::http {

outcome<std::string> signing_key(const std::string& secret, const std::string& key_name) {
  if (secret.rfind("whsec_", 0) != 0) return secret;
  auto key = base64_decode(std::string_view(secret).substr(6));
  if (!key) return make_failure(errc::invalid_config, key_name + ": whsec_ secret is not valid base64");
  return *key;
}

std::string webhook_signature(std::string_view key, std::string_view id, std::string_view timestamp, std::string_view body) {
  std::string content;
  content.reserve(id.size() + timestamp.size() + body.size() + 2);
  content.append(id).append(".").append(timestamp).append(".").append(body);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(content.data()),
       content.size(), mac, &mac_len);
  return "v1," + base64_encode(std::string_view(reinterpret_cast<const char*>(mac), mac_len));
}

}  // namespace pipehook::http
