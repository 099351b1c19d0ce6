// Each callback option may be given once.
#include <strand/strand.hpp>

int main() {
  auto runner =
      strand::Taskrunner([] { return 1; }, strand::on_end([](int) {}), strand::on_end([](int) {}));
  runner();
}
