/* The reference software KPU kernel: one K210_CONV layer in plain loops, step for step as kmodel-v3-and-kpu.md
 * section 5.8 writes it: convolution (5.2), batch norm (5.3), activation (5.4), pool (5.5). Built instead of the
 * fast kernel of kpu_soft.c with -DKPU_REFERENCE_KERNEL (config firmware.kpu_kernel: reference); both give the bytes
 * of the Python simulator (tests/test_firmware_runtime.py runs each test on each kernel). */
#ifdef KPU_REFERENCE_KERNEL

#include <string.h>

#include "kpu_arith.h"
#include "kpu_soft.h"

#define RANGE_36 ((int64_t)1 << (KPU_ACC_BITS - 1))

/* Scratch: one output channel's plane of accumulators, then batch-norm outputs (int64, input resolution), the
 * input maps (copied out first, since the output may overwrite them in KPU RAM) and the activated plane. */
size_t kpu_conv_scratch_bytes(const struct kpu_conv_args *a)
{
    const size_t plane = (size_t)a->in_h * a->in_w;
    return plane * sizeof(int64_t) + plane * a->in_c + plane;
}

/* Weight (i, ky, kx) of output channel o: [OC][IC][k][k] (or [C][k][k] depthwise, count 1), u8 or u16 LE. */
static int64_t weight(const struct kpu_conv_args *a, const struct kpu_conv_params *p, uint32_t o, uint32_t i,
                      uint32_t ky, uint32_t kx)
{
    const uint32_t count = a->depthwise ? 1 : a->in_c;
    const size_t index = (((size_t)o * count + i) * a->kernel + ky) * a->kernel + kx;
    return p->eight_bit ? p->weights[index] : p->weights[2 * index] | (int64_t)p->weights[2 * index + 1] << 8;
}

/* xv: input channel i at (y, x), or pad_value outside the image. */
static int64_t input(const uint8_t *x, const struct kpu_conv_args *a, uint32_t i, int64_t y, int64_t xx)
{
    if (y < 0 || xx < 0 || y >= a->in_h || xx >= a->in_w)
        return a->pad_value;
    return x[((size_t)i * a->in_h + (size_t)y) * a->in_w + (size_t)xx];
}

/* 5.2: acc = S_xw + ((arg_x * S_x) >> shr_x) + ((arg_w * S_w) >> shr_w) + arg_add * N at output channel o, (y, x). */
static int64_t convolve(const uint8_t *x, const struct kpu_conv_args *a, const struct kpu_conv_params *p, uint32_t o,
                        uint32_t y, uint32_t xx)
{
    const uint32_t count = a->depthwise ? 1 : a->in_c, pad = a->kernel / 2;
    int64_t s_xw = 0, s_x = 0, s_w = 0;
    uint32_t i, ky, kx;
    for (i = 0; i < count; i++)
        for (ky = 0; ky < a->kernel; ky++)
            for (kx = 0; kx < a->kernel; kx++) {
                const int64_t xv = input(x, a, a->depthwise ? o : i, (int64_t)y + ky - pad, (int64_t)xx + kx - pad);
                const int64_t wv = weight(a, p, o, i, ky, kx);
                s_xw += xv * wv;
                s_x += xv;
                s_w += wv;
            }
    return s_xw + kpu_floor_shift(a->arg_x * s_x, a->shr_x) + kpu_floor_shift(a->arg_w * s_w, a->shr_w) +
           a->arg_add * count;
}

/* 5.4: the segment is the last one whose x_start t passes (segment 0 when none); its line, rounded, clamped. */
static uint8_t activate(const uint8_t *table, int64_t t)
{
    uint32_t i, j = 0;
    uint64_t word;
    int64_t start, mul;
    for (i = 1; i < KPU_ACT_SEGMENTS; i++)
        if (kpu_segment_hit(t, kpu_sign_extend(KPU_ACT_GET(kmodel_u64(table + 8 * i), X_START),
                                               KPU_ACT_X_START_WIDTH)))
            j = i;
    word = kmodel_u64(table + 8 * j);
    start = kpu_sign_extend(KPU_ACT_GET(word, X_START), KPU_ACT_X_START_WIDTH);
    mul = kpu_sign_extend(KPU_ACT_GET(word, Y_MUL), KPU_ACT_Y_MUL_WIDTH);
    return kpu_clamp_u8(kpu_round_shift((t - start) * mul, (unsigned)KPU_ACT_GET(word, SHIFT_NUMBER)) +
                        table[KPU_ACT_BIAS_OFFSET + j]);
}

/* z at (y, x) of an h x w plane. */
static uint32_t at(const uint8_t *z, uint32_t w, uint32_t y, uint32_t x)
{
    return z[(size_t)y * w + x];
}

