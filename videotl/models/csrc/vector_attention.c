/*
 * Fused CPU kernels for the Vector Transformer's attention (eq. 3 of the TokenLearner paper):
 *
 *     y_ic = sum_j p_ijc v_jc,   p_ijc = exp(q_ic k_jc - lse_ic),   lse_ic = log sum_j exp(q_ic k_jc)
 *
 * PyTorch evaluates this as separate passes over the N x N x d attention tensor (product, max,
 * exp, sum, weighted sum), each bound by memory bandwidth. These kernels stream over the keys
 * once per block of query rows and keep everything else in L1: the attention tensor is never
 * stored. Three facts make one pass enough:
 *   - the softmax peak is known before the pass: for fixed q_ic the logit is linear in k_jc, so
 *     max_j q_ic k_jc = q_ic * max_j k_jc if q_ic >= 0, else q_ic * min_j k_jc (the caller passes
 *     max_j k_jc and min_j k_jc; no online rescaling is needed);
 *   - backward needs only p, which is recomputed from the saved lse;
 *   - d logit_ijc = p_ijc g_ic (v_jc - y_ic), so grad q and grad k come from the same pass as grad v.
 *
 * Plain C (no PyTorch headers, so it compiles in about a second), called through ctypes, which
 * releases the GIL: the Python side splits query rows across threads. Rows [row_begin, row_end)
 * index the flattened (batch, query) axis; all tensors are contiguous float32:
 * q, lse, out, grad_out, grad_q: (B, Nq, d); k, v, grad_k, grad_v: (B, Nk, d); k_max, k_min: (B, d).
 * Two implementations of the same two functions: AVX-512 intrinsics where the compiler targets
 * AVX-512 (-march=native on such a CPU), else plain C loops left to the auto-vectoriser.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__AVX512F__)
#include <immintrin.h>

/* With AVX-512 the kernels hold a block of query rows x 16 channels in registers and stream the
 * keys past them, so the inner loop does no loads or stores besides k_j and v_j, and the exp is
 * exp2 with vscalefps doing the 2^n (no integer work, exact underflow to 0). The softmax is
 * computed in base 2: exp(q k - m) = 2^(q log2e k - m log2e). */

#define FORWARD_ROWS 4
#define BACKWARD_ROWS 3
#define LOG2E 1.44269504088896341f

/* 2^t: t = n + f with n = round(t), |f| <= 1/2; 2^f by a degree-5 polynomial fitted for relative
 * error (2.3e-7 when evaluated in float32, as Cephes' expf). */
static inline __m512 exp2_avx512(__m512 t) {
    __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 f = _mm512_sub_ps(t, n);
    __m512 p = _mm512_set1_ps(1.32764654699713e-3f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.675541892647743e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.550713464617729e-2f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022120237350464e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.931469440460205e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0000001192092896f));
    return _mm512_scalef_ps(p, n);
}

static inline __mmask16 channel_mask(int64_t c, int64_t d) {
    return d - c >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (d - c)) - 1u);
}

