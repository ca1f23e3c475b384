/* GELU and its derivative on float32 arrays, AVX2 + FMA, threaded with OpenMP; and GELU of a
   pointwise affine map with few inputs (opflow_affine_gelu, at the end of this file).

     GELU(x)  = x Phi(x),            Phi(x) = (1 + erf(x / sqrt 2)) / 2
     GELU'(x) = Phi(x) + x phi(x),   phi(x) = exp(-x^2 / 2) / sqrt(2 pi)

   torch computes erf through exp (and a division), which makes its exact GELU compute-bound
   on CPUs at 4-5x a multiply's time per value. Here erf is a rational function with no exp:
   erf(s) ~ s P(s^2) / Q(s^2) on [-4, 4] (s clamped there: beyond, erf is +-1 to float32
   precision), fitted by fit_erf.py. exp (backward only) is Cody-Waite reduction to
   r in [-ln2/2, ln2/2] and a degree-6 Taylor polynomial, scaled by 2^n through the exponent
   bits, and is 0 below -87.
   Against float64 (tests/test_gelu.py): GELU within 2.5e-7 max(1, |x|), GELU' within 3e-7.

   Every function works in place too (out may be x or grad): each element is read before it
   is written, and no other element is touched. Built and loaded by opflow/native/__init__.py;
   called by opflow/layers/gelu.py, which falls back to torch's op when this is unavailable. */

#include <immintrin.h>
#include <stdint.h>

/* fitted by opflow/native/fit_erf.py: max |error| 2.1e-08 in float64 */
static const float ERF_P[6] = {1.128378976e+00f, 1.962495281e-01f, 5.346755323e-02f,
                               4.003671193e-03f, 2.880422931e-04f, 1.974828940e-06f};
static const float ERF_Q[6] = {1.000000000e+00f, 5.072527744e-01f, 1.164766567e-01f,
                               1.544447078e-02f, 1.216366707e-03f, 3.748089807e-05f};

#define LANES 8
#define BLOCK 16384 /* elements per OpenMP work item: 64 KiB, amortises the scheduling */

static inline __m256 horner(const float *c, __m256 t) {
  __m256 acc = _mm256_set1_ps(c[5]);
  for (int k = 4; k >= 0; k--) acc = _mm256_fmadd_ps(acc, t, _mm256_set1_ps(c[k]));
  return acc;
}

/* Exactly +-1 from |s| = 4 on, and never beyond +-1 inside: Phi must be 0 (not a rounding
   error's +-1e-7) where x is huge and negative, or x Phi(x) would be far from 0. */
static inline __m256 erf8(__m256 s) {
  const __m256 sign_bit = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f);
  __m256 beyond = _mm256_cmp_ps(_mm256_andnot_ps(sign_bit, s), _mm256_set1_ps(4.0f), _CMP_GE_OQ);
  __m256 c = _mm256_min_ps(_mm256_max_ps(s, _mm256_set1_ps(-4.0f)), _mm256_set1_ps(4.0f));
  __m256 t = _mm256_mul_ps(c, c);
  __m256 r = _mm256_div_ps(_mm256_mul_ps(c, horner(ERF_P, t)), horner(ERF_Q, t));
  r = _mm256_min_ps(_mm256_max_ps(r, _mm256_sub_ps(_mm256_setzero_ps(), one)), one);
  return _mm256_blendv_ps(r, _mm256_or_ps(_mm256_and_ps(s, sign_bit), one), beyond);
}

/* exp(y) for y <= 0; exactly 0 below -87 (where 2^n would leave the normal floats). */
static inline __m256 exp8_nonpositive(__m256 y) {
  __m256 underflow = _mm256_cmp_ps(y, _mm256_set1_ps(-87.0f), _CMP_LT_OQ);
  y = _mm256_max_ps(y, _mm256_set1_ps(-87.0f));
  __m256 n = _mm256_round_ps(_mm256_mul_ps(y, _mm256_set1_ps(1.44269504f)),
                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  /* r = y - n ln2, with ln2 split in two so that n * ln2_hi is exact */
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), y);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765330187e-06f), r);
  __m256 e = _mm256_set1_ps(1.0f / 720.0f);
  e = _mm256_fmadd_ps(e, r, _mm256_set1_ps(1.0f / 120.0f));
  e = _mm256_fmadd_ps(e, r, _mm256_set1_ps(1.0f / 24.0f));
  e = _mm256_fmadd_ps(e, r, _mm256_set1_ps(1.0f / 6.0f));
  e = _mm256_fmadd_ps(e, r, _mm256_set1_ps(0.5f));
  e = _mm256_fmadd_ps(e, r, _mm256_set1_ps(1.0f));
  e = _mm256_fmadd_ps(e, r, _mm256_set1_ps(1.0f));
  __m256i two_n = _mm256_slli_epi32(
      _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_andnot_ps(underflow, _mm256_mul_ps(e, _mm256_castsi256_ps(two_n)));
}

