#include "pipehook/cli/commands.hpp"

int main(int argc, char** argv) { return pipehook::cli::run(argc, argv); }
