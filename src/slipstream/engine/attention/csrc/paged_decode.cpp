// Paged decode attention for CPU: one new query token per sequence, keys and values read in
// place from the block-paged KV cache (no gather copy). Work is split over (sequence, kv head)
// pairs; every K/V row loaded is used by all query heads of its GQA group.
//
// Reference: slipstream/engine/attention/torch_paged.py (gather + SDPA); tests compare both.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include <cstdint>
#include <cstring>

#include "simd_math.h"

namespace {

// s[i] = exp(s[i] - m) for i < n; returns the sum.
inline float exp_shift_sum(float* s, int64_t n, float m) {
  int64_t i = 0;
  float total = 0.f;
#ifdef SLIP_SIMD_AVX2
  __m256 acc = _mm256_setzero_ps();
  const __m256 mv = _mm256_set1_ps(m);
  for (; i + 8 <= n; i += 8) {
    const __m256 e = slip_simd::exp8(_mm256_sub_ps(_mm256_loadu_ps(s + i), mv));
    _mm256_storeu_ps(s + i, e);
    acc = _mm256_add_ps(acc, e);
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, acc);
  for (float l : lanes) total += l;
#endif
  for (; i < n; ++i) {
    s[i] = std::exp(s[i] - m);
    total += s[i];
  }
  return total;
}

// Widen one row of D elements to float. The bf16 case is a plain 16-bit shift so the compiler
// vectorises it (c10::BFloat16's conversion operator does not).
template <typename T>
inline void load_row(const T* src, float* dst, int64_t D) {
  for (int64_t d = 0; d < D; ++d) dst[d] = static_cast<float>(src[d]);
}
template <>
inline void load_row<float>(const float* src, float* dst, int64_t D) {
  std::memcpy(dst, src, D * sizeof(float));
}
template <>
inline void load_row<at::BFloat16>(const at::BFloat16* src, float* dst, int64_t D) {
  const uint16_t* s = reinterpret_cast<const uint16_t*>(src);
  uint32_t* o = reinterpret_cast<uint32_t*>(dst);
#pragma omp simd
  for (int64_t d = 0; d < D; ++d) o[d] = static_cast<uint32_t>(s[d]) << 16;
}
template <>
inline void load_row<at::Half>(const at::Half* src, float* dst, int64_t D) {
  int64_t d = 0;
#ifdef SLIP_SIMD_AVX2
  for (; d + 8 <= D; d += 8)
    _mm256_storeu_ps(dst + d, _mm256_cvtph_ps(_mm_loadu_si128(
                                  reinterpret_cast<const __m128i*>(src + d))));
#endif
  for (; d < D; ++d) dst[d] = static_cast<float>(src[d]);
}
template <typename T>
inline float to_f(T v) { return static_cast<float>(v); }

#ifdef SLIP_SIMD_AVX2
inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8(const at::Half* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline __m256 load8(const at::BFloat16* p) {
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(raw), 16));
}

