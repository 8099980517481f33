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
 *     the peak; no online rescaling is needed);
 *   - backward needs only p, which is recomputed from the saved lse;
 *   - d logit_ijc = p_ijc g_ic (v_jc - y_ic), so grad q and grad k come from the same pass as grad v.
 *
 * Plain C (no PyTorch headers, so it compiles in about a second), called through ctypes, which
 * releases the GIL: the Python side splits query rows across threads. Rows [row_begin, row_end)
 * index the flattened (batch, query) axis; all tensors are contiguous float32:
 * q, peak/lse, out, grad_out, grad_q: (B, Nq, d); k, v, grad_k, grad_v: (B, Nk, d).
 * The loops over channels are written to be auto-vectorised (-O3 -march=native).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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
int vector_attention_forward(const float *q, const float *k, const float *v, const float *peak,
                             float *out, float *lse, int64_t n_q, int64_t n_k, int64_t d,
                             int64_t row_begin, int64_t row_end) {
    float *norm = malloc(sizeof(float) * ROW_BLOCK * d);
    float *acc = malloc(sizeof(float) * ROW_BLOCK * d);
    if (!norm || !acc) {
        free(norm);
        free(acc);
        return 1;
    }
    for (int64_t row = row_begin; row < row_end;) {
        int64_t end = block_end(row, row_end, n_q);
        int64_t rows = end - row;
        const float *k_b = k + (row / n_q) * n_k * d;
        const float *v_b = v + (row / n_q) * n_k * d;
        memset(norm, 0, sizeof(float) * rows * d);
        memset(acc, 0, sizeof(float) * rows * d);
        for (int64_t j = 0; j < n_k; ++j) {
            const float *restrict k_j = k_b + j * d;
            const float *restrict v_j = v_b + j * d;
            for (int64_t r = 0; r < rows; ++r) {
                const float *restrict q_i = q + (row + r) * d;
                const float *restrict m_i = peak + (row + r) * d;
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
                lse[at] = peak[at] + logf(norm[r * d + c]);
            }
        }
        row = end;
    }
    free(norm);
    free(acc);
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