int vector_attention_forward(const float *q, const float *k, const float *v, const float *k_max,
                             const float *k_min, float *out, float *lse, int64_t n_q, int64_t n_k,
                             int64_t d, int64_t row_begin, int64_t row_end) {
    for (int64_t row = row_begin; row < row_end;) {
        int64_t batch = row / n_q;
        int64_t end = (batch + 1) * n_q < row_end ? (batch + 1) * n_q : row_end;
        const float *k_b = k + batch * n_k * d;
        const float *v_b = v + batch * n_k * d;
        const float *k_max_b = k_max + batch * d;
        const float *k_min_b = k_min + batch * d;
        /* Channels outermost: the 16-channel column of k and v stays in cache for every row block. */
        for (int64_t c = 0; c < d; c += 16) {
            __mmask16 mask = channel_mask(c, d);
            __m512 k_hi = _mm512_maskz_loadu_ps(mask, k_max_b + c);
            __m512 k_lo = _mm512_maskz_loadu_ps(mask, k_min_b + c);
            for (int64_t r0 = row; r0 < end; r0 += FORWARD_ROWS) {
                __m512 peak[FORWARD_ROWS], q2[FORWARD_ROWS], m2[FORWARD_ROWS];
                __m512 norm[FORWARD_ROWS], acc[FORWARD_ROWS];
                int64_t at[FORWARD_ROWS];
                for (int r = 0; r < FORWARD_ROWS; ++r) {
                    /* A short last block repeats its last row: the same values are written twice. */
                    int64_t i = r0 + r < end ? r0 + r : end - 1;
                    at[r] = i * d + c;
                    __m512 q_i = _mm512_maskz_loadu_ps(mask, q + at[r]);
                    __mmask16 positive = _mm512_cmp_ps_mask(q_i, _mm512_setzero_ps(), _CMP_GE_OQ);
                    peak[r] = _mm512_mul_ps(q_i, _mm512_mask_blend_ps(positive, k_lo, k_hi));
                    q2[r] = _mm512_mul_ps(q_i, _mm512_set1_ps(LOG2E));
                    m2[r] = _mm512_mul_ps(peak[r], _mm512_set1_ps(LOG2E));
                    norm[r] = _mm512_setzero_ps();
                    acc[r] = _mm512_setzero_ps();
                }
                for (int64_t j = 0; j < n_k; ++j) {
                    __m512 k_j = _mm512_maskz_loadu_ps(mask, k_b + j * d + c);
                    __m512 v_j = _mm512_maskz_loadu_ps(mask, v_b + j * d + c);
                    for (int r = 0; r < FORWARD_ROWS; ++r) {
                        __m512 e = exp2_avx512(_mm512_fmsub_ps(q2[r], k_j, m2[r]));
                        norm[r] = _mm512_add_ps(norm[r], e);
                        acc[r] = _mm512_fmadd_ps(e, v_j, acc[r]);
                    }
                }
                for (int r = 0; r < FORWARD_ROWS; ++r) {
                    _mm512_mask_storeu_ps(out + at[r], mask, _mm512_div_ps(acc[r], norm[r]));
                    float norms[16], peaks[16];
                    _mm512_storeu_ps(norms, norm[r]);
                    _mm512_storeu_ps(peaks, peak[r]);
                    int64_t width = d - c < 16 ? d - c : 16;
                    for (int64_t lane = 0; lane < width; ++lane) {
                        lse[at[r] + lane] = peaks[lane] + logf(norms[lane]);
                    }
                }
            }
        }
        row = end;
    }
    return 0;
}