// [sum(a), sum(b), sum(c), sum(d)] of four 8-lane vectors.
inline __m128 reduce4(__m256 a, __m256 b, __m256 c, __m256 d) {
  const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
  return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

// One (sequence, kv head) item with float32 q/out, for GC query heads per kv head (GQA group)
// and head dim D (a multiple of 32). Scores for four positions at a time keep 4*GC dot
// products in registers (one reduction per four positions instead of one per dot product);
// the weighted sum of values runs 32 dims at a time with its accumulators in registers.
// off[pos] is the element offset of position pos's row in the cache.
// The cache is far larger than any CPU cache and each sequence's blocks sit anywhere in it,
// so rows come from DRAM in 16-row runs too short for the hardware prefetcher: fetch the row
// PF positions ahead (about one block) ourselves.
constexpr int64_t PF = 16;
// n elements from row: the whole position (every kv head) when the first head's item
// prefetches, so the next heads' items of the same sequence find their rows in L2.
template <typename cache_t>
inline void prefetch_row(const cache_t* row, int64_t n) {
  const char* p = reinterpret_cast<const char*>(row);
  for (int64_t b = 0; b < n * static_cast<int64_t>(sizeof(cache_t)); b += 64)
    _mm_prefetch(p + b, _MM_HINT_T0);
}

template <typename cache_t, int64_t D, int64_t GC>
void decode_item_fast(const float* qf, const cache_t* kp, const cache_t* vp, const int64_t* off,
                      int64_t L, float* scores, float* out, int64_t pf_from, int64_t pf_len) {
  // off[p] + pf_from .. + pf_len: what to prefetch of position p's row (see prefetch_row)
  float mx[GC];
  for (int64_t g = 0; g < GC; ++g) mx[g] = -INFINITY;
  for (int64_t p = 0; p < PF && p < L; ++p) {
    prefetch_row(kp + off[p] + pf_from, pf_len);
    prefetch_row(vp + off[p] + pf_from, pf_len);
  }
  int64_t pos = 0;
  for (; pos + 4 <= L; pos += 4) {
    __m256 s[GC][4];
    for (int64_t g = 0; g < GC; ++g)
      for (int64_t j = 0; j < 4; ++j) s[g][j] = _mm256_setzero_ps();
    for (int64_t j = 0; j < 4 && pos + PF + j < L; ++j) {
      prefetch_row(kp + off[pos + PF + j] + pf_from, pf_len);
      prefetch_row(vp + off[pos + PF + j] + pf_from, pf_len);
    }
    for (int64_t dd = 0; dd < D; dd += 8) {
      __m256 k[4];
      for (int64_t j = 0; j < 4; ++j) k[j] = load8(kp + off[pos + j] + dd);
      for (int64_t g = 0; g < GC; ++g) {
        const __m256 qv = _mm256_loadu_ps(qf + g * D + dd);
        for (int64_t j = 0; j < 4; ++j) s[g][j] = _mm256_fmadd_ps(qv, k[j], s[g][j]);
      }
    }
    for (int64_t g = 0; g < GC; ++g) {
      float* dst = scores + g * L + pos;
      _mm_storeu_ps(dst, reduce4(s[g][0], s[g][1], s[g][2], s[g][3]));
      mx[g] = std::max({mx[g], dst[0], dst[1], dst[2], dst[3]});
    }
  }
  for (; pos < L; ++pos) {
    for (int64_t g = 0; g < GC; ++g) {
      __m256 acc = _mm256_setzero_ps();
      for (int64_t dd = 0; dd < D; dd += 8)
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(qf + g * D + dd), load8(kp + off[pos] + dd), acc);
      const __m256 z = _mm256_setzero_ps();
      const float v = _mm_cvtss_f32(reduce4(acc, z, z, z));
      scores[g * L + pos] = v;
      mx[g] = std::max(mx[g], v);
    }
  }
  float inv[GC];
  for (int64_t g = 0; g < GC; ++g) inv[g] = 1.f / exp_shift_sum(scores + g * L, L, mx[g]);
  for (int64_t dc = 0; dc < D; dc += 32) {
    __m256 a[GC][4];
    for (int64_t g = 0; g < GC; ++g)
      for (int64_t j = 0; j < 4; ++j) a[g][j] = _mm256_setzero_ps();
    for (int64_t p = 0; p < L; ++p) {
      __m256 v[4];
      for (int64_t j = 0; j < 4; ++j) v[j] = load8(vp + off[p] + dc + 8 * j);
      for (int64_t g = 0; g < GC; ++g) {
        const __m256 w = _mm256_set1_ps(scores[g * L + p]);
        for (int64_t j = 0; j < 4; ++j) a[g][j] = _mm256_fmadd_ps(w, v[j], a[g][j]);
      }
    }
    for (int64_t g = 0; g < GC; ++g)
      for (int64_t j = 0; j < 4; ++j)
        _mm256_storeu_ps(out + g * D + dc + 8 * j, _mm256_mul_ps(a[g][j], _mm256_set1_ps(inv[g])));
  }
}

