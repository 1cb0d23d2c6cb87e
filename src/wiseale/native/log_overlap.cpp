// The aggregate KL's pairwise log overlaps (wiseale.pairwise, 001 Eq. 21-23) and their
// gradient on the CPU, for float and double, built with the package (setup.py) and called
// through ctypes by wiseale.pairwise_native. Compiled three times, for AVX-512, AVX2 and the
// base instruction set, and chosen at run time by the CPU; with floating-point contraction off
// (setup.py) the three give the same bits.
#include <Python.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#if defined(__x86_64__)
#include <xmmintrin.h>
#endif

namespace {

constexpr int64_t TILE = 64;           // pairs of rows per tile side
constexpr int64_t PRODUCT_DIMS = 64;   // factors in [1, 2] per product: below 2^64
constexpr int64_t ROWS = 4;            // rows of the backward's register block
constexpr int VEC_BYTES = 64;          // a vector: 16 floats, 8 doubles

// Subnormal numbers read and written as 0 while a thread runs a kernel (x86's FTZ and DAZ
// modes), restored after: the far pairs' terms underflow into them, and each operation on
// one costs a microcode assist (with the exp floor and the skipped columns of
// pairwise_native, M = 1024, d = 64 went from 61 to 20 ms: docs/performance.md); what is
// flushed is below 1.2e-38 (float) or 2.2e-308 (double).
struct FlushDenormals {
#if defined(__x86_64__)
  const unsigned int saved = _mm_getcsr();
  FlushDenormals() { _mm_setcsr(saved | 0x8040); }  // FTZ (bit 15) and DAZ (bit 6)
  ~FlushDenormals() { _mm_setcsr(saved); }
#endif
};

// The pair of tiles (rows bi.., columns bj.., bj >= bi) with index `pair`.
inline void tile_pair(int64_t pair, int64_t tiles, int64_t *bi, int64_t *bj) {
  int64_t ti = 0;
  while (pair >= tiles - ti) {
    pair -= tiles - ti;
    ti++;
  }
  *bi = ti * TILE;
  *bj = (ti + pair) * TILE;
}

#if defined(__x86_64__)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma")
namespace avx512 {
#include "log_overlap_kernels.hpp"
}
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace avx2 {
#include "log_overlap_kernels.hpp"
}
#pragma GCC pop_options
#endif
namespace base {
#include "log_overlap_kernels.hpp"
}

// 2: AVX-512, 1: AVX2, 0: neither.
int instruction_set() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw"))
    return 2;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 1;
#endif
  return 0;
}

const int kDetected = instruction_set();
int kSet = kDetected;

}  // namespace

#if defined(__x86_64__)
#define WISEALE_DISPATCH(call) \
  (kSet == 2 ? avx512::call : kSet == 1 ? avx2::call : base::call)
#else
#define WISEALE_DISPATCH(call) base::call
#endif

extern "C" {

// The instruction set the kernels use: `wanted` (2: AVX-512, 1: AVX2, 0: neither) where this
// CPU has it, else the best it has; returns the one chosen (tests compare the three).
int wiseale_use_instruction_set(int wanted) {
  kSet = wanted < kDetected ? wanted : kDetected;
  return kSet;
}

int wiseale_instruction_set() { return kSet; }

// The version of these functions' arguments; wiseale.pairwise_native.ABI must equal it (a
// library built from older sources is refused, not called with the wrong arguments).
int wiseale_abi() { return 2; }

#define WISEALE_EXPORT(R, SUFFIX)                                                           \
  void log_overlap_##SUFFIX(const R *mu, const R *var, const R *logvar, const R *prec,    \
                            const R *muT, const R *varT, const R *logvarT,                \
                            const R *precT, int64_t mp, int64_t d, R *a, int threads) {    \
    WISEALE_DISPATCH(log_overlap(mu, var, logvar, prec, muT, varT, logvarT, precT, mp, d, \
                                 a, threads));                                            \
  }                                                                                       \
  void log_overlap_grad_##SUFFIX(const R *mu, const R *var, const R *p, R scale,          \
                                 R negligible, int64_t m, int64_t mp, int64_t dp, R *out, \
                                 int threads) {                                           \
    WISEALE_DISPATCH(                                                                     \
        log_overlap_grad(mu, var, p, scale, negligible, m, mp, dp, out, threads));        \
  }
WISEALE_EXPORT(float, f32)
WISEALE_EXPORT(double, f64)

// An importable module, so that Python finds the library where it installed it.
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_log_overlap",
                                    "wiseale's aggregate-KL kernels (ctypes)", -1, nullptr};
PyMODINIT_FUNC PyInit__log_overlap(void) { return PyModule_Create(&module); }
}
