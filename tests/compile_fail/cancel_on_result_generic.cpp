// cancel_on_result needs to know the result type: a generic (auto) predicate is refused.
#include <strand/strand.hpp>

int main() {
  auto t = strand::Task::make("t", [] { return 1; });
  t->cancel_on_result([](const auto& r) { return r > 0; });
}
