// A handle owns its value: Handle<T&> is refused.
#include <strand/strand.hpp>

int main() {
  strand::Handle<int&> h;
  (void)h;
}
