// Host emulation of the small part of CUDA that cuda_rasterizer/csrc/*_cuda.cu use, so that the kernels can be
// compiled with g++ and *run* on a machine without a GPU (scripts/check_cuda_emulated.sh). It stands in for the real
// <cuda_runtime.h> through the include path; the kernel sources are compiled unchanged.
//
// Model: a grid runs block by block. The threads of a block are fibers on one OS thread, switched only
// at synchronisation points, so __syncthreads, __syncthreads_count/or, __shfl_down_sync and __any_sync have their
// CUDA meaning (every thread of the block / warp must arrive), shared memory (`__shared__` -> function-static, one
// block at a time) is shared, and atomics need no locking. What it checks: indexing, batching, barriers (a thread
// that never reaches a barrier its block or warp waits at is reported as a deadlock, as is a warp whose lanes
// reach different warp operations), reductions and the algorithm. What it cannot check: timing, memory-model races
// between real concurrent threads, GPU floating point (it runs host float math, without FMA contraction).
#pragma once

#include <setjmp.h>
#include <ucontext.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};

inline dim3 threadIdx, blockIdx, blockDim, gridDim;  // set by the scheduler before it resumes a thread

typedef struct CUstream_st* cudaStream_t;
enum cudaError_t { cudaSuccess = 0, cudaErrorInvalidValue = 1 };
inline const char* cudaGetErrorString(cudaError_t e) { return e == cudaSuccess ? "no error" : "emulated error"; }
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t = nullptr) {
  std::memset(p, value, bytes);
  return cudaSuccess;
}

inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned int __float_as_uint(float f) {
  unsigned int u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
}

namespace s4d_emu {

[[noreturn]] inline void fail(const char* what) {
  std::fprintf(stderr, "CUDA emulation error: %s (block %u,%u,%u thread %u)\n", what, blockIdx.x, blockIdx.y,
               blockIdx.z, threadIdx.x);
  std::abort();
}

enum class WarpOp { none, shfl, any };

struct Warp {
  int arrived = 0;
  long generation = 0;
  WarpOp op = WarpOp::none;
  uint64_t slots[2][32] = {};
};

// A fiber starts on its own stack with makecontext/setcontext and then switches with _setjmp/_longjmp, which
// (unlike swapcontext) make no signal-mask system call: the backward kernels switch lanes tens of millions of times.
struct Fiber {
  ucontext_t ctx;
  jmp_buf jb;
  std::vector<char> stack;
  bool started = false, finished = false;
};

struct Block {
  int n_threads = 0;
  std::vector<Fiber> fibers;
  std::vector<Warp> warps;
  jmp_buf scheduler;
  int current = 0;
  bool progress = false;
  // __syncthreads / __syncthreads_count
  int arrived = 0;
  long generation = 0;
  int count_acc = 0, count_result = 0;
};

inline Block* g_block = nullptr;
inline const std::function<void()>* g_body = nullptr;

[[gnu::noinline]] inline void yield() {
  if (_setjmp(g_block->fibers[g_block->current].jb) == 0) _longjmp(g_block->scheduler, 1);
}

inline int linear_tid() { return static_cast<int>(threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)); }

// Block barrier; returns the number of threads that passed a true predicate.
inline int block_barrier(bool pred) {
  Block& b = *g_block;
  const long gen = b.generation;
  b.count_acc += pred ? 1 : 0;
  b.progress = true;
  if (++b.arrived == b.n_threads) {
    b.arrived = 0;
    b.count_result = b.count_acc;
    b.count_acc = 0;
    ++b.generation;
  } else {
    while (b.generation == gen) yield();
  }
  return b.count_result;  // overwritten only once every thread has arrived at the next barrier
}

// Warp barrier after this lane stored `value` in its slot; returns the slot row the warp wrote (double-buffered:
// a lane can never be two warp operations ahead of another, so the other row is free for the next operation).
inline const uint64_t* warp_exchange(WarpOp op, uint64_t value) {
  Block& b = *g_block;
  const int tid = linear_tid();
  Warp& w = b.warps[tid / 32];
  const long gen = w.generation;
  const int row = static_cast<int>(gen & 1);
  if (w.arrived == 0) w.op = op;
  else if (w.op != op) fail("lanes of one warp reached different warp operations (divergent shuffle)");
  w.slots[row][tid % 32] = value;
  b.progress = true;
  if (++w.arrived == 32) {
    w.arrived = 0;
    w.op = WarpOp::none;
    ++w.generation;
  } else {
    while (w.generation == gen) yield();
  }
  return w.slots[row];
}

