// 4-bit linear layer for CPU, eight output rows at a time: y = x @ W^T with W in Q4_1 blocks
// of 32 (w = d * q + m, q in 0..15, d and m fp16), x quantized to int8 blocks on the fly.
//
// Why this layout: a batched decode step is bound by multiply-adds, and a row-at-a-time dot
// product spends most of its instructions on per-row bookkeeping (horizontal sums, scalar
// scales). Interleaving eight weight rows lets one maddubs multiply 4 consecutive weights of
// each of the 8 rows by the same 4 activations (broadcast), so the 8 lanes of every vector are
// 8 different outputs: no horizontal sums, scales applied 8 at a time, and each unpacked weight
// vector reused by up to MT activation rows. The int16 partial sums cannot overflow within a
// block (8 products of at most 15 * 127 each per lane).
//
// Record per (group of 8 rows, block of 32): 128 bytes of nibbles, then d[8] and m[8] (fp16).
// Nibble byte (s * 32 + n * 4 + i) holds q[n][4s + i] (low) and q[n][16 + 4s + i] (high).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstring>
#include <vector>

#include "interleaved.h"

namespace {

using namespace slip_quant;

constexpr int64_t REC = 160;  // bytes per (8 rows x 32) record

// Scalar reference for any activation type (non-AVX2 CPUs).
template <typename Q>
void group_scalar(const uint8_t* rec, int64_t KB, const Q* xq, const float* xs,
                  const float* xsum, int64_t K, int64_t m, float* y, int64_t N, int64_t n0,
                  const float* bias) {
  float out[8] = {0};
  for (int64_t b = 0; b < KB; ++b) {
    const uint8_t* rb = rec + b * REC;
    const half_bits* d = reinterpret_cast<const half_bits*>(rb + 128);
    const half_bits* mn = reinterpret_cast<const half_bits*>(rb + 144);
    const Q* xb = xq + m * K + b * QK;
    const int64_t mb = m * KB + b;
    for (int64_t n = 0; n < 8; ++n) {
      int32_t acc = 0;
      for (int64_t s = 0; s < 4; ++s)
        for (int64_t i = 0; i < 4; ++i) {
          const uint8_t byte = rb[s * 32 + n * 4 + i];
          acc += (byte & 0x0F) * xb[4 * s + i] + (byte >> 4) * xb[16 + 4 * s + i];
        }
      out[n] += h2f(d[n]) * xs[mb] * static_cast<float>(acc) + h2f(mn[n]) * xsum[mb];
    }
  }
  for (int64_t n = 0; n < 8; ++n) y[m * N + n0 + n] = out[n] + (bias ? bias[n0 + n] : 0.f);
}

#ifdef SLIP_AVX2
// One block's contribution to 8 outputs: sums * d * xs + m * xsum (the Q4_1 min term).
inline __m256 add_block(__m256 acc, __m256i sums, __m256 d, __m256 mn, float xs, float xsum) {
  acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), _mm256_mul_ps(d, _mm256_set1_ps(xs)), acc);
  return _mm256_fmadd_ps(mn, _mm256_set1_ps(xsum), acc);
}

#endif

