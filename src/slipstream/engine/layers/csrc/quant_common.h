// Shared by the block-quantized linear kernels: ISA switch, fp16 scales, activation
// quantization (int8 blocks of 32, as GGUF's Q8_0) and a horizontal sum.
#pragma once
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define SLIP_AVX2 1
// VNNI (AVX512-VNNI with VL, or AVX-VNNI): one instruction does the multiply, the pairwise
// add and the accumulate that AVX2 spells as maddubs/madd + add. Exact, no saturation.
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define SLIP_VNNI 1
#define SLIP_DPBUSD _mm256_dpbusd_epi32
#define SLIP_DPWSSD _mm256_dpwssd_epi32
#elif defined(__AVXVNNI__)
#define SLIP_VNNI 1
#define SLIP_DPBUSD _mm256_dpbusd_avx_epi32
#define SLIP_DPWSSD _mm256_dpwssd_avx_epi32
#endif
#endif

namespace slip_quant {

// Weight scales (and Q4 mins) are stored as fp16, as GGUF stores them: 2 bytes a block.
using half_bits = uint16_t;
inline float h2f(half_bits h) {
#ifdef SLIP_AVX2
  return _cvtsh_ss(h);
#else
  return static_cast<float>(c10::Half(h, c10::Half::from_bits()));
#endif
}

constexpr int64_t QK = 32;  // weights and activations per block
constexpr int64_t MT = 4;   // rows of x handled together (accumulators kept in registers)

// x [M, K] float -> xq [M, K] (int8 or int16) and xs [M, K/QK] float (symmetric, per
// block); when xsum is given, also xsum[m, b] = xs * sum(xq) over the block (the Q4 kernels'
// min term). int8 is llama.cpp's Q8 activation; int16 keeps ~4.5 more significant digits.
template <typename Q>
inline void quantize_rows(const float* x, int64_t M, int64_t K, Q* xq, float* xs,
                          float* xsum = nullptr, float qmax = 0.f) {
  // qmax: the largest level (default: the type's); 127 with int16 storage = int8 values
  const float QMAX = qmax > 0.f ? qmax : (sizeof(Q) == 1 ? 127.f : 32767.f);
  const int64_t KB = K / QK;
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t b = 0; b < KB; ++b) {
      const float* src = x + m * K + b * QK;
      float amax = 0.f;
      for (int64_t i = 0; i < QK; ++i) amax = std::max(amax, std::fabs(src[i]));
      const float d = amax / QMAX;
      const float inv = d > 0.f ? 1.f / d : 0.f;
      Q* dst = xq + m * K + b * QK;
      int32_t sum = 0;
      for (int64_t i = 0; i < QK; ++i) {
        dst[i] = static_cast<Q>(std::nearbyint(src[i] * inv));
        sum += dst[i];
      }
      xs[m * KB + b] = d;
      if (xsum) xsum[m * KB + b] = d * static_cast<float>(sum);
    }
  }
}

#ifdef SLIP_AVX2
inline __m256i bcast4(const int8_t* p) {  // 4 int8 -> every 32-bit lane
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}
inline __m256i bcast4(const int16_t* p) {  // 4 int16 -> every 64-bit lane
  int64_t v;
  std::memcpy(&v, p, 8);
  return _mm256_set1_epi64x(v);
}

// acc + per 32-bit lane: the sum of its 2 int16 x int16 products.
inline __m256i dot_s16(__m256i acc, __m256i a, __m256i b) {
#ifdef SLIP_VNNI
  return SLIP_DPWSSD(acc, a, b);
#else
  return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b));
#endif
}

inline float hsum(__m256 v) {
  __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}

// Integer dot product of one 32-byte block pair, as 8 int32 lanes converted to float.
// sign(w,w) = |w| is unsigned; sign(x,w) moves w's sign onto x, so maddubs sees u8 x s8.
inline __m256 block_dot(__m256i aw, __m256i w, const int8_t* x, __m256i ones) {
  const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x));
  const __m256i sx = _mm256_sign_epi8(xv, w);
#ifdef SLIP_VNNI
  (void)ones;
  return _mm256_cvtepi32_ps(SLIP_DPBUSD(_mm256_setzero_si256(), aw, sx));
#else
  return _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(aw, sx), ones));
#endif
}
#endif

}  // namespace slip_quant
