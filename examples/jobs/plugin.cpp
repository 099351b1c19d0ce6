// The example plugin: `strand worker --plugin ./libstrand_example_tasks.so` runs these functions.
#include "strand/plugin.hpp"
#include "tasks.hpp"

STRAND_PLUGIN(registry) {
  tasks::register_all(registry);
}
