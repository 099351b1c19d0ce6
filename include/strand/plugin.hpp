// strand/plugin.hpp — functions for a worker from a shared library (what `strand worker --plugin`
// loads).
//
//   // tasks.cpp, built as libtasks.so (add_library(tasks MODULE tasks.cpp), linked to strand)
//   #include <strand/plugin.hpp>
//   STRAND_PLUGIN(registry) {
//     registry.add("resize", resize);
//     registry.add("thumbnail", thumbnail);
//   }
//
//   // the worker
//   strand::Registry registry;
//   strand::load_plugin("./libtasks.so", registry);
//
// A plugin exports one C function, `strand_register`, that adds its functions to the registry it
// is given. The library stays loaded for the life of the process (its functions are in the
// registry). The plugin must be built with the same compiler and strand as the program loading it:
// the registry crosses as a C++ object.
#pragma once

#include <filesystem>

#include "strand/errors.hpp"
#include "strand/registry.hpp"

// Defines the plugin's registration function; the body adds to `registry`.
#define STRAND_PLUGIN(registry)                                           \
  extern "C" __attribute__((visibility("default"))) void strand_register( \
      ::strand::Registry& registry)

namespace strand {

// A plugin that cannot be loaded: a missing file, not a shared library, a library that does not
// export strand_register. The message names the file and says which.
class PluginError : public Error {
 public:
  using Error::Error;
};

// Loads the plugin at `path` and lets it add its functions to `registry`. Returns the names it
// added. PluginError if the file cannot be loaded or exports no strand_register.
std::vector<std::string> load_plugin(const std::filesystem::path& path, Registry& registry);

}  // namespace strand
