#include "strand/plugin.hpp"

#include <dlfcn.h>

#include <algorithm>

namespace strand {

std::vector<std::string> load_plugin(const std::filesystem::path& path, Registry& registry) {
  const std::string shown = path.string();
  // dlopen searches the library path for a bare name: a plugin is always a file, so make the path
  // explicit.
  const std::string file = path.has_parent_path() ? shown : "./" + shown;
  std::error_code error;
  if (!std::filesystem::exists(path, error)) {
    throw PluginError("strand: cannot load plugin \"" + shown + "\": no such file");
  }
  void* library = ::dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (library == nullptr) {
    const char* why = ::dlerror();
    throw PluginError("strand: cannot load plugin \"" + shown +
                      "\": " + (why != nullptr ? why : "unknown error"));
  }
  using RegisterFn = void (*)(Registry&);
  auto* symbol = ::dlsym(library, "strand_register");
  if (symbol == nullptr) {
    ::dlclose(library);
    throw PluginError("strand: plugin \"" + shown +
                      "\" exports no strand_register function (define it with STRAND_PLUGIN)");
  }
  const std::vector<std::string> before = registry.names();
  reinterpret_cast<RegisterFn>(symbol)(registry);  // the library stays loaded: its code is in use
  std::vector<std::string> added;
  for (const std::string& name : registry.names()) {
    if (!std::binary_search(before.begin(), before.end(), name)) added.push_back(name);
  }
  return added;
}

}  // namespace strand