int vector_attention_backward(const float *q, const float *k, const float *v, const float *out,
                              const float *lse, const float *grad_out, float *grad_q, float *grad_k,
                              float *grad_v, int64_t n_q, int64_t n_k, int64_t d, int64_t row_begin,
                              int64_t row_end) {
    for (int64_t row = row_begin; row < row_end;) {
        int64_t batch = row / n_q;
        int64_t end = (batch + 1) * n_q < row_end ? (batch + 1) * n_q : row_end;
        int64_t batch_offset = batch * n_k * d;
        for (int64_t c = 0; c < d; c += 16) {
            __mmask16 mask = channel_mask(c, d);
            for (int64_t r0 = row; r0 < end; r0 += BACKWARD_ROWS) {
                __m512 q_r[BACKWARD_ROWS], q2[BACKWARD_ROWS], lse2[BACKWARD_ROWS], g[BACKWARD_ROWS];
                __m512 y[BACKWARD_ROWS], gq[BACKWARD_ROWS];
                int64_t at[BACKWARD_ROWS];
                for (int r = 0; r < BACKWARD_ROWS; ++r) {
                    int real = r0 + r < end;
                    int64_t i = real ? r0 + r : end - 1;
                    at[r] = i * d + c;
                    q_r[r] = _mm512_maskz_loadu_ps(mask, q + at[r]);
                    q2[r] = _mm512_mul_ps(q_r[r], _mm512_set1_ps(LOG2E));
                    lse2[r] = _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, lse + at[r]), _mm512_set1_ps(LOG2E));
                    /* A padding row gets zero output gradient, so it adds nothing to grad k, v. */
                    g[r] = real ? _mm512_maskz_loadu_ps(mask, grad_out + at[r]) : _mm512_setzero_ps();
                    y[r] = _mm512_maskz_loadu_ps(mask, out + at[r]);
                    gq[r] = _mm512_setzero_ps();
                }
                for (int64_t j = 0; j < n_k; ++j) {
                    const float *k_j = k + batch_offset + j * d + c;
                    const float *v_j = v + batch_offset + j * d + c;
                    __m512 kv = _mm512_maskz_loadu_ps(mask, k_j);
                    __m512 vv = _mm512_maskz_loadu_ps(mask, v_j);
                    __m512 gk = _mm512_setzero_ps();
                    __m512 gv = _mm512_setzero_ps();
                    for (int r = 0; r < BACKWARD_ROWS; ++r) {
                        __m512 p_g = _mm512_mul_ps(exp2_avx512(_mm512_fmsub_ps(q2[r], kv, lse2[r])), g[r]);
                        __m512 grad_logit = _mm512_mul_ps(p_g, _mm512_sub_ps(vv, y[r]));
                        gv = _mm512_add_ps(gv, p_g);
                        gq[r] = _mm512_fmadd_ps(grad_logit, kv, gq[r]);
                        gk = _mm512_fmadd_ps(grad_logit, q_r[r], gk);
                    }
                    float *gk_j = grad_k + batch_offset + j * d + c;
                    float *gv_j = grad_v + batch_offset + j * d + c;
                    _mm512_mask_storeu_ps(gk_j, mask, _mm512_add_ps(_mm512_maskz_loadu_ps(mask, gk_j), gk));
                    _mm512_mask_storeu_ps(gv_j, mask, _mm512_add_ps(_mm512_maskz_loadu_ps(mask, gv_j), gv));
                }
                for (int r = 0; r < BACKWARD_ROWS; ++r) {
                    if (r0 + r < end) _mm512_mask_storeu_ps(grad_q + at[r], mask, gq[r]);
                }
            }
        }
        row = end;
    }
    return 0;
}

#else /* portable C, auto-vectorised */

#define ROW_BLOCK 8

/* exp(x) for x <= 0 (all callers subtract the peak or the log-sum-exp): Cephes' expf
 * polynomial after range reduction x = n ln2 + r; relative error about 2e-7. Inputs below
 * -87.3 return ~1e-38 instead of underflowing, which no softmax sum can notice (its largest
 * term is 1). */
static inline float exp_nonpositive(float x) {
    x = x < -87.3f ? -87.3f : x;
    const float magic = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer in the low bits */
    float shifted = x * 1.44269504088896341f + magic;
    float n = shifted - magic;
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float y = 1.9875691500e-4f;
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * r * r + r + 1.0f;
    int32_t shifted_bits;
    memcpy(&shifted_bits, &shifted, sizeof shifted_bits);
    int32_t magic_bits;
    memcpy(&magic_bits, &magic, sizeof magic_bits);
    int32_t scale_bits = (shifted_bits - magic_bits + 127) << 23;
    float scale;
    memcpy(&scale, &scale_bits, sizeof scale);
    return y * scale;
}

/* Rows of one batch element in blocks of at most ROW_BLOCK that do not cross a batch boundary. */
static inline int64_t block_end(int64_t row, int64_t row_end, int64_t n_q) {
    int64_t end = row + ROW_BLOCK;
    int64_t batch_end = (row / n_q + 1) * n_q;
    if (end > batch_end) end = batch_end;
    if (end > row_end) end = row_end;
    return end;
}

