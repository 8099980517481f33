/* uint8 T x H x W x 3 frames (rows of interleaved RGB, any frame and row stride) -> float32
 * 3 x T x H x W, out = (float)x * scale[c] + shift[c], in one pass over the pixels.
 *
 * Built with -ffp-contract=off: the product and the sum are rounded separately, as PyTorch's
 * elementwise mul_ then add_ round them, so the values are bit-identical to that path.
 */
#include <stdint.h>

static void normalize_row(const uint8_t *restrict src, float *restrict red, float *restrict green,
                          float *restrict blue, int64_t width, const float *restrict scale,
                          const float *restrict shift) {
    const float s0 = scale[0], s1 = scale[1], s2 = scale[2];
    const float b0 = shift[0], b1 = shift[1], b2 = shift[2];
    for (int64_t w = 0; w < width; ++w) {
        const float m0 = (float)src[3 * w] * s0;
        const float m1 = (float)src[3 * w + 1] * s1;
        const float m2 = (float)src[3 * w + 2] * s2;
        red[w] = m0 + b0;
        green[w] = m1 + b1;
        blue[w] = m2 + b2;
    }
}

/* out: contiguous 3 x frames x height x width. Strides of src are in bytes (= elements). */
void normalize_frames(const uint8_t *src, int64_t frames, int64_t height, int64_t width, int64_t frame_stride,
                     int64_t row_stride, float *out, const float *scale, const float *shift) {
    const int64_t plane = frames * height * width;
    for (int64_t t = 0; t < frames; ++t) {
        for (int64_t h = 0; h < height; ++h) {
            float *row = out + (t * height + h) * width;
            normalize_row(src + t * frame_stride + h * row_stride, row, row + plane, row + 2 * plane, width, scale,
                          shift);
        }
    }
}
