#pragma once
// systemd socket activation without libsystemd (the sd_listen_fds protocol): when LISTEN_PID is
// this process, LISTEN_FDS sockets start at fd 3, named by LISTEN_FDNAMES (FileDescriptorName=).

#include "pipehook/core/error.hpp"

namespace pipehook {

struct activated_sockets {
  int webhook = -1;  // named "webhook", or the first unnamed one
  int admin = -1;    // named "admin", or the second unnamed one
};

// Takes the sockets passed by systemd (and unsets the variables, so children do not see them).
// None passed: both -1. An fd that is not a listening stream socket, or a name that is neither
// "webhook" nor "admin", is an error that says which.
outcome<activated_sockets> take_activated_sockets();

}  // namespace pipehook