// decode_item_fast for this group size, or false when there is no such instance.
template <typename cache_t, int64_t D>
bool decode_item_dispatch(int64_t G, const float* qf, const cache_t* kp, const cache_t* vp,
                          const int64_t* off, int64_t L, float* scores, float* out,
                          int64_t pf_from, int64_t pf_len) {
  switch (G) {
    case 1: decode_item_fast<cache_t, D, 1>(qf, kp, vp, off, L, scores, out, pf_from, pf_len); return true;
    case 2: decode_item_fast<cache_t, D, 2>(qf, kp, vp, off, L, scores, out, pf_from, pf_len); return true;
    case 3: decode_item_fast<cache_t, D, 3>(qf, kp, vp, off, L, scores, out, pf_from, pf_len); return true;
    case 4: decode_item_fast<cache_t, D, 4>(qf, kp, vp, off, L, scores, out, pf_from, pf_len); return true;
    default: return false;
  }
}
#endif

// DC > 0 fixes the head dim at compile time (64 and 128 cover most models) so the row loops
// unroll and vectorise fully; DC == 0 is the generic fallback. cache_t is the KV cache's type:
// scalar_t (q and the output's), or float16 under float32 compute.
template <typename scalar_t, typename cache_t, int64_t DC>
void decode_kernel(const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& v_cache,
                   const at::Tensor& block_tables, const at::Tensor& seq_lens, double scale,
                   at::Tensor& out) {
  const int64_t B = q.size(0), H = q.size(1);
  const int64_t D = DC > 0 ? DC : q.size(2);
  const int64_t BS = k_cache.size(1), KVH = k_cache.size(2);
  const int64_t G = H / KVH;
  const int64_t max_blocks = block_tables.size(1);
  const scalar_t* qp = q.data_ptr<scalar_t>();
  const cache_t* kp = k_cache.data_ptr<cache_t>();
  const cache_t* vp = v_cache.data_ptr<cache_t>();
  const int64_t* tp = block_tables.data_ptr<int64_t>();
  const int64_t* lp = seq_lens.data_ptr<int64_t>();
  scalar_t* op = out.data_ptr<scalar_t>();
  const float fscale = static_cast<float>(scale);
  const int64_t row = KVH * D;  // elements between consecutive positions inside a block

  at::parallel_for(0, B * KVH, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> qf(G * D), acc(G * D), scores, kv(D);
    std::vector<int64_t> offs;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t b = item / KVH, h = item % KVH;
      const int64_t L = lp[b];
      scores.assign(G * L, 0.f);
      for (int64_t g = 0; g < G; ++g)
        for (int64_t d = 0; d < D; ++d)
          qf[g * D + d] = to_f(qp[(b * H + h * G + g) * D + d]) * fscale;
      const int64_t nblocks = (L + BS - 1) / BS;
#ifdef SLIP_SIMD_AVX2
      if constexpr (std::is_same_v<scalar_t, float> && DC > 0 && DC % 32 == 0) {
        offs.resize(L);
        for (int64_t pos = 0; pos < L; ++pos)
          offs[pos] = tp[b * max_blocks + pos / BS] * BS * row + (pos % BS) * row + h * D;
        // the first head's item (or the first of this thread's range) fetches whole rows
        const bool whole = h == 0 || item == begin;
        if (decode_item_dispatch<cache_t, DC>(G, qf.data(), kp, vp, offs.data(), L,
                                              scores.data(), op + (b * H + h * G) * D,
                                              whole ? -h * D : 0, whole ? row : D))
          continue;
      }
#endif
      std::vector<float> mx(G, -INFINITY);
      // Pass 1: scores. Walk block by block so the block id is read once per block.
      for (int64_t bi = 0; bi < nblocks; ++bi) {
        const int64_t blk = tp[b * max_blocks + bi];
        const int64_t n = std::min(BS, L - bi * BS);
        const cache_t* kblock = kp + blk * BS * row + h * D;
        for (int64_t off = 0; off < n; ++off) {
          load_row(kblock + off * row, kv.data(), D);
          const int64_t pos = bi * BS + off;
          for (int64_t g = 0; g < G; ++g) {
            const float* qg = qf.data() + g * D;
            float s = 0.f;
#pragma omp simd reduction(+ : s)
            for (int64_t d = 0; d < D; ++d) s += qg[d] * kv[d];
            scores[g * L + pos] = s;
            mx[g] = std::max(mx[g], s);
          }
        }
      }
      std::vector<float> sum(G, 0.f);
      for (int64_t g = 0; g < G; ++g) sum[g] = exp_shift_sum(scores.data() + g * L, L, mx[g]);
      // Pass 2: weighted sum of values.
      std::fill(acc.begin(), acc.end(), 0.f);
      for (int64_t bi = 0; bi < nblocks; ++bi) {
        const int64_t blk = tp[b * max_blocks + bi];
        const int64_t n = std::min(BS, L - bi * BS);
        const cache_t* vblock = vp + blk * BS * row + h * D;
        for (int64_t off = 0; off < n; ++off) {
          load_row(vblock + off * row, kv.data(), D);
          const int64_t pos = bi * BS + off;
          for (int64_t g = 0; g < G; ++g) {
            const float p = scores[g * L + pos];
            float* ag = acc.data() + g * D;
#pragma omp simd
            for (int64_t d = 0; d < D; ++d) ag[d] += p * kv[d];
          }
        }
      }
      for (int64_t g = 0; g < G; ++g) {
        const float inv = 1.f / sum[g];
        scalar_t* o = op + (b * H + h * G + g) * D;
        for (int64_t d = 0; d < D; ++d) o[d] = static_cast<scalar_t>(acc[g * D + d] * inv);
      }
    }
  });
}

