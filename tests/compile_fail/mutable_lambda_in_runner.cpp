// A runner may call its function from several threads at once: a mutable lambda is refused.
#include <strand/strand.hpp>

int main() {
  int calls = 0;
  auto runner = strand::Taskrunner([calls]() mutable { return ++calls; });
  runner();
}