/* out = sum_j p v, lse = peak + log sum_j exp(q k - peak). Returns 0, or 1 if out of memory. */
int vector_attention_forward(const float *q, const float *k, const float *v, const float *k_max,
                             const float *k_min, float *out, float *lse, int64_t n_q, int64_t n_k,
                             int64_t d, int64_t row_begin, int64_t row_end) {
    float *norm = malloc(sizeof(float) * ROW_BLOCK * d);
    float *acc = malloc(sizeof(float) * ROW_BLOCK * d);
    float *peak = malloc(sizeof(float) * ROW_BLOCK * d);
    if (!norm || !acc || !peak) {
        free(norm);
        free(acc);
        free(peak);
        return 1;
    }
    for (int64_t row = row_begin; row < row_end;) {
        int64_t end = block_end(row, row_end, n_q);
        int64_t rows = end - row;
        const float *k_b = k + (row / n_q) * n_k * d;
        const float *v_b = v + (row / n_q) * n_k * d;
        const float *k_max_b = k_max + (row / n_q) * d;
        const float *k_min_b = k_min + (row / n_q) * d;
        for (int64_t r = 0; r < rows; ++r) {
            for (int64_t c = 0; c < d; ++c) {
                float q_ic = q[(row + r) * d + c];
                peak[r * d + c] = q_ic * (q_ic >= 0.0f ? k_max_b[c] : k_min_b[c]);
            }
        }
        memset(norm, 0, sizeof(float) * rows * d);
        memset(acc, 0, sizeof(float) * rows * d);
        for (int64_t j = 0; j < n_k; ++j) {
            const float *restrict k_j = k_b + j * d;
            const float *restrict v_j = v_b + j * d;
            for (int64_t r = 0; r < rows; ++r) {
                const float *restrict q_i = q + (row + r) * d;
                const float *restrict m_i = peak + r * d;
                float *restrict norm_i = norm + r * d;
                float *restrict acc_i = acc + r * d;
                for (int64_t c = 0; c < d; ++c) {
                    float e = exp_nonpositive(q_i[c] * k_j[c] - m_i[c]);
                    norm_i[c] += e;
                    acc_i[c] += e * v_j[c];
                }
            }
        }
        for (int64_t r = 0; r < rows; ++r) {
            for (int64_t c = 0; c < d; ++c) {
                int64_t at = (row + r) * d + c;
                out[at] = acc[r * d + c] / norm[r * d + c];
                lse[at] = peak[r * d + c] + logf(norm[r * d + c]);
            }
        }
        row = end;
    }
    free(norm);
    free(acc);
    free(peak);
    return 0;
}

/* One query row against one key row: the body of the backward pass. */
static inline void backward_row(const float *restrict q_i, const float *restrict k_j,
                                const float *restrict v_j, const float *restrict y_i,
                                const float *restrict lse_i, const float *restrict g_i,
                                float *restrict grad_q_i, float *restrict grad_k_j,
                                float *restrict grad_v_j, int64_t d) {
    for (int64_t c = 0; c < d; ++c) {
        float p_g = exp_nonpositive(q_i[c] * k_j[c] - lse_i[c]) * g_i[c];
        float grad_logit = p_g * (v_j[c] - y_i[c]);
        grad_v_j[c] += p_g;
        grad_q_i[c] += grad_logit * k_j[c];
        grad_k_j[c] += grad_logit * q_i[c];
    }
}

/* Gradients for rows [row_begin, row_end): grad_q is written for those rows; grad_k and grad_v
 * are accumulated (+=) into the caller's per-thread buffers, which the caller sums. */
int vector_attention_backward(const float *q, const float *k, const float *v, const float *out,
                              const float *lse, const float *grad_out, float *grad_q, float *grad_k,
                              float *grad_v, int64_t n_q, int64_t n_k, int64_t d, int64_t row_begin,
                              int64_t row_end) {
    for (int64_t row = row_begin; row < row_end;) {
        int64_t end = block_end(row, row_end, n_q);
        int64_t rows = end - row;
        int64_t batch_offset = (row / n_q) * n_k * d;
        memset(grad_q + row * d, 0, sizeof(float) * rows * d);
        for (int64_t j = 0; j < n_k; ++j) {
            const float *k_j = k + batch_offset + j * d;
            const float *v_j = v + batch_offset + j * d;
            float *grad_k_j = grad_k + batch_offset + j * d;
            float *grad_v_j = grad_v + batch_offset + j * d;
            for (int64_t r = 0; r < rows; ++r) {
                int64_t at = (row + r) * d;
                backward_row(q + at, k_j, v_j, out + at, lse + at, grad_out + at, grad_q + at,
                             grad_k_j, grad_v_j, d);
            }
        }
        row = end;
    }
    return 0;
}

#endif
