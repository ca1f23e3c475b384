/* A real inverse DFT as a complex one of half the length: the packing step, fused with the
   transpose from the mode-major layout of opflow/spectral/multiplier.py.

   A real field y on a grid whose last axis has even length N is the pair of real fields of
   its even and odd points along that axis, packed as one complex field of half the length,
   z(r, m) = y(r, 2m) + i y(r, 2m + 1), m < h = N / 2 (r: the other axes' multi-index). With
   forward-normalised transforms (y = sum_k Y(k) e^{+2 pi i k.n / N}) and Y the half spectrum
   (last-axis wavenumbers 0..h), z's spectrum is, for k < h,

       Z(r, k) = (Y(r, k) + Y'(r, k)) + i w_k (Y(r, k) - Y'(r, k)),   w_k = e^{2 pi i k / N},
       Y'(r, k) = conj(Y(-r, h - k))           (the full spectrum at k + h, by symmetry),

   so y = z viewed as real numbers, with z the inverse complex DFT of Z on the other axes and h
   points: one transform, where torch's irfftn transforms the other axes on every one of the
   h + 1 columns first and then copies them for the real transform of the last axis.
   A spectrum that is not exactly Hermitian on the columns k = 0 and k = h is read as
   irfftn reads it: those columns are replaced by their Hermitian parts
   (Y(r) + conj(Y(-r))) / 2 first (their anti-Hermitian parts have no real field).

   Layouts (complex numbers as (re, im) pairs):
     in   [R][h + 1][C][B]  the spectrum per wavenumber, channels then batch (mode-major);
     out  [B][C][R][h]      Z, ready for torch.fft.ifftn over its last axes;
     mirror[R]              the flattened index of -r (each axis' index negated mod its size);
     twiddle[2 h]           (cos, sin) of 2 pi k / N.
   Built and loaded by opflow/native/__init__.py; called by opflow/spectral/half_spectrum.py,
   which uses torch.fft.irfftn where this is unavailable. */

#include <immintrin.h>
#include <stdint.h>

#define K_BLOCK 16 /* columns per work item: a (b, c) row of out gets 16 numbers at once */

/* z = Z(r, k) from a = Y(r, k) and b = Y'(r, k) (already conjugated) */
#define DEFINE_PACK(NAME, T)                                                                   \
  static inline void NAME##_one(T a_re, T a_im, T b_re, T b_im, T cos_k, T sin_k, T *z) {      \
    const T d_re = a_re - b_re, d_im = a_im - b_im;                                            \
    z[0] = a_re + b_re - (cos_k * d_im + sin_k * d_re);                                        \
    z[1] = a_im + b_im + (cos_k * d_re - sin_k * d_im);                                        \
  }                                                                                            \
                                                                                               \
  void NAME(const T *in, T *out, const int64_t *mirror, const T *twiddle, int64_t rows,        \
            int64_t half, int64_t channels, int64_t batch, int threads) {                      \
    const int64_t width = half + 1, row = 2 * channels * batch, stride = 2 * rows * half;      \
    const int64_t blocks = (half + K_BLOCK - 1) / K_BLOCK;                                     \
    _Pragma("omp parallel num_threads(threads)") {                                             \
      T segment[2 * K_BLOCK] __attribute__((aligned(64)));                                     \
      _Pragma("omp for schedule(static)")                                                      \
      for (int64_t item = 0; item < rows * blocks; item++) {                                   \
        const int64_t r = item / blocks, k0 = (item % blocks) * K_BLOCK, m = mirror[r];        \
        const int64_t k1 = k0 + K_BLOCK < half ? k0 + K_BLOCK : half, k_start = k0 ? k0 : 1;   \
        const T *a = in + r * width * row, *b = in + (m * width + half) * row;                 \
        const T *a_m = in + m * width * row, *b_m = in + (r * width + half) * row;             \
        for (int64_t c = 0; c < channels; c++) {                                               \
          for (int64_t n = 0; n < batch; n++) {                                                \
            const int64_t j = 2 * (c * batch + n);                                             \
            T *z = out + (n * channels + c) * stride + 2 * r * half + 2 * k0;                  \
            const int stream = k1 - k0 == K_BLOCK && ((uintptr_t)z & 63) == 0;                 \
            T *w = stream ? segment : z; /* w[2 (k - k0)]: Z(r, k) */                         \
            if (k0 == 0) /* the columns 0 and h by their Hermitian parts */                    \
              NAME##_one((a[j] + a_m[j]) / 2, (a[j + 1] - a_m[j + 1]) / 2,                     \
                         (b[j] + b_m[j]) / 2, (b_m[j + 1] - b[j + 1]) / 2, twiddle[0],         \
                         twiddle[1], w);                                                       \
            for (int64_t k = k_start; k < k1; k++) /* Y(r, k) and conj Y(-r, h - k) */         \
              NAME##_one(a[k * row + j], a[k * row + j + 1], b[-k * row + j],                  \
                         -b[-k * row + j + 1], twiddle[2 * k], twiddle[2 * k + 1],             \
                         w + 2 * (k - k0));                                                    \
            if (stream)                                                                        \
              stream_lines(z, segment, sizeof(segment));                                       \
          }                                                                                    \
        }                                                                                      \
      }                                                                                        \
      _mm_sfence(); /* this thread's streaming stores, before the caller reads out */          \
    }                                                                                          \
  }

/* Full cache lines of out, written around the caches (no read of lines that are only
   written: measured 2x faster when out is not in cache, the usual case). */
static inline void stream_lines(void *dst, const void *src, size_t bytes) {
  for (size_t o = 0; o < bytes; o += 32)
    _mm256_stream_si256((__m256i *)((char *)dst + o),
                        _mm256_load_si256((const __m256i *)((const char *)src + o)));
}

DEFINE_PACK(opflow_pack_half_spectrum_f32, float)
DEFINE_PACK(opflow_pack_half_spectrum_f64, double)