// y[m0 .. m0+R, 8g .. 8g+8] for one group of eight weight rows, int8 activations.
template <int64_t R>
void group_tile(const uint8_t* rec, int64_t KB, const int8_t* xq, const float* xs,
                const float* xsum, int64_t K, int64_t m0, float* y, int64_t N, int64_t n0,
                const float* bias) {
#ifdef SLIP_AVX2
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  [[maybe_unused]] const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[R];
  for (int64_t r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
  for (int64_t b = 0; b < KB; ++b) {
    const uint8_t* rb = rec + b * REC;
    // int16 partial sums (AVX2: maddubs, madd'ed once a block) or int32 ones (VNNI dpbusd)
    __m256i part[R];
    for (int64_t r = 0; r < R; ++r) part[r] = _mm256_setzero_si256();
    for (int64_t s = 0; s < 4; ++s) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rb + 32 * s));
      const __m256i lo = _mm256_and_si256(v, low4);
      const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
      for (int64_t r = 0; r < R; ++r) {
        const int8_t* xb = xq + (m0 + r) * K + b * QK;
#ifdef SLIP_VNNI
        part[r] = SLIP_DPBUSD(part[r], lo, bcast4(xb + 4 * s));
        part[r] = SLIP_DPBUSD(part[r], hi, bcast4(xb + 16 + 4 * s));
#else
        part[r] = _mm256_add_epi16(part[r], _mm256_maddubs_epi16(lo, bcast4(xb + 4 * s)));
        part[r] = _mm256_add_epi16(part[r], _mm256_maddubs_epi16(hi, bcast4(xb + 16 + 4 * s)));
#endif
      }
    }
    const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rb + 128)));
    const __m256 mn = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rb + 144)));
    for (int64_t r = 0; r < R; ++r) {
      const int64_t mb = (m0 + r) * KB + b;
#ifdef SLIP_VNNI
      const __m256i sums = part[r];
#else
      const __m256i sums = _mm256_madd_epi16(part[r], ones);
#endif
      acc[r] = add_block(acc[r], sums, d, mn, xs[mb], xsum[mb]);
    }
  }
  store_group<R>(acc, y, N, m0, n0, bias);
#else
  for (int64_t r = 0; r < R; ++r) group_scalar(rec, KB, xq, xs, xsum, K, m0 + r, y, N, n0, bias);
#endif
}

// The same with int16 activations: madd_epi16 multiplies pairs of 16-bit lanes, so one
// weight vector is 4 rows x 4 weights widened to int16; rows 0-3 and 4-7 accumulate apart
// and one hadd + permute per block puts the 8 sums in row order.
template <int64_t R>
void group_tile16(const uint8_t* rec, int64_t KB, const int16_t* xq, const float* xs,
                  const float* xsum, int64_t K, int64_t m0, float* y, int64_t N, int64_t n0,
                  const float* bias) {
#ifdef SLIP_AVX2
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  __m256 acc[R];
  for (int64_t r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
  for (int64_t b = 0; b < KB; ++b) {
    const uint8_t* rb = rec + b * REC;
    __m256i lo4[R], hi4[R];  // int32 pair sums, rows 0-3 and rows 4-7
    for (int64_t r = 0; r < R; ++r) lo4[r] = hi4[r] = _mm256_setzero_si256();
    for (int64_t s = 0; s < 4; ++s) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rb + 32 * s));
      const __m256i lo = _mm256_and_si256(v, low4);
      const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
      const __m256i lo_a = _mm256_cvtepu8_epi16(_mm256_castsi256_si128(lo));
      const __m256i lo_b = _mm256_cvtepu8_epi16(_mm256_extracti128_si256(lo, 1));
      const __m256i hi_a = _mm256_cvtepu8_epi16(_mm256_castsi256_si128(hi));
      const __m256i hi_b = _mm256_cvtepu8_epi16(_mm256_extracti128_si256(hi, 1));
      for (int64_t r = 0; r < R; ++r) {
        const int16_t* xb = xq + (m0 + r) * K + b * QK;
        const __m256i xl = bcast4(xb + 4 * s), xh = bcast4(xb + 16 + 4 * s);
        lo4[r] = dot_s16(lo4[r], lo_a, xl);
        hi4[r] = dot_s16(hi4[r], lo_b, xl);
        lo4[r] = dot_s16(lo4[r], hi_a, xh);
        hi4[r] = dot_s16(hi4[r], hi_b, xh);
      }
    }
    const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rb + 128)));
    const __m256 mn = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rb + 144)));
    for (int64_t r = 0; r < R; ++r) {
      const int64_t mb = (m0 + r) * KB + b;
      const __m256i sums = pair_sums_in_row_order(lo4[r], hi4[r]);
      acc[r] = add_block(acc[r], sums, d, mn, xs[mb], xsum[mb]);
    }
  }
  store_group<R>(acc, y, N, m0, n0, bias);
#else
  for (int64_t r = 0; r < R; ++r) group_scalar(rec, KB, xq, xs, xsum, K, m0 + r, y, N, n0, bias);
