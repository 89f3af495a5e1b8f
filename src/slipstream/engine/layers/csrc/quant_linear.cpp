// Block-int8 linear layer for CPU: y = x @ W^T with W stored as int8 in blocks of 32 along K,
// one float scale per block (GGUF's Q8_0 layout), and x quantized on the fly the same way.
//
// Why: decoding a few sequences reads every weight once per step, so bytes per weight set the
// speed. int8 blocks read 4x fewer bytes than fp32, and the integer dot product (AVX2
// maddubs/madd, 32 multiply-adds per instruction pair) is cheaper than widening to float.
// This is the scheme llama.cpp uses for its Q8_0 x Q8_0 dot products; the block scales keep
// the error near fp16's (tests compare with the float matmul).
//
// Work is split over output rows; each weight block is loaded once and used for every row of x.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "quant_common.h"

namespace {

using namespace slip_quant;

#ifdef SLIP_AVX2
// One block of int8 weights against int16 activations: widen the weights, madd_epi16.
inline __m256 block_dot16(const int8_t* w, const int16_t* x) {
  const __m256i w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w)));
  const __m256i w1 =
      _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 16)));
  const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x));
  const __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 16));
  return _mm256_cvtepi32_ps(dot_s16(_mm256_madd_epi16(w0, x0), w1, x1));
}
#endif

// y[m, n0:n1] for rows m0..m0+rows of x (rows <= MT); Q is the activation type.
template <typename Q, int64_t R>
void tile(const int8_t* wq, const half_bits* ws, const Q* xq, const float* xs, int64_t K,
          int64_t n0, int64_t n1, int64_t m0, float* y, int64_t N, const float* bias) {
  const int64_t KB = K / QK;
  for (int64_t n = n0; n < n1; ++n) {
    const int8_t* wrow = wq + n * K;
    const half_bits* wsrow = ws + n * KB;
    float out[R];
#ifdef SLIP_AVX2
    const __m256i ones = _mm256_set1_epi16(1);
    // Two accumulator sets, alternating blocks: one FMA chain per row would wait on its own
    // latency every block. (Unrolled by hand so both stay in registers.)
    __m256 acc0[R], acc1[R];
    for (int64_t r = 0; r < R; ++r) acc0[r] = acc1[r] = _mm256_setzero_ps();
    auto step = [&](int64_t b, __m256* a) __attribute__((always_inline)) {
      const float wd = h2f(wsrow[b]);
      if constexpr (sizeof(Q) == 1) {
        const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wrow + b * QK));
        const __m256i aw = _mm256_sign_epi8(w, w);
        for (int64_t r = 0; r < R; ++r) {
          const int64_t m = m0 + r;
          const __m256 p = block_dot(aw, w, xq + m * K + b * QK, ones);
          a[r] = _mm256_fmadd_ps(p, _mm256_set1_ps(wd * xs[m * KB + b]), a[r]);
        }
      } else {
        for (int64_t r = 0; r < R; ++r) {
          const int64_t m = m0 + r;
          const __m256 p = block_dot16(wrow + b * QK, xq + m * K + b * QK);
          a[r] = _mm256_fmadd_ps(p, _mm256_set1_ps(wd * xs[m * KB + b]), a[r]);
        }
      }
    };
    int64_t b = 0;
    for (; b + 1 < KB; b += 2) {
      step(b, acc0);
      step(b + 1, acc1);
    }
    if (b < KB) step(b, acc0);
    for (int64_t r = 0; r < R; ++r) out[r] = hsum(_mm256_add_ps(acc0[r], acc1[r]));
#else
    for (int64_t r = 0; r < R; ++r) {
      const int64_t m = m0 + r;
      float total = 0.f;
      for (int64_t b = 0; b < KB; ++b) {
        int32_t s = 0;
        const int8_t* wb = wrow + b * QK;
        const Q* xb = xq + m * K + b * QK;
        for (int64_t i = 0; i < QK; ++i) s += static_cast<int32_t>(wb[i]) * xb[i];
        total += static_cast<float>(s) * h2f(wsrow[b]) * xs[m * KB + b];
      }
      out[r] = total;
    }
#endif
    const float bv = bias ? bias[n] : 0.f;
    for (int64_t r = 0; r < R; ++r) y[(m0 + r) * N + n] = out[r] + bv;
  }
}

