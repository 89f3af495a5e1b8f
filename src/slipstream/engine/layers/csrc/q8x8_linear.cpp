// 8-bit linear layer for CPU, eight output rows at a time: y = x @ W^T with W in Q8_0 blocks of
// 32 (w = d * q, q in -127..127, d fp16), x quantized to int16 or int8 blocks on the fly.
//
// The layout of q4x8_linear.cpp (see interleaved.h) for int8 weights, which the row-at-a-time
// q8_linear kernel spends most of its instructions reducing. Its main user is a tied Q8_0
// embedding used as the LM head (49152 x 576 for SmolLM2: a fifth of a decode step's
// multiply-adds).
//
// Record per (group of 8 rows, block of 32): 256 bytes of weights, byte (s * 32 + n * 4 + i) =
// q[n][4s + i] for s in 0..7; then d[8] (fp16) and wsum[8] (int16, the sum of each row's 32
// weights: VNNI's dpbusd multiplies unsigned by signed bytes, so int8 activations go in as
// x + 128 and 128 * wsum comes off each block sum).
#include <ATen/ATen.h>
#include <torch/library.h>

#include <vector>

#include "interleaved.h"

namespace {

using namespace slip_quant;

constexpr int64_t REC8 = 288;

// Scalar reference (non-AVX2 CPUs), any signed activation type.
template <typename Q>
void group_scalar8(const uint8_t* rec, int64_t KB, const Q* xq, const float* xs, int64_t K,
                   int64_t m, float* y, int64_t N, int64_t n0, const float* bias) {
  float out[8] = {0};
  for (int64_t b = 0; b < KB; ++b) {
    const uint8_t* rb = rec + b * REC8;
    const int8_t* w = reinterpret_cast<const int8_t*>(rb);
    const half_bits* d = reinterpret_cast<const half_bits*>(rb + 256);
    const Q* xb = xq + m * K + b * QK;
    for (int64_t n = 0; n < 8; ++n) {
      int32_t acc = 0;
      for (int64_t s = 0; s < 8; ++s)
        for (int64_t i = 0; i < 4; ++i) acc += w[s * 32 + n * 4 + i] * xb[4 * s + i];
      out[n] += h2f(d[n]) * xs[m * KB + b] * static_cast<float>(acc);
    }
  }
  for (int64_t n = 0; n < 8; ++n) y[m * N + n0 + n] = out[n] + (bias ? bias[n0 + n] : 0.f);
}

// int16 activations (and, without VNNI, int8 ones widened): weights widened to int16, four
// rows per madd vector; rows 0-3 and 4-7 accumulate apart.
struct Q8Tile16 {
  template <int64_t R>
  static void tile(const uint8_t* rec, int64_t KB, const int16_t* xq, const float* xs,
                   int64_t K, int64_t m0, float* y, int64_t N, int64_t n0, const float* bias) {
#ifdef SLIP_AVX2
    __m256 acc[R];
    for (int64_t r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
    for (int64_t b = 0; b < KB; ++b) {
      const uint8_t* rb = rec + b * REC8;
      __m256i lo4[R], hi4[R];
      for (int64_t r = 0; r < R; ++r) lo4[r] = hi4[r] = _mm256_setzero_si256();
      for (int64_t s = 0; s < 8; ++s) {
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rb + 32 * s));
        const __m256i wa = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(v));
        const __m256i wb = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(v, 1));
        for (int64_t r = 0; r < R; ++r) {
          const __m256i xv = bcast4(xq + (m0 + r) * K + b * QK + 4 * s);
          lo4[r] = dot_s16(lo4[r], wa, xv);
          hi4[r] = dot_s16(hi4[r], wb, xv);
        }
      }
      const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rb + 256)));
      for (int64_t r = 0; r < R; ++r) {
        const __m256 scale = _mm256_mul_ps(d, _mm256_set1_ps(xs[(m0 + r) * KB + b]));
        const __m256 sums = _mm256_cvtepi32_ps(pair_sums_in_row_order(lo4[r], hi4[r]));
        acc[r] = _mm256_fmadd_ps(sums, scale, acc[r]);
      }
    }
    store_group<R>(acc, y, N, m0, n0, bias);
#else
    for (int64_t r = 0; r < R; ++r) group_scalar8(rec, KB, xq, xs, K, m0 + r, y, N, n0, bias);
#endif
  }
};

