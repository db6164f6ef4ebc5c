#include "tests/emu/fiber.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define DSV2_EMU_ASAN 1
#endif

#if !defined(__x86_64__)
#error "the CUDA emulation's fibers switch stacks with x86-64 assembly"
#endif

// dsv2_emu_switch(save, next): pushes the callee-saved registers, stores the stack pointer in
// *save, loads `next` as the stack pointer, pops that stack's registers and returns into it.
extern "C" void dsv2_emu_switch(void** save, void* next);
// A fresh fiber's first return lands here with the Fiber* in r12.
extern "C" void dsv2_emu_fiber_start();
asm(R"(
  .text
  .globl dsv2_emu_switch
  .type dsv2_emu_switch, @function
dsv2_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size dsv2_emu_switch, .-dsv2_emu_switch

  .globl dsv2_emu_fiber_start
  .type dsv2_emu_fiber_start, @function
dsv2_emu_fiber_start:
  movq %r12, %rdi
  call dsv2_emu_fiber_main
  ud2
  .size dsv2_emu_fiber_start, .-dsv2_emu_fiber_start
)");

namespace dsv2::emu {
namespace {
[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "cuda emulation: %s\n", what);
  std::abort();
}
}  // namespace
}  // namespace dsv2::emu

extern "C" void dsv2_emu_fiber_main(void* self);

namespace dsv2::emu {

Fiber::~Fiber() {
  if (stack_ != nullptr) munmap(stack_, mapped_);
}

void Fiber::Start(Entry entry, void* arg, size_t stack_bytes) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  stack_bytes = (stack_bytes + page - 1) / page * page;
  if (stack_ == nullptr || stack_bytes_ != stack_bytes) {
    if (stack_ != nullptr) munmap(stack_, mapped_);
    mapped_ = stack_bytes + page;
    void* m = mmap(nullptr, mapped_, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) Die("cannot map a fiber stack");
    stack_ = static_cast<char*>(m);
    stack_bytes_ = stack_bytes;
    mprotect(stack_, page, PROT_NONE);  // a stack overflow faults instead of corrupting
  }
#if defined(DSV2_EMU_ASAN)
  // The frames of the last fiber here that never returned (its start, its thread function and
  // the final switch, all near the top) left their redzones poisoned; the rest returned.
  const size_t dirty = stack_bytes_ < (size_t{16} << 10) ? stack_bytes_ : size_t{16} << 10;
  __asan_unpoison_memory_region(stack_ + mapped_ - dirty, dirty);
#endif
  entry_ = entry;
  arg_ = arg;
  fake_stack_ = nullptr;
  // The initial frame, as dsv2_emu_switch pops it: r15 r14 r13 r12 rbx rbp, then the return
  // address. After the return rsp = top, 16-byte aligned for the call in the start stub.
  auto top = reinterpret_cast<uintptr_t>(stack_ + mapped_);
  top &= ~uintptr_t{15};
  auto* slot = reinterpret_cast<void**>(top) - 7;  // 6 registers and the return address
  slot[0] = nullptr;                               // r15
  slot[1] = nullptr;                               // r14
  slot[2] = nullptr;                               // r13
  slot[3] = this;                                  // r12: the Fiber
  slot[4] = nullptr;                               // rbx
  slot[5] = nullptr;                               // rbp: ends frame-pointer walks
  slot[6] = reinterpret_cast<void*>(&dsv2_emu_fiber_start);
  sp_ = slot;
}

void Fiber::Resume() {
#if defined(DSV2_EMU_ASAN)
  __sanitizer_start_switch_fiber(&scheduler_fake_stack_, stack_ + (mapped_ - stack_bytes_),
                                 stack_bytes_);
#endif
  dsv2_emu_switch(&scheduler_sp_, sp_);
#if defined(DSV2_EMU_ASAN)
  __sanitizer_finish_switch_fiber(scheduler_fake_stack_, nullptr, nullptr);
#endif
}

void Fiber::Yield() {
#if defined(DSV2_EMU_ASAN)
  __sanitizer_start_switch_fiber(&fake_stack_, scheduler_bottom_, scheduler_size_);
#endif
  dsv2_emu_switch(&sp_, scheduler_sp_);
#if defined(DSV2_EMU_ASAN)
  __sanitizer_finish_switch_fiber(fake_stack_, &scheduler_bottom_, &scheduler_size_);
#endif
}

void Fiber::Exit() {
#if defined(DSV2_EMU_ASAN)
  __sanitizer_start_switch_fiber(nullptr, scheduler_bottom_, scheduler_size_);  // stack dies
#endif
  void* unused = nullptr;
  dsv2_emu_switch(&unused, scheduler_sp_);
  Die("a finished fiber was resumed");
}

void Fiber::Trampoline(Fiber* self) {
#if defined(DSV2_EMU_ASAN)
  __sanitizer_finish_switch_fiber(nullptr, &self->scheduler_bottom_, &self->scheduler_size_);
#endif
  self->entry_(self->arg_);
  self->Exit();
}

}  // namespace dsv2::emu

extern "C" void dsv2_emu_fiber_main(void* self) {
  dsv2::emu::Fiber::Trampoline(static_cast<dsv2::emu::Fiber*>(self));
}