template <typename Q>
void rows_dispatch(int64_t rows, const int8_t* wq, const half_bits* ws, const Q* xq,
                   const float* xs, int64_t K, int64_t n0, int64_t n1, int64_t m0, float* y,
                   int64_t N, const float* bias) {
  switch (rows) {
    case 4: tile<Q, 4>(wq, ws, xq, xs, K, n0, n1, m0, y, N, bias); break;
    case 3: tile<Q, 3>(wq, ws, xq, xs, K, n0, n1, m0, y, N, bias); break;
    case 2: tile<Q, 2>(wq, ws, xq, xs, K, n0, n1, m0, y, N, bias); break;
    default: tile<Q, 1>(wq, ws, xq, xs, K, n0, n1, m0, y, N, bias); break;
  }
}

template <typename Q>
void run_rows(const int8_t* wp, const half_bits* sp, int64_t N, int64_t K, int64_t M,
              const float* x, const float* bp, float* yp) {
  std::vector<Q> xq(M * K);
  std::vector<float> xs(M * (K / QK));
  quantize_rows(x, M, K, xq.data(), xs.data());
  // Chunks of output rows; small grains keep both cores busy on short layers.
  // Within a chunk, NB weight rows at a time stay in L1/L2 while every row tile of x uses them.
  constexpr int64_t NB = 8;
  at::parallel_for(0, N, 16, [&](int64_t n0, int64_t n1) {
    for (int64_t nb = n0; nb < n1; nb += NB) {
      const int64_t ne = std::min(n1, nb + NB);
      for (int64_t m0 = 0; m0 < M; m0 += MT) {
        rows_dispatch<Q>(std::min(MT, M - m0), wp, sp, xq.data(), xs.data(), K, nb, ne, m0, yp,
                         N, bp);
      }
    }
  });
}

// x [M, K] float32; wq [N, K] int8; ws [N, K/32] float16; bias [N] float32 or undefined;
// act_bits 8 (llama.cpp's Q8_0 x Q8_0) or 16 (within float rounding of the fp32 math).
at::Tensor q8_linear(const at::Tensor& x_in, const at::Tensor& wq, const at::Tensor& ws,
                     const c10::optional<at::Tensor>& bias_in, int64_t act_bits) {
  TORCH_CHECK(act_bits == 8 || act_bits == 16, "q8_linear: act_bits must be 8 or 16");
  TORCH_CHECK(x_in.dim() == 2 && wq.dim() == 2 && ws.dim() == 2, "q8_linear: 2-D tensors");
  TORCH_CHECK(wq.scalar_type() == at::kChar && ws.scalar_type() == at::kHalf,
              "q8_linear: wq int8, ws float16");
  const int64_t M = x_in.size(0), K = x_in.size(1), N = wq.size(0);
  TORCH_CHECK(wq.size(1) == K && K % QK == 0 && ws.size(0) == N && ws.size(1) == K / QK,
              "q8_linear: shape mismatch");
  const at::Tensor x = x_in.to(at::kFloat).contiguous();
  const at::Tensor w = wq.contiguous(), s = ws.contiguous();
  at::Tensor bias;
  if (bias_in.has_value() && bias_in->defined()) bias = bias_in->to(at::kFloat).contiguous();
  at::Tensor y = at::empty({M, N}, x.options());
  const int8_t* wp = w.data_ptr<int8_t>();
  const half_bits* sp = reinterpret_cast<const half_bits*>(s.data_ptr<at::Half>());
  const float* bp = bias.defined() ? bias.data_ptr<float>() : nullptr;
  if (act_bits == 8) {
    run_rows<int8_t>(wp, sp, N, K, M, x.data_ptr<float>(), bp, y.data_ptr<float>());
  } else {
    run_rows<int16_t>(wp, sp, N, K, M, x.data_ptr<float>(), bp, y.data_ptr<float>());
  }
  return x_in.scalar_type() == at::kFloat ? y : y.to(x_in.scalar_type());
}

}  // namespace

TORCH_LIBRARY(slipstream_cpu_linear, m) {
  m.def("q8_linear(Tensor x, Tensor wq, Tensor ws, Tensor? bias, int act_bits=16) -> Tensor");
}

TORCH_LIBRARY_IMPL(slipstream_cpu_linear, CPU, m) {
  m.impl("q8_linear", &q8_linear);
}