#ifdef SLIP_VNNI
// int8 activations with VNNI: xu holds x + 128 as unsigned bytes; one dpbusd per 4 weights of
// 8 rows, then the 128 * wsum correction once a block.
struct Q8TileVnni {
  template <int64_t R>
  static void tile(const uint8_t* rec, int64_t KB, const int8_t* xu, const float* xs,
                   int64_t K, int64_t m0, float* y, int64_t N, int64_t n0, const float* bias) {
    __m256 acc[R];
    for (int64_t r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
    for (int64_t b = 0; b < KB; ++b) {
      const uint8_t* rb = rec + b * REC8;
      __m256i part[R];
      for (int64_t r = 0; r < R; ++r) part[r] = _mm256_setzero_si256();
      for (int64_t s = 0; s < 8; ++s) {
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rb + 32 * s));
        for (int64_t r = 0; r < R; ++r)
          part[r] = SLIP_DPBUSD(part[r], bcast4(xu + (m0 + r) * K + b * QK + 4 * s), v);
      }
      const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rb + 256)));
      const __m256i corr = _mm256_slli_epi32(
          _mm256_cvtepi16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rb + 272))), 7);
      for (int64_t r = 0; r < R; ++r) {
        const __m256 scale = _mm256_mul_ps(d, _mm256_set1_ps(xs[(m0 + r) * KB + b]));
        const __m256 sums = _mm256_cvtepi32_ps(_mm256_sub_epi32(part[r], corr));
        acc[r] = _mm256_fmadd_ps(sums, scale, acc[r]);
      }
    }
    store_group<R>(acc, y, N, m0, n0, bias);
  }
};
#endif

// x [M, K] float; w [N/8, K/32, 288] uint8 records; bias [N] float32 or undefined;
// act_bits 8 (llama.cpp's Q8_0 x Q8_0 numerics) or 16 (within float rounding of fp32 math).
at::Tensor q8x8_linear(const at::Tensor& x_in, const at::Tensor& w,
                       const c10::optional<at::Tensor>& bias_in, int64_t act_bits) {
  TORCH_CHECK(act_bits == 8 || act_bits == 16, "q8x8_linear: act_bits must be 8 or 16");
  TORCH_CHECK(x_in.dim() == 2 && w.dim() == 3 && w.scalar_type() == at::kByte,
              "q8x8_linear: x [M, K] and uint8 records [N/8, K/32, 288]");
  const int64_t M = x_in.size(0), K = x_in.size(1), G = w.size(0), KB = K / QK, N = 8 * G;
  TORCH_CHECK(K % QK == 0 && w.size(1) == KB && w.size(2) == REC8,
              "q8x8_linear: shape mismatch");
  const at::Tensor x = x_in.to(at::kFloat).contiguous();
  const at::Tensor wc = w.contiguous();
  at::Tensor bias;
  if (bias_in.has_value() && bias_in->defined()) bias = bias_in->to(at::kFloat).contiguous();
  at::Tensor y = at::empty({M, N}, x.options());
  const uint8_t* wp = wc.data_ptr<uint8_t>();
  const float* bp = bias.defined() ? bias.data_ptr<float>() : nullptr;
  float* yp = y.data_ptr<float>();
  std::vector<float> xs(M * KB);
#ifdef SLIP_VNNI
  if (act_bits == 8) {
    std::vector<int8_t> xq(M * K);
    quantize_rows(x.data_ptr<float>(), M, K, xq.data(), xs.data());
    for (auto& v : xq) v = static_cast<int8_t>(static_cast<uint8_t>(v) ^ 0x80);  // x + 128
    for_each_tile(G, M, K, KB * REC8, [&](int64_t g, int64_t m0, int64_t rows) {
      tile_rows<Q8TileVnni, IMT>(rows, wp + g * KB * REC8, KB, xq.data(), xs.data(), K, m0, yp,
                                 N, 8 * g, bp);
    });
    return x_in.scalar_type() == at::kFloat ? y : y.to(x_in.scalar_type());
  }
#endif
  std::vector<int16_t> xq(M * K);
  quantize_rows(x.data_ptr<float>(), M, K, xq.data(), xs.data(), nullptr,
                act_bits == 8 ? 127.f : 32767.f);
  for_each_tile(G, M, K * 2, KB * REC8, [&](int64_t g, int64_t m0, int64_t rows) {
    tile_rows<Q8Tile16, IMT>(rows, wp + g * KB * REC8, KB, xq.data(), xs.data(), K, m0, yp, N,
                             8 * g, bp);
  });
  return x_in.scalar_type() == at::kFloat ? y : y.to(x_in.scalar_type());
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(slipstream_cpu_linear, m) {
  m.def("q8x8_linear(Tensor x, Tensor w, Tensor? bias, int act_bits=16) -> Tensor");
}

TORCH_LIBRARY_IMPL(slipstream_cpu_linear, CPU, m) { m.impl("q8x8_linear", &q8x8_linear); }
