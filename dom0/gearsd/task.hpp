// Task: a move-only nullary callable (std::function requires copyable targets; tasks often own unique_ptrs).
#pragma once

#include <memory>
#include <type_traits>
#include <utility>

namespace gears::daemon {

class Task {
 public:
  Task() = default;
  template <class F, class = std::enable_if_t<!std::is_same_v<std::decay_t<F>, Task>>>
  Task(F&& f) : impl_(std::make_unique<Impl<std::decay_t<F>>>(std::forward<F>(f))) {}  // NOLINT

  void operator()() { (*impl_)(); }
  explicit operator bool() const { return impl_ != nullptr; }

 private:
  struct Base {
    virtual ~Base() = default;
    virtual void operator()() = 0;
  };
  template <class F>
  struct Impl final : Base {
    explicit Impl(F&& f) : fn(std::move(f)) {}
    explicit Impl(const F& f) : fn(f) {}
    void operator()() override { fn(); }
    F fn;
  };
  std::unique_ptr<Base> impl_;
};

}  // namespace gears::daemon
