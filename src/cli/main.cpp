#include "cli/commands.hpp"

int main(int argc, char** argv) {
  return tpinfer::cli_main(argc, argv);
}
