// The container's runtime stage installs exactly the shared libraries the binary links: every
// library `ldd` lists comes from a package the Dockerfile installs (or the slim base image has),
// and every library package it installs is needed. No Docker engine runs here, so this is the check.
#include "support.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <regex>
#include <unistd.h>
#include <set>

namespace pipehook {
namespace {

std::string run(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return out;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  ::pclose(p);
  return out;
}

// The Debian package owning a file (merged /usr: dpkg may know it under /lib or /usr/lib).
std::string package_of(const std::string& path) {
  for (const std::string& candidate : {path, path.rfind("/usr", 0) == 0 ? path.substr(4) : "/usr" + path}) {
    const std::string out = run("dpkg-query -S '" + candidate + "' 2>/dev/null");
    if (!out.empty()) return out.substr(0, out.find(':'));
  }
  return {};
}

TEST(container, the_runtime_stage_installs_what_the_binary_links) {
  const std::string dockerfile = test::read_file(std::string(PIPEHOOK_SOURCE_DIR) + "/docker/Dockerfile");
  const auto runtime = dockerfile.substr(dockerfile.find("FROM debian:bookworm-slim"));
  const auto install_at = runtime.find("apt-get install");
  ASSERT_NE(install_at, std::string::npos);
  const std::string install = runtime.substr(install_at, runtime.find("&& rm -rf", install_at) - install_at);
  std::set<std::string> installed;
  const std::regex word(R"(\b(lib[a-z0-9.+-]+))");
  for (std::sregex_iterator it(install.begin(), install.end(), word), end; it != end; ++it) installed.insert((*it)[1]);

  // In debian:bookworm-slim already: the C/C++ runtime, and GnuTLS with its chain (apt's own
  // dependencies; libpq's LDAP client links them).
  const std::set<std::string> in_slim_base{"libc6", "libgcc-s1", "libstdc++6", "libgnutls30", "libffi8", "libgmp10",
                                           "libhogweed6", "libidn2-0", "libnettle8", "libp11-kit0", "libtasn1-6",
                                           "libunistring2"};
  std::set<std::string> needed;
  const std::string ldd = run(std::string("ldd '") + PIPEHOOK_BINARY + "'");
  if (ldd.find("libasan") != std::string::npos || ldd.find("libubsan") != std::string::npos)
    GTEST_SKIP() << "a sanitizer build links its runtime; the image's binary is a plain release build";
  const std::regex lib(R"(=>\s+(\S+)\s+\()");
  for (std::sregex_iterator it(ldd.begin(), ldd.end(), lib), end; it != end; ++it) {
    const std::string pkg = package_of((*it)[1]);
    ASSERT_FALSE(pkg.empty()) << "no package owns " << (*it)[1];
    if (in_slim_base.count(pkg)) continue;
    needed.insert(pkg);
    EXPECT_TRUE(installed.count(pkg)) << (*it)[1] << " comes from " << pkg
                                      << ", which docker/Dockerfile's runtime stage does not install";
  }
  for (const auto& pkg : installed)
    EXPECT_TRUE(needed.count(pkg)) << "docker/Dockerfile installs " << pkg << ", which the binary does not link";
}

TEST(install, cmake_install_puts_the_binary_the_example_config_and_a_unit_that_runs_it) {
  test::temp_dir dir;
  const std::string prefix = dir.file("root");
  const std::string out = run("cmake --install '" + std::string(PIPEHOOK_BUILD_DIR) + "' --prefix '" + prefix + "' 2>&1");
  for (const char* f : {"/bin/pipehook", "/share/pipehook/pipehook.toml", "/lib/systemd/system/pipehook.service",
                        "/lib/systemd/system/pipehook.socket"})
    EXPECT_TRUE(std::filesystem::exists(prefix + f)) << f << " not installed:\n" << out;
  const std::string unit = test::read_file(prefix + "/lib/systemd/system/pipehook.service");
  // The unit names the binary where the configured prefix puts it, reloads with SIGHUP, and is hardened.
  EXPECT_NE(unit.find("ExecStart=" + std::string(PIPEHOOK_INSTALL_BINDIR) + "/pipehook --config /etc/pipehook/pipehook.toml serve"),
            std::string::npos)
      << unit;
  for (const char* line : {"ExecReload=/bin/kill -HUP $MAINPID", "DynamicUser=yes", "StateDirectory=pipehook",
                           "ProtectSystem=strict", "NoNewPrivileges=yes", "Type=exec"})
    EXPECT_NE(unit.find(line), std::string::npos) << line;
  EXPECT_FALSE(std::regex_search(unit, std::regex("@[A-Z_]+@"))) << "an unconfigured @VARIABLE@ is left";
  // systemd's own check of the unit (with ExecStart pointed at the binary just installed).
  if (::access("/usr/bin/systemd-analyze", X_OK) == 0) {
    std::string local = unit;
    const std::string from = "ExecStart=" + std::string(PIPEHOOK_INSTALL_BINDIR) + "/pipehook";
    local.replace(local.find(from), from.size(), "ExecStart=" + prefix + "/bin/pipehook");
    test::write_file(dir.file("pipehook.service"), local);
    std::filesystem::copy_file(prefix + "/lib/systemd/system/pipehook.socket", dir.file("pipehook.socket"));
    const std::string verify =
        run("systemd-analyze verify '" + dir.file("pipehook.service") + "' '" + dir.file("pipehook.socket") + "' 2>&1");
    EXPECT_EQ(verify.find("pipehook.service:"), std::string::npos) << verify;
    EXPECT_EQ(verify.find("pipehook.socket:"), std::string::npos) << verify;
  }
  // The installed binary runs (its libraries resolve) and the installed example config is valid.
  EXPECT_NE(run("'" + prefix + "/bin/pipehook' version").find("pipehook "), std::string::npos);
  const std::string check = run("PIPEHOOK_AUTH_PASSWORD=x '" + prefix + "/bin/pipehook' --config '" + prefix +
                                "/share/pipehook/pipehook.toml' check-config 2>&1");
  EXPECT_NE(check.find("configuration OK"), std::string::npos) << check;
}

}  // namespace
}  // namespace pipehook
