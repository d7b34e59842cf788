#include "pipehook/core/socket_activation.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

namespace pipehook {

outcome<activated_sockets> take_activated_sockets() {
  activated_sockets out;
  const char* pid_text = std::getenv("LISTEN_PID");
  const char* fds_text = std::getenv("LISTEN_FDS");
  if (!pid_text || !fds_text) return out;
  const long pid = std::strtol(pid_text, nullptr, 10);
  const long count = std::strtol(fds_text, nullptr, 10);
  const std::string names_text = std::getenv("LISTEN_FDNAMES") ? std::getenv("LISTEN_FDNAMES") : "";
  ::unsetenv("LISTEN_PID");
  ::unsetenv("LISTEN_FDS");
  ::unsetenv("LISTEN_FDNAMES");
  if (pid != ::getpid() || count <= 0) return out;  // meant for another process
  if (count > 2)
    return make_failure(errc::invalid_config, "socket activation passed " + std::to_string(count) +
                                                  " sockets; pipehook takes at most two (webhook, admin)");
  std::vector<std::string> names;
  for (std::size_t start = 0; start <= names_text.size();) {
    const auto colon = names_text.find(':', start);
    names.push_back(names_text.substr(start, colon == std::string::npos ? std::string::npos : colon - start));
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  int unnamed = 0;
  for (int i = 0; i < count; ++i) {
    const int fd = 3 + i;
    int listening = 0, type = 0;
    socklen_t len = sizeof listening;
    if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening ||
        ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &(len = sizeof type)) != 0 || type != SOCK_STREAM)
      return make_failure(errc::invalid_config, "socket activation: fd " + std::to_string(fd) +
                                                    " is not a listening stream socket (ListenStream= in the .socket unit)");
    ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    const std::string name = i < static_cast<int>(names.size()) ? names[static_cast<std::size_t>(i)] : "";
    int* slot = nullptr;
    if (name == "webhook") slot = &out.webhook;
    else if (name == "admin") slot = &out.admin;
    else if (name.empty() || name == "unknown" || name == "pipehook.socket") slot = unnamed++ == 0 ? &out.webhook : &out.admin;
    else
      return make_failure(errc::invalid_config, "socket activation: a socket named \"" + name +
                                                    "\"; name them webhook and admin (FileDescriptorName=)");
    if (*slot != -1) return make_failure(errc::invalid_config, "socket activation: two sockets for the same listener");
    *slot = fd;
  }
  return out;
}

}  // namespace pipehook