/* 5.5: output element (oy, ox) of the activated plane z (h x w). */
static uint8_t pool(const uint8_t *z, uint32_t h, uint32_t w, uint32_t type, uint32_t oy, uint32_t ox)
{
    const uint32_t s = kpu_pool_stride(type);
    uint32_t dy, dx, best = 0, sum = 0, count = 0;
    switch (type) {
    case KPU_POOL_BYPASS:
        return (uint8_t)at(z, w, oy, ox);
    case KPU_POOL_LEFT_TOP_2_S2:
    case KPU_POOL_LEFT_TOP_4_S4:
        return (uint8_t)at(z, w, s * oy, s * ox);
    case KPU_POOL_RIGHT_TOP_2_S2:
        return 2 * ox + 1 < w ? (uint8_t)at(z, w, 2 * oy, 2 * ox + 1) : 0;
    case KPU_POOL_MAX_2_S1: /* window rows y, y + 1 and columns x, x + 1; outside counts as 0 */
        for (dy = 0; dy < 2; dy++)
            for (dx = 0; dx < 2; dx++)
                if (oy + dy < h && ox + dx < w && at(z, w, oy + dy, ox + dx) > best)
                    best = at(z, w, oy + dy, ox + dx);
        return (uint8_t)best;
    case KPU_POOL_MEAN_2_S1:
        for (dy = 0; dy < 2; dy++)
            for (dx = 0; dx < 2; dx++) {
#ifdef KPU_ROUNDING_V01 /* nncase v0.1: the taps inside the image only */
                if (oy + dy >= h || ox + dx >= w)
                    continue;
                sum += at(z, w, oy + dy, ox + dx);
#else /* project reference: outside coordinates clamped to the last row and column */
                sum += at(z, w, oy + dy < h ? oy + dy : h - 1, ox + dx < w ? ox + dx : w - 1);
#endif
                count++;
            }
        return (uint8_t)(sum / count);
    default: /* max or mean over the s x s window */
        for (dy = 0; dy < s; dy++)
            for (dx = 0; dx < s; dx++) {
                const uint32_t v = at(z, w, s * oy + dy, s * ox + dx);
                best = v > best ? v : best;
                sum += v;
            }
        return (uint8_t)(type == KPU_POOL_MAX_2_S2 || type == KPU_POOL_MAX_4_S4 ? best : sum / (s * s));
    }
}

enum kpu_status kpu_conv(uint8_t *ram, const struct kpu_conv_args *a, const struct kpu_conv_params *p,
                         uint8_t *main_out, void *scratch)
{
    const size_t plane = (size_t)a->in_h * a->in_w;
    const struct kpu_layout out_layout = kpu_layout_for_width(a->out_w);
    int64_t *t = scratch;
    uint8_t *x = (uint8_t *)(t + plane), *z = x + plane * a->in_c;
    uint32_t i, o, y, xx;
    for (i = 1; i < KPU_ACT_SEGMENTS; i++)
        if (kpu_sign_extend(KPU_ACT_GET(kmodel_u64(p->act + 8 * i), X_START), KPU_ACT_X_START_WIDTH) <
            kpu_sign_extend(KPU_ACT_GET(kmodel_u64(p->act + 8 * (i - 1)), X_START), KPU_ACT_X_START_WIDTH))
            return KPU_BAD_ACTIVATION;
    kpu_download(ram, a->src_line, x, a->in_c, a->in_h, a->in_w);
    for (o = 0; o < a->out_c; o++) {
        const uint64_t bn = kmodel_u64(p->bn + KPU_BN_WORD_BYTES * (size_t)o);
        const int64_t bn_mul = kpu_sign_extend(KPU_BN_GET(bn, NORM_MUL), KPU_BN_NORM_MUL_WIDTH);
        const int64_t bn_add = kpu_sign_extend(KPU_BN_GET(bn, NORM_ADD), KPU_BN_NORM_ADD_WIDTH);
        const unsigned bn_shift = (unsigned)KPU_BN_GET(bn, NORM_SHIFT);
        size_t n;
        for (y = 0; y < a->in_h; y++)
            for (xx = 0; xx < a->in_w; xx++)
                t[(size_t)y * a->in_w + xx] = convolve(x, a, p, o, y, xx);
        for (n = 0; n < plane; n++) /* the accumulators of the whole channel are checked before its batch norm */
            if (t[n] < -RANGE_36 || t[n] >= RANGE_36)
                return KPU_ACC_OUT_OF_RANGE;
        for (n = 0; n < plane; n++)
            t[n] = kpu_floor_shift(t[n] * bn_mul, bn_shift) + bn_add; /* 5.3 */
        for (n = 0; n < plane; n++)
            if (t[n] < -RANGE_36 || t[n] >= RANGE_36)
                return KPU_BN_OUT_OF_RANGE;
        for (n = 0; n < plane; n++)
            z[n] = activate(p->act, t[n]);
        for (y = 0; y < a->out_h; y++)
            for (xx = 0; xx < a->out_w; xx++) {
                const uint8_t v = pool(z, a->in_h, a->in_w, a->pool_type, y, xx);
                ram[(size_t)a->dst_line * KPU_LINE_BYTES + kpu_offset(&out_layout, a->out_h, o, y, xx)] = v;
                if (main_out)
                    main_out[((size_t)o * a->out_h + y) * a->out_w + xx] = v;
            }
    }
    return KPU_OK;
}

#else
typedef int kpu_reference_kernel_not_built; /* ISO C wants a declaration in every translation unit */
#endif
