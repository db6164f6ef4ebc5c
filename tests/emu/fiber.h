// Fibers for the CUDA emulation: a stack and a saved stack pointer, switched by a few lines of
// x86-64 assembly (callee-saved registers only: the switch is a function call to the compiler).
// Under ASan every switch is announced (__sanitizer_start/finish_switch_fiber) so that its
// stack bookkeeping follows.
#pragma once

#include <cstddef>

namespace dsv2::emu {

class Fiber {
 public:
  using Entry = void (*)(void* arg);

  Fiber() = default;
  ~Fiber();
  Fiber(const Fiber&) = delete;
  Fiber& operator=(const Fiber&) = delete;

  // Prepares the fiber to run entry(arg) on its own stack (allocated once, `stack_bytes`,
  // with a guard page below it) at the next Resume(). entry must end with Exit().
  void Start(Entry entry, void* arg, size_t stack_bytes);
  // From the scheduler: runs the fiber until it calls Yield() or Exit().
  void Resume();
  // From inside the fiber: back to the scheduler; returns at the next Resume().
  void Yield();
  // From inside the fiber: back to the scheduler for good.
  [[noreturn]] void Exit();

  // The first code a fiber runs (called from the assembly start stub).
  static void Trampoline(Fiber* self);

 private:
  void* sp_ = nullptr;            // the fiber's saved stack pointer while it is switched out
  void* scheduler_sp_ = nullptr;  // the scheduler's, while the fiber runs
  char* stack_ = nullptr;         // mapping: guard page, then stack_bytes_
  size_t stack_bytes_ = 0;
  size_t mapped_ = 0;
  Entry entry_ = nullptr;
  void* arg_ = nullptr;
  // ASan: the fake stacks and the scheduler's stack bounds.
  void* fake_stack_ = nullptr;
  void* scheduler_fake_stack_ = nullptr;
  const void* scheduler_bottom_ = nullptr;
  size_t scheduler_size_ = 0;
};

}  // namespace dsv2::emu