#endif
}

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
#define SLIP_Q4_ZMM 1
// int16 activations on AVX-512: two neighbouring groups (16 rows) per 512-bit vector, so each
// broadcast activation pair and each instruction covers twice the multiply-adds of the 256-bit
// tile. Lane j of a pair-sum vector is row j/2 of its group, weight pair j%2; one two-source
// permute per block puts the 16 row sums in order.
template <int64_t R>
void pair_tile16(const uint8_t* rec, int64_t KB, const int16_t* xq, const float* xs,
                 const float* xsum, int64_t K, int64_t m0, float* y, int64_t N, int64_t n0,
                 const float* bias) {
  const uint8_t* rec2 = rec + KB * REC;
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  __m512 acc[R];
  for (int64_t r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  for (int64_t b = 0; b < KB; ++b) {
    const uint8_t* ra = rec + b * REC;
    const uint8_t* rb = rec2 + b * REC;
    __m512i pa[R], pb[R];
    for (int64_t r = 0; r < R; ++r) pa[r] = pb[r] = _mm512_setzero_si512();
    for (int64_t s = 0; s < 4; ++s) {
      const __m512i v = _mm512_inserti64x4(
          _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(ra + 32 * s))),
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rb + 32 * s)), 1);
      const __m512i lo = _mm512_and_si512(v, low4);
      const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
      const __m512i lo_a = _mm512_cvtepu8_epi16(_mm512_castsi512_si256(lo));
      const __m512i lo_b = _mm512_cvtepu8_epi16(_mm512_extracti64x4_epi64(lo, 1));
      const __m512i hi_a = _mm512_cvtepu8_epi16(_mm512_castsi512_si256(hi));
      const __m512i hi_b = _mm512_cvtepu8_epi16(_mm512_extracti64x4_epi64(hi, 1));
      for (int64_t r = 0; r < R; ++r) {
        const int16_t* xb = xq + (m0 + r) * K + b * QK;
        int64_t l, h;
        std::memcpy(&l, xb + 4 * s, 8);
        std::memcpy(&h, xb + 16 + 4 * s, 8);
        const __m512i xl = _mm512_set1_epi64(l), xh = _mm512_set1_epi64(h);
        pa[r] = _mm512_dpwssd_epi32(pa[r], lo_a, xl);
        pb[r] = _mm512_dpwssd_epi32(pb[r], lo_b, xl);
        pa[r] = _mm512_dpwssd_epi32(pa[r], hi_a, xh);
        pb[r] = _mm512_dpwssd_epi32(pb[r], hi_b, xh);
      }
    }
    auto halves = [&](int64_t off) {
      return _mm512_cvtph_ps(_mm256_set_m128i(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(rb + off)),
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(ra + off))));
    };
    const __m512 d = halves(128), mn = halves(144);
    for (int64_t r = 0; r < R; ++r) {
      const int64_t mb = (m0 + r) * KB + b;
      const __m512i sums = _mm512_add_epi32(_mm512_permutex2var_epi32(pa[r], even, pb[r]),
                                            _mm512_permutex2var_epi32(pa[r], odd, pb[r]));
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums), _mm512_mul_ps(d, _mm512_set1_ps(xs[mb])),
                               acc[r]);
      acc[r] = _mm512_fmadd_ps(mn, _mm512_set1_ps(xsum[mb]), acc[r]);
    }
  }
  const __m512 bv = bias ? _mm512_loadu_ps(bias + n0) : _mm512_setzero_ps();
  for (int64_t r = 0; r < R; ++r) _mm512_storeu_ps(y + (m0 + r) * N + n0, _mm512_add_ps(acc[r], bv));
}

struct Q4PairTile {
  template <int64_t R>
  static void tile(const uint8_t* rec, int64_t KB, const int16_t* xq, const float* xs,
                   const float* xsum, int64_t K, int64_t m0, float* y, int64_t N, int64_t n0,
                   const float* bias) {
    pair_tile16<R>(rec, KB, xq, xs, xsum, K, m0, y, N, n0, bias);
  }
};
#endif

