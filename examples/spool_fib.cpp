// Spool's fibonacci: go(f) runs f in the background and hands back its channel; go_factory (the
// seed's @coroutine decorator) makes a function a factory of such tasks.
#include <cstdio>

#include <strand/strand.hpp>

long fib(int n) {
  return n < 2 ? n : fib(n - 2) + fib(n - 1);
}

// The task's side of the link comes first: it puts long values and gets ints.
void fibonacci(strand::Endpoint<long, int>& self, int n) {
  self.put(fib(n));
}

int main() {
  // chan = go(fibonacci)(10); chan.get()
  auto chan = strand::go(fibonacci, 10);
  std::printf("fib(10) = %ld\n", *chan.get());

  // @coroutine def fibonacci(n): ...; each call starts a task with its own channel
  auto fibonacci_task = strand::go_factory(fibonacci);
  auto a = fibonacci_task(20);
  auto b = fibonacci_task(25);
  std::printf("fib(20) = %ld, fib(25) = %ld\n", *a.get(), *b.get());
}
