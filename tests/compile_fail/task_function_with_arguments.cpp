// A task's function is called with no arguments; bind them, or give them to bg(f, args...).
#include <strand/strand.hpp>

int main() {
  auto t = strand::Task::make("t", [](int x) { return x; });
  t->run();
}
