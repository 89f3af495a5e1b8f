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

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define SLIP_AVX2 1
#endif

namespace {

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

// x [M, K] float -> xq [M, K] int8 and xs [M, K/QK] float (symmetric, per block); when xsum
// is given, also xsum[m, b] = xs * sum(xq) over the block (the Q4 kernel's min term needs it).
void quantize_rows(const float* x, int64_t M, int64_t K, int8_t* xq, float* xs,
                   float* xsum = nullptr) {
  const int64_t KB = K / QK;
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t b = 0; b < KB; ++b) {
      const float* src = x + m * K + b * QK;
      float amax = 0.f;
      for (int64_t i = 0; i < QK; ++i) amax = std::max(amax, std::fabs(src[i]));
      const float d = amax / 127.f;
      const float inv = d > 0.f ? 1.f / d : 0.f;
      int8_t* dst = xq + m * K + b * QK;
      int32_t sum = 0;
      for (int64_t i = 0; i < QK; ++i) {
        dst[i] = static_cast<int8_t>(std::nearbyint(src[i] * inv));
        sum += dst[i];
      }
      xs[m * KB + b] = d;
      if (xsum) xsum[m * KB + b] = d * static_cast<float>(sum);
    }
  }
}

#ifdef SLIP_AVX2
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
  return _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(aw, sx), ones));
}
#endif

// y[m, n0:n1] for rows m0..m0+rows of x (rows <= MT).
template <int64_t R>
void tile(const int8_t* wq, const half_bits* ws, const int8_t* xq, const float* xs, int64_t K,
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
      const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wrow + b * QK));
      const __m256i aw = _mm256_sign_epi8(w, w);
      const float wd = h2f(wsrow[b]);
      for (int64_t r = 0; r < R; ++r) {
        const int64_t m = m0 + r;
        const __m256 p = block_dot(aw, w, xq + m * K + b * QK, ones);
        a[r] = _mm256_fmadd_ps(p, _mm256_set1_ps(wd * xs[m * KB + b]), a[r]);
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
        const int8_t* xb = xq + m * K + b * QK;
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

void rows_dispatch(int64_t rows, const int8_t* wq, const half_bits* ws, const int8_t* xq,
                   const float* xs, int64_t K, int64_t n0, int64_t n1, int64_t m0, float* y,
                   int64_t N, const float* bias) {
  switch (rows) {
    case 4: tile<4>(wq, ws, xq, xs, K, n0, n1, m0, y, N, bias); break;
    case 3: tile<3>(wq, ws, xq, xs, K, n0, n1, m0, y, N, bias); break;
    case 2: tile<2>(wq, ws, xq, xs, K, n0, n1, m0, y, N, bias); break;
    default: tile<1>(wq, ws, xq, xs, K, n0, n1, m0, y, N, bias); break;
  }
}

// x [M, K] float32; wq [N, K] int8; ws [N, K/32] float16; bias [N] float32 or undefined.
at::Tensor q8_linear(const at::Tensor& x_in, const at::Tensor& wq, const at::Tensor& ws,
                     const c10::optional<at::Tensor>& bias_in) {
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
  std::vector<int8_t> xq(M * K);
  std::vector<float> xs(M * (K / QK));
  quantize_rows(x.data_ptr<float>(), M, K, xq.data(), xs.data());
  const int8_t* wp = w.data_ptr<int8_t>();
  const half_bits* sp = reinterpret_cast<const half_bits*>(s.data_ptr<at::Half>());
  const float* bp = bias.defined() ? bias.data_ptr<float>() : nullptr;
  float* yp = y.data_ptr<float>();
  // Chunks of output rows; small grains keep both cores busy on short layers.
  // Within a chunk, NB weight rows at a time stay in L1/L2 while every row tile of x uses them.
  constexpr int64_t NB = 8;
  at::parallel_for(0, N, 16, [&](int64_t n0, int64_t n1) {
    for (int64_t nb = n0; nb < n1; nb += NB) {
      const int64_t ne = std::min(n1, nb + NB);
      for (int64_t m0 = 0; m0 < M; m0 += MT) {
        rows_dispatch(std::min(MT, M - m0), wp, sp, xq.data(), xs.data(), K, nb, ne, m0, yp, N,
                      bp);
      }
    }
  });
  return x_in.scalar_type() == at::kFloat ? y : y.to(x_in.scalar_type());
}

// ---- 4-bit weights: Q4_1 layout (per 32-block: 16 bytes of nibbles, scale d and min m) ----
// w = d * q + m with q in 0..15, so dot(w, x) = d * sum(q * xq) * xs + m * xsum. Byte j of a
// block holds q[j] in its low nibble and q[j + 16] in its high one (as GGUF stores Q4_1).
template <int64_t R>
void tile_q4(const uint8_t* w4, const half_bits* wd, const half_bits* wm, const int8_t* xq,
             const float* xs, const float* xsum, int64_t K, int64_t n0, int64_t n1, int64_t m0,
             float* y, int64_t N, const float* bias) {
  const int64_t KB = K / QK;
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* wrow = w4 + n * (K / 2);
    const half_bits* d = wd + n * KB;
    const half_bits* mn = wm + n * KB;
    float out[R];
#ifdef SLIP_AVX2
    const __m256i ones = _mm256_set1_epi16(1);
    const __m128i low4 = _mm_set1_epi8(0x0F);
    __m256 acc0[R], acc1[R];
    for (int64_t r = 0; r < R; ++r) acc0[r] = acc1[r] = _mm256_setzero_ps();
    auto step = [&](int64_t b, __m256* a) __attribute__((always_inline)) {
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(wrow + b * (QK / 2)));
      const __m256i w = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), low4),
                                         _mm_and_si128(v, low4));
      const float db = h2f(d[b]);
      for (int64_t r = 0; r < R; ++r) {
        const int64_t m = m0 + r;
        const __m256i xv =
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + m * K + b * QK));
        const __m256 p =
            _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(w, xv), ones));
        a[r] = _mm256_fmadd_ps(p, _mm256_set1_ps(db * xs[m * KB + b]), a[r]);
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
        const uint8_t* wb = wrow + b * (QK / 2);
        const int8_t* xb = xq + m * K + b * QK;
        int32_t s = 0;
        for (int64_t i = 0; i < QK / 2; ++i) s += (wb[i] & 0x0F) * xb[i] + (wb[i] >> 4) * xb[i + 16];
        total += static_cast<float>(s) * h2f(d[b]) * xs[m * KB + b];
      }
      out[r] = total;
    }
