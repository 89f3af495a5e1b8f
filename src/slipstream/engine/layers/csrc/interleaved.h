// Shared by the interleaved linear kernels (q4x8_linear.cpp, q8x8_linear.cpp): weight rows are
// stored eight at a time so every vector lane is one output row (no horizontal sums), and
// tiles of up to IMT activation rows reuse each weight vector loaded.
#pragma once
#include <ATen/Parallel.h>

#include <algorithm>

#include "quant_common.h"

namespace slip_quant {

// Rows of x per tile: AVX-512 CPUs have 32 vector registers, room for 8 rows' accumulators.
#if defined(__AVX512F__) && defined(__AVX512VL__)
constexpr int64_t IMT = 8;
#else
constexpr int64_t IMT = MT;
#endif

#ifdef SLIP_AVX2
template <int64_t R>
inline void store_group(const __m256* acc, float* y, int64_t N, int64_t m0, int64_t n0,
                        const float* bias) {
  const __m256 bv = bias ? _mm256_loadu_ps(bias + n0) : _mm256_setzero_ps();
  for (int64_t r = 0; r < R; ++r) _mm256_storeu_ps(y + (m0 + r) * N + n0, _mm256_add_ps(acc[r], bv));
}

// rows 0-3 and 4-7 pair sums (int16 madd lanes) -> the 8 row sums in row order
inline __m256i pair_sums_in_row_order(__m256i lo4, __m256i hi4) {
  return _mm256_permutevar8x32_epi32(_mm256_hadd_epi32(lo4, hi4),
                                     _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7));
}
#endif

// Tile::template tile<rows>(args...) for a runtime rows <= R.
template <typename Tile, int64_t R, typename... A>
inline void tile_rows(int64_t rows, A... args) {
  if constexpr (R > 1) {
    if (rows < R) return tile_rows<Tile, R - 1>(rows, args...);
  }
  Tile::template tile<R>(args...);
}

// f(g, m0, rows) over every (group of 8 weight rows, tile of x rows). Loops are blocked so
// each level stays in cache: a run of weight groups (~256 KiB, in L2) meets every chunk of x
// rows (~24 KiB of quantized activations, in L1) before the next run is read. Without it a
// long prefill re-reads all of x from L2 for every group, and a large LM head re-reads its
// weights from DRAM for every chunk of x.
template <typename F>
void for_each_tile(int64_t G, int64_t M, int64_t x_row_bytes, int64_t group_bytes, const F& f) {
  const int64_t chunk = std::max<int64_t>(IMT, (24576 / x_row_bytes) / IMT * IMT);
  const int64_t run = std::max<int64_t>(1, 262144 / group_bytes);
  at::parallel_for(0, G, 4, [&](int64_t g0, int64_t g1) {
    for (int64_t gr = g0; gr < g1; gr += run) {
      const int64_t gend = std::min(g1, gr + run);
      for (int64_t mc = 0; mc < M; mc += chunk) {
        const int64_t mend = std::min(M, mc + chunk);
        for (int64_t g = gr; g < gend; ++g)
          for (int64_t m0 = mc; m0 < mend; m0 += IMT) f(g, m0, std::min(IMT, mend - m0));
      }
    }
  });
}

}  // namespace slip_quant
