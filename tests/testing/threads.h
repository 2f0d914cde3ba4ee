// RunThreads: run one function on many threads that start together.
#ifndef SESSIOND_TESTS_TESTING_THREADS_H_
#define SESSIOND_TESTS_TESTING_THREADS_H_

#include <atomic>
#include <thread>
#include <vector>

namespace sessiond::testing {

// Runs `fn(i)` for i in [0, n) on `n` threads that all start once every
// one of them is running; returns when they are done.
template <typename Fn>
void RunThreads(int n, Fn fn) {
  std::atomic<int> ready{0};
  std::vector<std::thread> threads;
  threads.reserve(n);
  for (int i = 0; i < n; ++i) {
    threads.emplace_back([&, i] {
      ready.fetch_add(1);
      while (ready.load() < n) std::this_thread::yield();
      fn(i);
    });
  }
  for (std::thread& t : threads) t.join();
}

}  // namespace sessiond::testing

#endif  // SESSIOND_TESTS_TESTING_THREADS_H_