static inline __m256 normal_cdf8(__m256 x) {
  __m256 half = _mm256_set1_ps(0.5f);
  return _mm256_fmadd_ps(erf8(_mm256_mul_ps(x, _mm256_set1_ps(0.70710678118654752f))), half,
                         half);
}

static inline __m256 gelu8(__m256 x) { return _mm256_mul_ps(x, normal_cdf8(x)); }

static inline __m256 gelu_grad8(__m256 x) {
  __m256 y = _mm256_mul_ps(_mm256_mul_ps(x, x), _mm256_set1_ps(-0.5f));
  __m256 pdf = _mm256_mul_ps(exp8_nonpositive(y), _mm256_set1_ps(0.3989422804014327f));
  return _mm256_fmadd_ps(x, pdf, normal_cdf8(x));
}

/* The last partial vector goes through a zero-padded copy. */
static void gelu_range(const float *x, float *out, int64_t lo, int64_t hi) {
  int64_t i = lo;
  for (; i + LANES <= hi; i += LANES) _mm256_storeu_ps(out + i, gelu8(_mm256_loadu_ps(x + i)));
  if (i < hi) {
    float in[LANES] = {0}, res[LANES];
    for (int64_t j = i; j < hi; j++) in[j - i] = x[j];
    _mm256_storeu_ps(res, gelu8(_mm256_loadu_ps(in)));
    for (int64_t j = i; j < hi; j++) out[j] = res[j - i];
  }
}

static void gelu_backward_range(const float *grad, const float *x, float *out, int64_t lo,
                                int64_t hi) {
  int64_t i = lo;
  for (; i + LANES <= hi; i += LANES)
    _mm256_storeu_ps(out + i,
                     _mm256_mul_ps(_mm256_loadu_ps(grad + i), gelu_grad8(_mm256_loadu_ps(x + i))));
  if (i < hi) {
    float g[LANES] = {0}, in[LANES] = {0}, res[LANES];
    for (int64_t j = i; j < hi; j++) {
      g[j - i] = grad[j];
      in[j - i] = x[j];
    }
    _mm256_storeu_ps(res, _mm256_mul_ps(_mm256_loadu_ps(g), gelu_grad8(_mm256_loadu_ps(in))));
    for (int64_t j = i; j < hi; j++) out[j] = res[j - i];
  }
}

/* out[i] = GELU(x[i]), i < n, on `threads` threads. */
void opflow_gelu(const float *x, float *out, int64_t n, int threads) {
  int64_t blocks = (n + BLOCK - 1) / BLOCK;
#pragma omp parallel for num_threads(threads) schedule(static) if (blocks > 1 && threads > 1)
  for (int64_t b = 0; b < blocks; b++) {
    int64_t hi = (b + 1) * BLOCK < n ? (b + 1) * BLOCK : n;
    gelu_range(x, out, b * BLOCK, hi);
  }
}

/* out[i] = grad[i] * GELU'(x[i]), i < n, on `threads` threads. */
void opflow_gelu_backward(const float *grad, const float *x, float *out, int64_t n,
                          int threads) {
  int64_t blocks = (n + BLOCK - 1) / BLOCK;
#pragma omp parallel for num_threads(threads) schedule(static) if (blocks > 1 && threads > 1)
  for (int64_t b = 0; b < blocks; b++) {
    int64_t hi = (b + 1) * BLOCK < n ? (b + 1) * BLOCK : n;
    gelu_backward_range(grad, x, out, b * BLOCK, hi);
  }
}

/* GELU of a pointwise affine map with few inputs (an FNO's lifting layer: the field and the
   grid coordinates), computed without storing the pre-activation:
     out[b, c, i] = GELU(h[b, c, i]),  h[b, c, i] = sum_k w[c, k] x[b, k, i] + bias[c],
   x (batch, k_in, n), w (c_out, k_in), bias (c_out), out (batch, c_out, n). One work item
   per output row (b, c); consecutive rows share their k_in input rows, which stay in cache. */
