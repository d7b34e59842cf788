#pragma once
// The `pipehook` command line (CLI11): serve, check-config, events list|show, version.

namespace pipehook::cli {

// Runs the command line; returns the exit code: 0 done, 1 failed at run time, 2 bad usage or config.
int run(int argc, char** argv);

}  // namespace pipehook::cli