template <typename scalar_t, typename cache_t = scalar_t>
void dispatch_dim(int64_t d, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                  const at::Tensor& bt, const at::Tensor& sl, double scale, at::Tensor& out) {
  if (d == 64) {
    decode_kernel<scalar_t, cache_t, 64>(q, k, v, bt, sl, scale, out);
  } else if (d == 128) {
    decode_kernel<scalar_t, cache_t, 128>(q, k, v, bt, sl, scale, out);
  } else {
    decode_kernel<scalar_t, cache_t, 0>(q, k, v, bt, sl, scale, out);
  }
}

at::Tensor paged_decode(const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& v_cache,
                        const at::Tensor& block_tables, const at::Tensor& seq_lens, double scale) {
  TORCH_CHECK(q.dim() == 3 && k_cache.dim() == 4 && v_cache.dim() == 4, "bad ranks");
  TORCH_CHECK(q.is_contiguous() && k_cache.is_contiguous() && v_cache.is_contiguous(),
              "inputs must be contiguous");
  TORCH_CHECK(block_tables.scalar_type() == at::kLong && seq_lens.scalar_type() == at::kLong,
              "block_tables and seq_lens must be int64");
  TORCH_CHECK(q.size(1) % k_cache.size(2) == 0, "heads must be a multiple of kv heads");
  auto out = at::empty_like(q);
  auto bt = block_tables.contiguous();
  auto sl = seq_lens.contiguous();
  const int64_t d = q.size(2);
  TORCH_CHECK(k_cache.scalar_type() == v_cache.scalar_type(), "k and v caches differ in dtype");
  const bool same = k_cache.scalar_type() == q.scalar_type();
  TORCH_CHECK(same || (q.scalar_type() == at::kFloat && k_cache.scalar_type() == at::kHalf),
              "the cache must have q's dtype, or be float16 under float32 q");
  if (q.scalar_type() == at::kFloat && !same) {
    dispatch_dim<float, at::Half>(d, q, k_cache, v_cache, bt, sl, scale, out);
  } else if (q.scalar_type() == at::kFloat) {
    dispatch_dim<float>(d, q, k_cache, v_cache, bt, sl, scale, out);
  } else if (q.scalar_type() == at::kBFloat16) {
    dispatch_dim<at::BFloat16>(d, q, k_cache, v_cache, bt, sl, scale, out);
  } else if (q.scalar_type() == at::kHalf) {
    dispatch_dim<at::Half>(d, q, k_cache, v_cache, bt, sl, scale, out);
  } else {
    TORCH_CHECK(false, "unsupported dtype");
  }
  return out;
}

}  // namespace

TORCH_LIBRARY(slipstream_cpu, m) {
  m.def("paged_decode(Tensor q, Tensor k_cache, Tensor v_cache, Tensor block_tables, Tensor seq_lens, float scale) -> Tensor");
}

TORCH_LIBRARY_IMPL(slipstream_cpu, CPU, m) { m.impl("paged_decode", &paged_decode); }