static inline __m256 affine8(const float *xb, const float *wc, float bias, int64_t k_in,
                             int64_t n, int64_t i) {
  __m256 pre = _mm256_set1_ps(bias);
  for (int64_t k = 0; k < k_in; k++)
    pre = _mm256_fmadd_ps(_mm256_set1_ps(wc[k]), _mm256_loadu_ps(xb + k * n + i), pre);
  return pre;
}

/* x rows k of the last partial vector, zero-padded, as a (k_in, LANES) block */
static void pad_tail(const float *xb, int64_t k_in, int64_t n, int64_t i, float *block) {
  for (int64_t k = 0; k < k_in; k++)
    for (int64_t j = 0; j < LANES; j++) block[k * LANES + j] = i + j < n ? xb[k * n + i + j] : 0;
}

#define MAX_AFFINE_INPUTS 8

void opflow_affine_gelu(const float *x, const float *w, const float *bias, float *out,
                        int64_t batch, int64_t k_in, int64_t c_out, int64_t n, int threads) {
  int64_t rows = batch * c_out;
#pragma omp parallel for num_threads(threads) schedule(static) if (rows > 1 && threads > 1)
  for (int64_t r = 0; r < rows; r++) {
    const float *xb = x + (r / c_out) * k_in * n, *wc = w + (r % c_out) * k_in;
    float *o = out + r * n;
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
      _mm256_storeu_ps(o + i, gelu8(affine8(xb, wc, bias[r % c_out], k_in, n, i)));
    if (i < n) {
      float block[MAX_AFFINE_INPUTS * LANES], res[LANES];
      pad_tail(xb, k_in, n, i, block);
      _mm256_storeu_ps(res, gelu8(affine8(block, wc, bias[r % c_out], k_in, LANES, 0)));
      for (int64_t j = i; j < n; j++) o[j] = res[j - i];
    }
  }
}

static inline float horizontal_sum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)));
}

/* Backward of opflow_affine_gelu: grad (batch, c_out, n) becomes grad * GELU'(h) in place
   (h recomputed from x), and row_sums (batch * c_out, k_in + 1) receives, per row (b, c),
   sum_i g[b, c, i] x[b, k, i] for each k and then sum_i g[b, c, i], with g the new grad:
   summed over b they are the weight's and the bias's gradients. */
void opflow_affine_gelu_backward(float *grad, const float *x, const float *w, const float *bias,
                                 float *row_sums, int64_t batch, int64_t k_in, int64_t c_out,
                                 int64_t n, int threads) {
  int64_t rows = batch * c_out;
#pragma omp parallel for num_threads(threads) schedule(static) if (rows > 1 && threads > 1)
  for (int64_t r = 0; r < rows; r++) {
    const float *xb = x + (r / c_out) * k_in * n, *wc = w + (r % c_out) * k_in;
    float *g = grad + r * n;
    __m256 acc[MAX_AFFINE_INPUTS + 1];
    for (int64_t k = 0; k <= k_in; k++) acc[k] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES) {
      __m256 pre = affine8(xb, wc, bias[r % c_out], k_in, n, i);
      __m256 gi = _mm256_mul_ps(_mm256_loadu_ps(g + i), gelu_grad8(pre));
      _mm256_storeu_ps(g + i, gi);
      for (int64_t k = 0; k < k_in; k++)
        acc[k] = _mm256_fmadd_ps(gi, _mm256_loadu_ps(xb + k * n + i), acc[k]);
      acc[k_in] = _mm256_add_ps(acc[k_in], gi);
    }
    if (i < n) {
      float block[MAX_AFFINE_INPUTS * LANES], gpad[LANES] = {0}, res[LANES];
      pad_tail(xb, k_in, n, i, block);
      for (int64_t j = i; j < n; j++) gpad[j - i] = g[j];
      __m256 gi = _mm256_mul_ps(_mm256_loadu_ps(gpad),
                                gelu_grad8(affine8(block, wc, bias[r % c_out], k_in, LANES, 0)));
      _mm256_storeu_ps(res, gi);  /* padded lanes hold g = 0: they add nothing below */
      for (int64_t j = i; j < n; j++) g[j] = res[j - i];
      for (int64_t k = 0; k < k_in; k++)
        acc[k] = _mm256_fmadd_ps(gi, _mm256_loadu_ps(block + k * LANES), acc[k]);
      acc[k_in] = _mm256_add_ps(acc[k_in], gi);
    }
    for (int64_t k = 0; k <= k_in; k++) row_sums[r * (k_in + 1) + k] = horizontal_sum(acc[k]);
  }
}
