// on_iter needs a function that returns a range or a generator.
#include <strand/strand.hpp>

int main() {
  auto runner = strand::Taskrunner([] { return 42; }, strand::on_iter([](int) {}));
  runner();
}