inline void trampoline() {
  (*g_body)();
  g_block->fibers[g_block->current].finished = true;
  g_block->progress = true;
  _longjmp(g_block->scheduler, 1);  // never returns
}

// Runs fiber t until it finishes or waits at a barrier. Not inlined, so that the scheduler loop's registers are
// those saved by the _setjmp here.
[[gnu::noinline]] inline void resume(Block& b, int t) {
  Fiber& f = b.fibers[t];
  if (_setjmp(b.scheduler) == 0) {
    if (!f.started) {
      f.started = true;
      setcontext(&f.ctx);
    }
    _longjmp(f.jb, 1);
  }
}

// Runs `body` once per thread of every block of the grid.
inline void run_grid(dim3 grid, dim3 block, const std::function<void()>& body) {
  const int n = static_cast<int>(block.x * block.y * block.z);
  if (n % 32 != 0) fail("the emulation supports whole warps only (block size a multiple of 32)");
  constexpr size_t STACK = 256 * 1024;
  Block b;
  b.n_threads = n;
  b.fibers.resize(n);
  for (Fiber& f : b.fibers) f.stack.resize(STACK);
  g_body = &body;
  gridDim = grid;
  blockDim = block;
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        b.warps.assign(n / 32, Warp{});
        b.arrived = 0;
        b.count_acc = 0;
        g_block = &b;
        blockIdx = dim3(bx, by, bz);
        for (Fiber& f : b.fibers) {
          f.started = f.finished = false;
          getcontext(&f.ctx);
          f.ctx.uc_stack.ss_sp = f.stack.data();
          f.ctx.uc_stack.ss_size = f.stack.size();
          f.ctx.uc_link = nullptr;
          makecontext(&f.ctx, trampoline, 0);
        }
        int alive = n;
        while (alive > 0) {
          b.progress = false;
          alive = 0;
          for (int t = 0; t < n; ++t) {
            if (b.fibers[t].finished) continue;
            b.current = t;
            threadIdx = dim3(t % block.x, (t / block.x) % block.y, t / (block.x * block.y));
            resume(b, t);
            if (!b.fibers[t].finished) ++alive;
          }
          if (alive > 0 && !b.progress) fail("deadlock: threads wait at a barrier that some thread never reaches");
        }
      }
  g_block = nullptr;
}

}  // namespace s4d_emu

inline void __syncthreads() { s4d_emu::block_barrier(false); }
inline int __syncthreads_count(int pred) { return s4d_emu::block_barrier(pred != 0); }
inline int __syncthreads_or(int pred) { return s4d_emu::block_barrier(pred != 0) > 0; }

template <typename T>
inline T __shfl_down_sync(unsigned mask, T value, unsigned delta) {
  static_assert(sizeof(T) <= 8, "shuffle of at most 8 bytes");
  if (mask != 0xffffffffu) s4d_emu::fail("only full-warp masks are emulated");
  uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof(T));
  const uint64_t* row = s4d_emu::warp_exchange(s4d_emu::WarpOp::shfl, bits);
  const unsigned src = static_cast<unsigned>(s4d_emu::linear_tid() % 32) + delta;
  if (src < 32) std::memcpy(&value, &row[src], sizeof(T));
  return value;
}

inline int __any_sync(unsigned mask, int pred) {
  if (mask != 0xffffffffu) s4d_emu::fail("only full-warp masks are emulated");
  const uint64_t* row = s4d_emu::warp_exchange(s4d_emu::WarpOp::any, pred != 0 ? 1 : 0);
  for (int i = 0; i < 32; ++i)
    if (row[i]) return 1;
  return 0;
}

// One OS thread and switches only at synchronisation points: plain read-modify-writes are atomic.
inline float atomicAdd(float* p, float v) {
  const float old = *p;
  *p = old + v;
  return old;
}
inline int atomicAdd(int* p, int v) {
  const int old = *p;
  *p = old + v;
  return old;
}
inline int atomicMax(int* p, int v) {
  const int old = *p;
  *p = old > v ? old : v;
  return old;
}

namespace splat4d_raster {
// Stand-in for cuda_utils.cuh's launch (which needs nvcc's <<<>>>): runs the kernel on the emulated grid.
template <typename... KernelArgs, typename... Args>
void launch(const char* /*name*/, void (*kernel)(KernelArgs...), dim3 grid, dim3 block, cudaStream_t /*stream*/,
            Args... args) {
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) return;
  const std::function<void()> body = [&]() { kernel(static_cast<KernelArgs>(args)...); };
  s4d_emu::run_grid(grid, block, body);
}
}  // namespace splat4d_raster