#endif
    const float bv = bias ? bias[n] : 0.f;
    for (int64_t r = 0; r < R; ++r) {
      const float* xsr = xsum + (m0 + r) * KB;
      float mins = 0.f;
      for (int64_t b = 0; b < KB; ++b) mins += h2f(mn[b]) * xsr[b];
      y[(m0 + r) * N + n] = out[r] + mins + bv;
    }
  }
}

// x [M, K] float; w4 [N, K/2] uint8; wd, wm [N, K/32] float16; bias [N] or undefined.
at::Tensor q4_linear(const at::Tensor& x_in, const at::Tensor& w4, const at::Tensor& wd,
                     const at::Tensor& wm, const c10::optional<at::Tensor>& bias_in) {
  TORCH_CHECK(x_in.dim() == 2 && w4.dim() == 2 && wd.dim() == 2 && wm.dim() == 2,
              "q4_linear: 2-D tensors");
  TORCH_CHECK(w4.scalar_type() == at::kByte && wd.scalar_type() == at::kHalf &&
                  wm.scalar_type() == at::kHalf,
              "q4_linear: w4 uint8, wd and wm float16");
  const int64_t M = x_in.size(0), K = x_in.size(1), N = w4.size(0), KB = K / QK;
  TORCH_CHECK(K % QK == 0 && w4.size(1) == K / 2 && wd.size(0) == N && wd.size(1) == KB &&
                  wm.sizes() == wd.sizes(),
              "q4_linear: shape mismatch");
  const at::Tensor x = x_in.to(at::kFloat).contiguous();
  const at::Tensor w = w4.contiguous(), dd = wd.contiguous(), mm = wm.contiguous();
  at::Tensor bias;
  if (bias_in.has_value() && bias_in->defined()) bias = bias_in->to(at::kFloat).contiguous();
  at::Tensor y = at::empty({M, N}, x.options());
  std::vector<int8_t> xq(M * K);
  std::vector<float> xs(M * KB), xsum(M * KB);
  quantize_rows(x.data_ptr<float>(), M, K, xq.data(), xs.data(), xsum.data());
  const uint8_t* wp = w.data_ptr<uint8_t>();
  const half_bits* dp = reinterpret_cast<const half_bits*>(dd.data_ptr<at::Half>());
  const half_bits* mp = reinterpret_cast<const half_bits*>(mm.data_ptr<at::Half>());
  const float* bp = bias.defined() ? bias.data_ptr<float>() : nullptr;
  float* yp = y.data_ptr<float>();
  constexpr int64_t NB = 8;
  at::parallel_for(0, N, 16, [&](int64_t n0, int64_t n1) {
    for (int64_t nb = n0; nb < n1; nb += NB) {
      const int64_t ne = std::min(n1, nb + NB);
      for (int64_t m0 = 0; m0 < M; m0 += MT) {
        const int64_t rows = std::min(MT, M - m0);
        const float* xsp = xs.data();
        const float* xsm = xsum.data();
        switch (rows) {
          case 4: tile_q4<4>(wp, dp, mp, xq.data(), xsp, xsm, K, nb, ne, m0, yp, N, bp); break;
          case 3: tile_q4<3>(wp, dp, mp, xq.data(), xsp, xsm, K, nb, ne, m0, yp, N, bp); break;
          case 2: tile_q4<2>(wp, dp, mp, xq.data(), xsp, xsm, K, nb, ne, m0, yp, N, bp); break;
          default: tile_q4<1>(wp, dp, mp, xq.data(), xsp, xsm, K, nb, ne, m0, yp, N, bp); break;
        }
      }
    }
  });
  return x_in.scalar_type() == at::kFloat ? y : y.to(x_in.scalar_type());
}

}  // namespace

TORCH_LIBRARY(slipstream_cpu_linear, m) {
  m.def("q8_linear(Tensor x, Tensor wq, Tensor ws, Tensor? bias) -> Tensor");
  m.def("q4_linear(Tensor x, Tensor w4, Tensor wd, Tensor wm, Tensor? bias) -> Tensor");
}

TORCH_LIBRARY_IMPL(slipstream_cpu_linear, CPU, m) {
  m.impl("q8_linear", &q8_linear);
  m.impl("q4_linear", &q4_linear);
}
