// A process task's result crosses a pipe, so its type must be serializable.
#include <strand/strand.hpp>

struct Opaque {
  int x;
};

int main() {
  auto task = strand::as_task(strand::process, [] { return Opaque{1}; });
  (void)task();
}