// The tile for activation type Q, as tile_rows wants it.
template <typename Q>
struct Q4Tile {
  template <int64_t R>
  static void tile(const uint8_t* rec, int64_t KB, const Q* xq, const float* xs,
                   const float* xsum, int64_t K, int64_t m0, float* y, int64_t N, int64_t n0,
                   const float* bias) {
    if constexpr (sizeof(Q) == 1) {
      group_tile<R>(rec, KB, xq, xs, xsum, K, m0, y, N, n0, bias);
    } else {
      group_tile16<R>(rec, KB, xq, xs, xsum, K, m0, y, N, n0, bias);
    }
  }
};

template <typename Q>
void run_groups(const uint8_t* wp, int64_t G, int64_t KB, int64_t K, int64_t M,
                const float* x, const float* bp, float* yp) {
  const int64_t N = 8 * G;
  std::vector<Q> xq(M * K);
  std::vector<float> xs(M * KB), xsum(M * KB);
  quantize_rows(x, M, K, xq.data(), xs.data(), xsum.data());
  int64_t g_first = 0;  // groups before this one were done two at a time
#ifdef SLIP_Q4_ZMM
  if constexpr (sizeof(Q) == 2) {
    for_each_tile(G / 2, M, K * 2, 2 * KB * REC, [&](int64_t p, int64_t m0, int64_t rows) {
      tile_rows<Q4PairTile, IMT>(rows, wp + 2 * p * KB * REC, KB, xq.data(), xs.data(),
                                 xsum.data(), K, m0, yp, N, 16 * p, bp);
    });
    g_first = G / 2 * 2;
  }
#endif
  const uint8_t* wrest = wp + g_first * KB * REC;
  for_each_tile(G - g_first, M, K * sizeof(Q), KB * REC, [&](int64_t g, int64_t m0, int64_t rows) {
    tile_rows<Q4Tile<Q>, IMT>(rows, wrest + g * KB * REC, KB, xq.data(), xs.data(), xsum.data(),
                              K, m0, yp, N, 8 * (g_first + g), bp);
  });
}

// x [M, K] float; w [N/8, K/32, 160] uint8 records; bias [N] float32 or undefined;
// act_bits 8 (llama.cpp's numerics, fastest) or 16 (within float rounding of the fp32 math).
at::Tensor q4x8_linear(const at::Tensor& x_in, const at::Tensor& w,
                       const c10::optional<at::Tensor>& bias_in, int64_t act_bits) {
  TORCH_CHECK(act_bits == 8 || act_bits == 16, "q4x8_linear: act_bits must be 8 or 16");
  TORCH_CHECK(x_in.dim() == 2 && w.dim() == 3 && w.scalar_type() == at::kByte,
              "q4x8_linear: x [M, K] and uint8 records [N/8, K/32, 160]");
  const int64_t M = x_in.size(0), K = x_in.size(1), G = w.size(0), KB = K / QK, N = 8 * G;
  TORCH_CHECK(K % QK == 0 && w.size(1) == KB && w.size(2) == REC, "q4x8_linear: shape mismatch");
  const at::Tensor x = x_in.to(at::kFloat).contiguous();
  const at::Tensor wc = w.contiguous();
  at::Tensor bias;
  if (bias_in.has_value() && bias_in->defined()) bias = bias_in->to(at::kFloat).contiguous();
  at::Tensor y = at::empty({M, N}, x.options());
  const uint8_t* wp = wc.data_ptr<uint8_t>();
  const float* bp = bias.defined() ? bias.data_ptr<float>() : nullptr;
  if (act_bits == 8) {
    run_groups<int8_t>(wp, G, KB, K, M, x.data_ptr<float>(), bp, y.data_ptr<float>());
  } else {
    run_groups<int16_t>(wp, G, KB, K, M, x.data_ptr<float>(), bp, y.data_ptr<float>());
  }
  return x_in.scalar_type() == at::kFloat ? y : y.to(x_in.scalar_type());
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(slipstream_cpu_linear, m) {
  m.def("q4x8_linear(Tensor x, Tensor w, Tensor? bias, int act_bits=16) -> Tensor");
}

TORCH_LIBRARY_IMPL(slipstream_cpu_linear, CPU, m) { m.impl("q4x8_linear", &q4x8_linear); }
