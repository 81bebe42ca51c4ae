/* Software KPU: the KPU RAM layout, the register decoder and (unless -DKPU_REFERENCE_KERNEL selects the plain loops of
 * kpu_ref.c) the fast kernel: one K210_CONV layer, computed exactly as kmodel-v3-and-kpu.md section 5.8 describes,
 * with dot products, vectorisable planes and pooling before the activation where that gives the same bytes. */
#include "kpu_soft.h"

#include <string.h>

#include "kpu_arith.h"

struct kpu_layout kpu_layout_for_width(uint32_t width)
{
    struct kpu_layout l;
    if (width <= KPU_LINE_4_CHANNELS_MAX_WIDTH) {
        l.groups = 4;
        l.row_lines = 1;
    } else if (width <= KPU_LINE_2_CHANNELS_MAX_WIDTH) {
        l.groups = 2;
        l.row_lines = 1;
    } else {
        l.groups = 1;
        l.row_lines = (width + KPU_LINE_BYTES - 1) / KPU_LINE_BYTES;
    }
    l.pitch = KPU_LINE_BYTES / l.groups;
    return l;
}

uint32_t kpu_map_bytes(uint32_t c, uint32_t h, uint32_t w)
{
    struct kpu_layout l = kpu_layout_for_width(w);
    uint32_t g = c < l.groups ? c : l.groups;
    return l.row_lines * h * ((c + g - 1) / g) * KPU_LINE_BYTES;
}

void kpu_upload(uint8_t *ram, uint32_t line, const uint8_t *chw, uint32_t c, uint32_t h, uint32_t w)
{
    struct kpu_layout l = kpu_layout_for_width(w);
    uint8_t *base = ram + (size_t)line * KPU_LINE_BYTES;
    uint32_t ci, y;
    for (ci = 0; ci < c; ci++)
        for (y = 0; y < h; y++)
            memcpy(base + kpu_offset(&l, h, ci, y, 0), chw + ((size_t)ci * h + y) * w, w);
}

void kpu_download(const uint8_t *ram, uint32_t line, uint8_t *chw, uint32_t c, uint32_t h, uint32_t w)
{
    struct kpu_layout l = kpu_layout_for_width(w);
    const uint8_t *base = ram + (size_t)line * KPU_LINE_BYTES;
    uint32_t ci, y;
    for (ci = 0; ci < c; ci++)
        for (y = 0; y < h; y++)
            memcpy(chw + ((size_t)ci * h + y) * w, base + kpu_offset(&l, h, ci, y, 0), w);
}

enum kpu_status kpu_decode_conv(const uint8_t *regs, struct kpu_conv_args *a)
{
    uint64_t w[KPU_REG_WORDS];
    uint32_t i, kernel_type, stride;
    for (i = 0; i < KPU_REG_WORDS; i++)
        w[i] = kmodel_u64(regs + 8 * i);
    a->depthwise = (uint32_t)KPU_REG_GET(w, DEPTH_WISE_LAYER);
    a->src_line = (uint32_t)KPU_REG_GET(w, IMAGE_SRC_ADDR);
    a->dst_line = (uint32_t)KPU_REG_GET(w, IMAGE_DST_ADDR);
    a->in_c = (uint32_t)KPU_REG_GET(w, I_CH_NUM) + 1;
    a->out_c = (uint32_t)KPU_REG_GET(w, O_CH_NUM) + 1;
    a->in_w = (uint32_t)KPU_REG_GET(w, I_ROW_WID) + 1;
    a->in_h = (uint32_t)KPU_REG_GET(w, I_COL_HIGH) + 1;
    a->out_w = (uint32_t)KPU_REG_GET(w, O_ROW_WID) + 1;
    a->out_h = (uint32_t)KPU_REG_GET(w, O_COL_HIGH) + 1;
    kernel_type = (uint32_t)KPU_REG_GET(w, KERNEL_TYPE);
    a->pool_type = (uint32_t)KPU_REG_GET(w, POOL_TYPE);
    a->pad_value = (uint32_t)KPU_REG_GET(w, PAD_VALUE);
    a->shr_w = (uint32_t)KPU_REG_GET(w, SHR_W);
    a->shr_x = (uint32_t)KPU_REG_GET(w, SHR_X);
    a->arg_w = kpu_sign_extend(KPU_REG_GET(w, ARG_W), KPU_REG_ARG_W_WIDTH);
    a->arg_x = kpu_sign_extend(KPU_REG_GET(w, ARG_X), KPU_REG_ARG_X_WIDTH);
    a->arg_add = kpu_sign_extend(KPU_REG_GET(w, ARG_ADD), KPU_REG_ARG_ADD_WIDTH);
    if (kernel_type > KPU_KERNEL_TYPE_3X3)
        return KPU_BAD_KERNEL;
    a->kernel = kernel_type == KPU_KERNEL_TYPE_3X3 ? 3 : 1;
    if (a->pool_type >= KPU_POOL_TYPE_COUNT)
        return KPU_BAD_POOL;
    stride = kpu_pool_stride(a->pool_type);
    if (a->out_h != a->in_h / stride || a->out_w != a->in_w / stride || (a->depthwise && a->out_c != a->in_c))
        return KPU_BAD_SHAPE;
    if ((uint64_t)a->src_line * KPU_LINE_BYTES + kpu_map_bytes(a->in_c, a->in_h, a->in_w) > KPU_RAM_BYTES ||
        (uint64_t)a->dst_line * KPU_LINE_BYTES + kpu_map_bytes(a->out_c, a->out_h, a->out_w) > KPU_RAM_BYTES)
        return KPU_MAP_OUTSIDE_RAM;
    return KPU_OK;
}

#ifndef KPU_REFERENCE_KERNEL

#define KPU_RANGE_36 ((int64_t)1 << (KPU_ACC_BITS - 1))

static size_t align8(size_t n)
{
    return (n + 7u) & ~(size_t)7u;
}

/* With enough input channels a convolution runs as dot products: each output position's k x k x in_c window is
 * copied out of a position-major (HWC) copy of the padded input into one row (im2col, one output row at a time),
 * and multiplied with each output channel's weights reordered the same way. The copy holds x - 128 as int8, so that
 * a row is a dot product of unsigned and signed bytes (one instruction per 64 products where the CPU has one, e.g.
 * VNNI); the batch norm adds the 128 * sum(w) back, exactly. A group of output channels shares each im2col row;
 * their accumulator planes and weights are bounded by the two budgets below (items). Few channels (the first layer's
 * 3) and depthwise layers run over whole planes instead. */
#define KPU_DOT_MIN_CHANNELS 8u
#define KPU_DOT_ROW_ALIGN 32u /* rows padded with zeros to a multiple of this: no scalar loop tails */
#define KPU_GROUP_ACC_ITEMS (1u << 18)
#define KPU_GROUP_WEIGHT_ITEMS (1u << 18)

static int uses_dot_products(const struct kpu_conv_args *a)
{
    return !a->depthwise && a->in_c >= KPU_DOT_MIN_CHANNELS;
}

/* Sizes (in items) every scratch area is carved from. */
struct conv_sizes {
    size_t padded; /* padded plane */
    size_t plane;  /* input-resolution plane */
    size_t taps;   /* weights of one output channel: k * k * (1 or in_c) */
    size_t row;    /* stride of weight and im2col rows: taps, for dot products rounded up to whole vectors */
    size_t group;  /* output channels computed together */
    int dots;
};

static struct conv_sizes conv_sizes(const struct kpu_conv_args *a)
{
    struct conv_sizes z;
    size_t by_acc, by_weights;
    z.padded = (size_t)(a->in_h + a->kernel - 1) * (a->in_w + a->kernel - 1);
    z.plane = (size_t)a->in_h * a->in_w;
    z.taps = (size_t)a->kernel * a->kernel * (a->depthwise ? 1 : a->in_c);
    z.dots = uses_dot_products(a);
    z.row = z.dots ? (z.taps + KPU_DOT_ROW_ALIGN - 1) / KPU_DOT_ROW_ALIGN * KPU_DOT_ROW_ALIGN : z.taps;
    by_acc = KPU_GROUP_ACC_ITEMS / z.plane;
    by_weights = KPU_GROUP_WEIGHT_ITEMS / z.row;
    z.group = z.dots ? (by_acc < by_weights ? by_acc : by_weights) : 1;
    z.group = z.group < 1 ? 1 : (z.group > a->out_c ? a->out_c : z.group);
    return z;
}

/* Scratch: padded input planes (u8); for dot products their HWC copy and one im2col row (i8, x - 128); per-position
 * tap-sum plane over padded size (i64), Sx and BN-output planes (i64); a group's accumulator planes, low and high
 * (i32), its weights, low and high bytes (u8), and weight sums (i64); the activated plane (u8). */
size_t kpu_conv_scratch_bytes(const struct kpu_conv_args *a)
{
    const struct conv_sizes z = conv_sizes(a);
    const size_t hwc = z.dots ? align8(z.padded * a->in_c) + align8((size_t)a->in_w * z.row) : 0;
    return align8(z.padded * a->in_c) + hwc + z.padded * 8 + 2 * z.plane * 8 + 2 * align8(z.group * z.plane * 4) +
           2 * align8(z.group * z.row) + z.group * 8 + align8(z.plane);
}

struct conv_scratch {
    struct conv_sizes size;
    uint8_t *padded;
    int8_t *hwc;  /* [padded position][channel]: x - 128 */
    int8_t *cols; /* im2col row: [x][ky][kx][channel] */
    int64_t *tap_plane;
    int64_t *sx;
    int32_t *acc_lo; /* [group][plane] */
    int32_t *acc_hi;
    uint8_t *w_lo; /* [group][row]: low bytes of the group's weights ([ky][kx][channel] for dot products) */
    uint8_t *w_hi; /* high bytes (16-bit mode) */
    int64_t *sum_w; /* [group] */
    int64_t *t;
    uint8_t *z;
};

static struct conv_scratch carve(const struct kpu_conv_args *a, void *scratch)
{
    struct conv_scratch s;
    const struct conv_sizes z = conv_sizes(a);
    uint8_t *cur = (uint8_t *)scratch;
    s.size = z;
    s.padded = cur;
    cur += align8(z.padded * a->in_c);
    s.hwc = (int8_t *)(void *)cur;
    cur += z.dots ? align8(z.padded * a->in_c) : 0;
    s.cols = (int8_t *)(void *)cur;
    cur += z.dots ? align8((size_t)a->in_w * z.row) : 0;
    s.tap_plane = (int64_t *)(void *)cur;
    cur += z.padded * 8;
    s.sx = (int64_t *)(void *)cur;
    cur += z.plane * 8;
    s.t = (int64_t *)(void *)cur;
    cur += z.plane * 8;
    s.acc_lo = (int32_t *)(void *)cur;
    cur += align8(z.group * z.plane * 4);
    s.acc_hi = (int32_t *)(void *)cur;
    cur += align8(z.group * z.plane * 4);
    s.w_lo = cur;
    cur += align8(z.group * z.row);
    s.w_hi = cur;
    cur += align8(z.group * z.row);
    s.sum_w = (int64_t *)(void *)cur;
    cur += z.group * 8;
    s.z = cur;
    return s;
}

/* Read every input channel from KPU RAM into a plane padded by p pixels of pad_value. */
static void gather_padded(const uint8_t *ram, const struct kpu_conv_args *a, uint8_t *padded)
{
    struct kpu_layout l = kpu_layout_for_width(a->in_w);
    const uint8_t *base = ram + (size_t)a->src_line * KPU_LINE_BYTES;
    uint32_t p = a->kernel == 3 ? 1 : 0, pw = a->in_w + 2 * p, ph = a->in_h + 2 * p;
    uint32_t c, y;
    memset(padded, (int)a->pad_value, (size_t)pw * ph * a->in_c);
    for (c = 0; c < a->in_c; c++)
        for (y = 0; y < a->in_h; y++)
            memcpy(padded + ((size_t)c * ph + y + p) * pw + p, base + kpu_offset(&l, a->in_h, c, y, 0), a->in_w);
}

/* out[y][x] = sum over the k x k window of plane (padded size), for every output position; k is 1 or 3 (checked
 * when the registers are decoded), written out so that the loop over x vectorises. */
static void window_sum(const int64_t *plane, const struct kpu_conv_args *a, int64_t *out)
{
    const size_t w = a->in_w, pw = w + a->kernel - 1;
    size_t y, x;
    for (y = 0; y < a->in_h; y++) {
        const int64_t *restrict r0 = plane + y * pw, *restrict r1 = r0 + pw, *restrict r2 = r1 + pw;
        int64_t *restrict o = out + y * w;
        if (a->kernel == 1) {
            memcpy(o, r0, w * sizeof(int64_t));
            continue;
        }
        for (x = 0; x < w; x++)
            o[x] = r0[x] + r0[x + 1] + r0[x + 2] + r1[x] + r1[x + 1] + r1[x + 2] + r2[x] + r2[x + 1] + r2[x + 2];
    }
}

/* Sx for a set of channels [c0, c0 + n): tap sums of the padded inputs, padding included. */
static void input_sums(const struct kpu_conv_args *a, const struct conv_scratch *s, uint32_t c0, uint32_t n)
{
    uint32_t p = a->kernel == 3 ? 1 : 0;
    size_t padded = (size_t)(a->in_h + 2 * p) * (a->in_w + 2 * p), i;
    uint32_t c;
    memset(s->tap_plane, 0, padded * sizeof(int64_t));
    for (c = c0; c < c0 + n; c++) {
        const uint8_t *src = s->padded + c * padded;
        for (i = 0; i < padded; i++)
            s->tap_plane[i] += src[i];
    }
    window_sum(s->tap_plane, a, s->sx);
}

/* acc = sum over channels and taps of w * input plane (padded, from `planes`), one output row at a time so that
 * the row of accumulators stays in cache; w is [count][k][k]; zero weights are skipped.
 * int32 is exact here: at most 1024 channels x 9 taps x 255 x 255 < 2^31. */
static void mac_rows(int32_t *restrict acc, const uint8_t *restrict w, const uint8_t *restrict planes,
                     uint32_t count, const struct kpu_conv_args *a)
{
    const size_t k = a->kernel, width = a->in_w, pw = width + k - 1, plane = pw * (a->in_h + k - 1);
    size_t y, x, i, ky, kx;
    for (y = 0; y < a->in_h; y++) {
        int32_t *restrict out = acc + y * width;
        memset(out, 0, width * sizeof(int32_t));
        for (i = 0; i < count; i++)
            for (ky = 0; ky < k; ky++)
                for (kx = 0; kx < k; kx++) {
                    const int32_t wv = w[(i * k + ky) * k + kx];
                    const uint8_t *restrict row = planes + i * plane + (y + ky) * pw + kx;
                    if (wv == 0)
                        continue;
                    for (x = 0; x < width; x++)
                        out[x] += wv * row[x];
                }
    }
}

static void transpose_to_positions(const struct kpu_conv_args *a, const struct conv_scratch *s)
{
    const size_t n = s->size.padded, channels = a->in_c;
    size_t c, i;
    for (c = 0; c < channels; c++)
        for (i = 0; i < n; i++)
            s->hwc[i * channels + c] = (int8_t)(s->padded[c * n + i] - 128);
}

/* The im2col row of output row y: for each x, the k kernel rows of k * in_c values from the HWC copy, then zeros up
 * to the row stride. A 1x1 layer whose channels fill whole rows needs no copy: its HWC row is the im2col row. */
static const int8_t *im2col_row(const struct kpu_conv_args *a, const struct conv_scratch *s, size_t y)
{
    const size_t k = a->kernel, channels = a->in_c, pw = a->in_w + k - 1, run = k * channels, row = s->size.row;
    size_t x, ky;
    if (k == 1 && row == channels)
        return s->hwc + y * pw * channels;
    for (x = 0; x < a->in_w; x++) {
        for (ky = 0; ky < k; ky++)
            memcpy(s->cols + x * row + ky * run, s->hwc + ((y + ky) * pw + x) * channels, run);
        memset(s->cols + x * row + k * run, 0, row - k * run);
    }
    return s->cols;
}

/* acc[g][y][x] = dot product of weight row g (u8) with the im2col row of (y, x) (i8), for the n channels of a group,
 * four channels per pass over the row. int32 is exact: at most 1024 x 9 products of magnitude <= 255 x 128. */
static void dot_row(int32_t *restrict acc, const uint8_t *restrict w, const int8_t *restrict cols, size_t n,
                    size_t row, size_t plane, size_t width, size_t y)
{
    size_t x, g, j;
    for (x = 0; x < width; x++) {
        const int8_t *restrict col = cols + x * row;
        int32_t *restrict out = acc + y * width + x;
        for (g = 0; g + 4 <= n; g += 4) {
            const uint8_t *restrict w0 = w + g * row, *restrict w1 = w0 + row, *restrict w2 = w1 + row,
                          *restrict w3 = w2 + row;
            int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            for (j = 0; j < row; j++) {
                const int32_t c = col[j];
                s0 += w0[j] * c;
                s1 += w1[j] * c;
                s2 += w2[j] * c;
                s3 += w3[j] * c;
            }
            out[g * plane] = s0;
            out[(g + 1) * plane] = s1;
            out[(g + 2) * plane] = s2;
            out[(g + 3) * plane] = s3;
        }
        for (; g < n; g++) {
            const uint8_t *restrict wg = w + g * row;
            int32_t sum = 0;
            for (j = 0; j < row; j++)
                sum += (int32_t)wg[j] * col[j];
            out[g * plane] = sum;
        }
    }
}

/* Weights of output channel o ([count][k][k]) split into low bytes (lo) and high bytes (hi, 0 in 8-bit mode), kept
 * in that order or, `tap_major`, reordered to [k][k][count] like an im2col row; returns their sum. */
static int64_t split_weights(const struct kpu_conv_args *a, const struct kpu_conv_params *p, uint32_t o,
                             int tap_major, uint8_t *restrict lo, uint8_t *restrict hi)
{
    const size_t taps = (size_t)a->kernel * a->kernel, count = a->depthwise ? 1 : a->in_c, n = taps * count;
    const size_t bytes = p->eight_bit ? 1 : 2, step_c = tap_major ? 1 : taps, step_t = tap_major ? count : 1;
    const uint8_t *restrict src = p->weights + bytes * o * n;
    int64_t sum_w = 0;
    size_t c, t;
    for (t = 0; t < taps; t++)
        for (c = 0; c < count; c++) {
            const size_t from = bytes * (c * taps + t), to = t * step_t + c * step_c;
            lo[to] = src[from];
            hi[to] = bytes == 2 ? src[from + 1] : 0;
            sum_w += src[from] + 256 * hi[to];
        }
    return sum_w;
}

/* The accumulator planes (low and high weight bytes; high only in 16-bit mode) and weight sums of output channels
 * [o, o + n): dot products over im2col rows, or (n == 1) planes of taps. */
static void multiply_accumulate(const struct kpu_conv_args *a, const struct kpu_conv_params *p,
                                const struct conv_scratch *s, uint32_t o, uint32_t n)
{
    const struct conv_sizes *z = &s->size;
    size_t g, y;
    memset(s->w_lo, 0, n * z->row); /* the padding of each row */
    memset(s->w_hi, 0, n * z->row);
    for (g = 0; g < n; g++)
        s->sum_w[g] = split_weights(a, p, o + (uint32_t)g, z->dots, s->w_lo + g * z->row, s->w_hi + g * z->row);
    if (!z->dots) {
        const uint8_t *planes = s->padded + (a->depthwise ? o * z->padded : 0);
        const uint32_t count = a->depthwise ? 1 : a->in_c;
        mac_rows(s->acc_lo, s->w_lo, planes, count, a);
        if (!p->eight_bit)
            mac_rows(s->acc_hi, s->w_hi, planes, count, a);
        return;
    }
    for (y = 0; y < a->in_h; y++) {
        const int8_t *cols = im2col_row(a, s, y);
        dot_row(s->acc_lo, s->w_lo, cols, n, z->row, z->plane, a->in_w, y);
        if (!p->eight_bit)
            dot_row(s->acc_hi, s->w_hi, cols, n, z->row, z->plane, a->in_w, y);
    }
}

/* The segments of an activation table that can be selected: of segments with equal starts only the last one (t
 * passes all of them or none, and the last one passed wins), and none that even the largest t passes (the batch
 * norm output is checked to lie below 2^35 before it is activated); segment 0 applies when t passes no other. */
struct activation {
    int64_t start[KPU_ACT_SEGMENTS];
    int64_t mul[KPU_ACT_SEGMENTS];
    int64_t shift[KPU_ACT_SEGMENTS];
    int64_t bias[KPU_ACT_SEGMENTS];
    int count;
    int monotone; /* non-decreasing in t: max-pooling t before activating gives the same bytes */
};

static enum kpu_status decode_activation(const uint8_t *table, struct activation *act)
{
    int64_t start[KPU_ACT_SEGMENTS];
    uint32_t i;
    for (i = 0; i < KPU_ACT_SEGMENTS; i++) {
        start[i] = kpu_sign_extend(KPU_ACT_GET(kmodel_u64(table + 8 * i), X_START), KPU_ACT_X_START_WIDTH);
        if (i > 0 && start[i] < start[i - 1])
            return KPU_BAD_ACTIVATION;
    }
    act->count = 0;
    for (i = 0; i < KPU_ACT_SEGMENTS; i++) {
        const uint64_t w = kmodel_u64(table + 8 * i);
        if (i > 0 && ((i + 1 < KPU_ACT_SEGMENTS && start[i] == start[i + 1]) ||
                      !kpu_segment_hit(KPU_RANGE_36 - 1, start[i])))
            continue;
        act->start[act->count] = start[i];
        act->shift[act->count] = (int64_t)KPU_ACT_GET(w, SHIFT_NUMBER);
        act->mul[act->count] = kpu_sign_extend(KPU_ACT_GET(w, Y_MUL), KPU_ACT_Y_MUL_WIDTH);
        act->bias[act->count] = table[KPU_ACT_BIAS_OFFSET + i];
        act->count++;
    }
    return KPU_OK;
}

/* z[i] = activation of t[i]. The segment of t is the last one whose start t passes (the starts are non-decreasing,
 * so the passed segments form a prefix; segment 0 always applies). Per block of values, walking the segments in
 * order and keeping the parameters of each one passed selects it without branches or table lookups: every loop over
 * the block vectorises. */
#define KPU_ACT_BLOCK 32u

static void activate_plane(const struct activation *act, const int64_t *restrict t, uint8_t *restrict z, size_t n)
{
    int64_t start[KPU_ACT_BLOCK], mul[KPU_ACT_BLOCK], shift[KPU_ACT_BLOCK], bias[KPU_ACT_BLOCK];
    size_t b, i, m;
    int k;
    for (b = 0; b < n; b += m) {
        const int64_t *restrict tb = t + b;
        m = n - b < KPU_ACT_BLOCK ? n - b : KPU_ACT_BLOCK;
        for (i = 0; i < m; i++) {
            start[i] = act->start[0];
            mul[i] = act->mul[0];
            shift[i] = act->shift[0];
            bias[i] = act->bias[0];
        }
        for (k = 1; k < act->count; k++) {
            const int64_t s = act->start[k], y = act->mul[k], h = act->shift[k], c = act->bias[k];
            for (i = 0; i < m; i++) {
                const int hit = kpu_segment_hit(tb[i], s);
                start[i] = hit ? s : start[i];
                mul[i] = hit ? y : mul[i];
                shift[i] = hit ? h : shift[i];
                bias[i] = hit ? c : bias[i];
            }
        }
        for (i = 0; i < m; i++)
            z[b + i] = kpu_clamp_u8(kpu_round_shift((tb[i] - start[i]) * mul[i], (unsigned)shift[i]) + bias[i]);
    }
}

/* The activation of one value (the plane version does the same per element). */
static uint8_t activate_one(const struct activation *act, int64_t t)
{
    int k, j = 0;
    for (k = 1; k < act->count; k++)
        j += kpu_segment_hit(t, act->start[k]);
    return kpu_clamp_u8(kpu_round_shift((t - act->start[j]) * act->mul[j], (unsigned)act->shift[j]) + act->bias[j]);
}

/* Non-decreasing when every slope is >= 0 (rounding and clamping keep order inside a segment) and the value does
 * not drop where t crosses into the next segment. */
static int activation_is_monotone(const struct activation *act)
{
    int k;
    for (k = 0; k < act->count; k++)
        if (act->mul[k] < 0)
            return 0;
    for (k = 1; k < act->count; k++) {
#ifdef KPU_ROUNDING_V01
        int64_t first = act->start[k];
#else
        int64_t first = act->start[k] + 1;
#endif
        if (activate_one(act, first - 1) > activate_one(act, first))
            return 0;
    }
    return 1;
}

/* Offset terms and batch norm of channel o (member g of the group in the accumulators): acc -> t (36-bit checked), at input resolution; vectorisable. */
static enum kpu_status batch_norm_channel(const struct kpu_conv_args *a, const struct kpu_conv_params *p,
                                          const struct conv_scratch *s, uint32_t o, uint32_t g)
{
    uint64_t bn = kmodel_u64(p->bn + KPU_BN_WORD_BYTES * (size_t)o);
    const int64_t bn_mul = kpu_sign_extend(KPU_BN_GET(bn, NORM_MUL), KPU_BN_NORM_MUL_WIDTH);
    const int64_t bn_add = kpu_sign_extend(KPU_BN_GET(bn, NORM_ADD), KPU_BN_NORM_ADD_WIDTH);
    const uint32_t bn_shift = (uint32_t)KPU_BN_GET(bn, NORM_SHIFT), shr_x = a->shr_x;
    const int64_t arg_x = a->arg_x, hi_scale = p->eight_bit ? 0 : 256;
    const int64_t unbias = s->size.dots ? 128 * s->sum_w[g] : 0; /* the dot products took x - 128 */
    const int64_t constant =
        kpu_floor_shift(a->arg_w * s->sum_w[g], a->shr_w) + a->arg_add * (a->depthwise ? 1 : a->in_c) + unbias;
    const size_t n = s->size.plane;
    const int32_t *restrict lo = s->acc_lo + g * n, *restrict hi = s->acc_hi + g * n;
    const int64_t *restrict sx = s->sx;
    int64_t *restrict t = s->t;
    int64_t acc_min = 0, acc_max = 0, t_min = 0, t_max = 0;
    size_t i;
    for (i = 0; i < n; i++) {
        int64_t acc = (int64_t)lo[i] + hi_scale * (int64_t)(hi_scale ? hi[i] : 0) +
                      kpu_floor_shift(arg_x * sx[i], shr_x) + constant;
        int64_t v = kpu_floor_shift(acc * bn_mul, bn_shift) + bn_add;
        acc_min = acc < acc_min ? acc : acc_min;
        acc_max = acc > acc_max ? acc : acc_max;
        t_min = v < t_min ? v : t_min;
        t_max = v > t_max ? v : t_max;
        t[i] = v;
    }
    if (acc_min < -KPU_RANGE_36 || acc_max >= KPU_RANGE_36)
        return KPU_ACC_OUT_OF_RANGE;
    if (t_min < -KPU_RANGE_36 || t_max >= KPU_RANGE_36)
        return KPU_BN_OUT_OF_RANGE;
    return KPU_OK;
}

static uint8_t z_at(const uint8_t *z, uint32_t w, uint32_t y, uint32_t x)
{
    return z[(size_t)y * w + x];
}

/* The 2x2 stride-1 window at (y, x) with TF SAME padding (0 before, 1 after). */
static uint32_t pool_s1(const uint8_t *z, uint32_t h, uint32_t w, uint32_t y, uint32_t x, int mean)
{
    uint32_t dy, dx, best = 0, sum = 0, count = 0;
    for (dy = 0; dy < 2; dy++)
        for (dx = 0; dx < 2; dx++) {
            uint32_t yy = y + dy, xx = x + dx, v;
            int inside = yy < h && xx < w;
            if (mean) {
#ifdef KPU_ROUNDING_V01
                if (!inside)
                    continue;
#else
                yy = yy < h ? yy : h - 1;
                xx = xx < w ? xx : w - 1;
#endif
                v = z_at(z, w, yy, xx);
                sum += v;
                count++;
            } else {
                v = inside ? z_at(z, w, yy, xx) : 0;
                best = v > best ? v : best;
            }
        }
    return mean ? sum / count : best;
}

/* Pooled output element (oy, ox) of channel plane z (h x w) for pool_type. */
static uint8_t pool_at(const uint8_t *z, uint32_t h, uint32_t w, uint32_t type, uint32_t oy, uint32_t ox)
{
    uint32_t s, dy, dx, best = 0, sum = 0;
    switch (type) {
    case KPU_POOL_BYPASS:
        return z_at(z, w, oy, ox);
    case KPU_POOL_LEFT_TOP_2_S2:
        return z_at(z, w, 2 * oy, 2 * ox);
    case KPU_POOL_RIGHT_TOP_2_S2:
        return 2 * ox + 1 < w ? z_at(z, w, 2 * oy, 2 * ox + 1) : 0;
    case KPU_POOL_LEFT_TOP_4_S4:
        return z_at(z, w, 4 * oy, 4 * ox);
    case KPU_POOL_MEAN_2_S1:
        return (uint8_t)pool_s1(z, h, w, oy, ox, 1);
    case KPU_POOL_MAX_2_S1:
        return (uint8_t)pool_s1(z, h, w, oy, ox, 0);
    default:
        break;
    }
    s = kpu_pool_stride(type);
    for (dy = 0; dy < s; dy++)
        for (dx = 0; dx < s; dx++) {
            uint32_t v = z_at(z, w, s * oy + dy, s * ox + dx);
            best = v > best ? v : best;
            sum += v;
        }
    return (uint8_t)((type == KPU_POOL_MAX_2_S2 || type == KPU_POOL_MAX_4_S4) ? best : sum / (s * s));
}

/* Pool channel o's activated plane z (h x w) with pool type `type` and write it to KPU RAM (layout of out_w) and,
 * when asked, to main memory (compact CHW). */
static void write_back(uint8_t *ram, const struct kpu_conv_args *a, const uint8_t *z, uint32_t h, uint32_t w,
                       uint32_t type, uint32_t o, uint8_t *main_out)
{
    struct kpu_layout l = kpu_layout_for_width(a->out_w);
    uint8_t *base = ram + (size_t)a->dst_line * KPU_LINE_BYTES;
    uint32_t oy, ox;
    for (oy = 0; oy < a->out_h; oy++) {
        uint8_t *dst = base + kpu_offset(&l, a->out_h, o, oy, 0);
        if (type == KPU_POOL_BYPASS)
            memcpy(dst, z + (size_t)oy * w, a->out_w);
        else
            for (ox = 0; ox < a->out_w; ox++)
                dst[ox] = pool_at(z, h, w, type, oy, ox);
        if (main_out)
            memcpy(main_out + ((size_t)o * a->out_h + oy) * a->out_w, dst, a->out_w);
    }
}

/* Can this pool run on t before the activation? Picking pools always; max pools when the activation is
 * non-decreasing, since then max(f(t)) = f(max(t)). The activation then runs on the pooled plane only. */
static int pools_before_activation(uint32_t type, int monotone)
{
    return type == KPU_POOL_LEFT_TOP_2_S2 || type == KPU_POOL_RIGHT_TOP_2_S2 || type == KPU_POOL_LEFT_TOP_4_S4 ||
           ((type == KPU_POOL_MAX_2_S2 || type == KPU_POOL_MAX_4_S4 || type == KPU_POOL_MAX_2_S1) && monotone);
}

/* In-place pool of the BN plane t (in_h x in_w) to out_h x out_w: every write lands at or before the smallest
 * index the remaining reads use. Max_2_s1 looks only at in-range taps (the out-of-range 0 never wins on z >= 0). */
static void pool_bn_plane(int64_t *t, const struct kpu_conv_args *a)
{
    const uint32_t w = a->in_w, h = a->in_h, type = a->pool_type;
    const uint32_t step = kpu_pool_stride(type);
    const int picks =
        type == KPU_POOL_LEFT_TOP_2_S2 || type == KPU_POOL_RIGHT_TOP_2_S2 || type == KPU_POOL_LEFT_TOP_4_S4;
    const uint32_t window = picks ? 1 : (type == KPU_POOL_MAX_2_S1 ? 2 : step);
    const uint32_t dx0 = type == KPU_POOL_RIGHT_TOP_2_S2 ? 1 : 0;
    uint32_t oy, ox, dy, dx;
    for (oy = 0; oy < a->out_h; oy++)
        for (ox = 0; ox < a->out_w; ox++) {
            int64_t best = t[(size_t)(step * oy) * w + step * ox + dx0];
            for (dy = 0; dy < window; dy++)
                for (dx = 0; dx < window; dx++) {
                    uint32_t y = step * oy + dy, x = step * ox + dx + dx0;
                    if (y < h && x < w && t[(size_t)y * w + x] > best)
                        best = t[(size_t)y * w + x];
                }
            t[(size_t)oy * a->out_w + ox] = best;
        }
}

enum kpu_status kpu_conv(uint8_t *ram, const struct kpu_conv_args *a, const struct kpu_conv_params *p,
                         uint8_t *main_out, void *scratch)
{
    struct conv_scratch s = carve(a, scratch);
    struct activation act;
    uint32_t o, g, n;
    if (decode_activation(p->act, &act) != KPU_OK)
        return KPU_BAD_ACTIVATION;
    act.monotone = activation_is_monotone(&act);
    gather_padded(ram, a, s.padded);
    if (s.size.dots)
        transpose_to_positions(a, &s);
    if (!a->depthwise)
        input_sums(a, &s, 0, a->in_c);
    for (o = 0; o < a->out_c; o += n) {
        n = a->out_c - o < s.size.group ? a->out_c - o : (uint32_t)s.size.group;
        multiply_accumulate(a, p, &s, o, n);
        for (g = 0; g < n; g++) {
            enum kpu_status st;
            if (a->depthwise)
                input_sums(a, &s, o + g, 1);
            st = batch_norm_channel(a, p, &s, o + g, g);
            if (st != KPU_OK)
                return st;
            if (pools_before_activation(a->pool_type, act.monotone)) {
                pool_bn_plane(s.t, a);
                activate_plane(&act, s.t, s.z, (size_t)a->out_h * a->out_w);
                write_back(ram, a, s.z, a->out_h, a->out_w, 0, o + g, main_out);
            } else {
                activate_plane(&act, s.t, s.z, (size_t)a->in_h * a->in_w);
                write_back(ram, a, s.z, a->in_h, a->in_w, a->pool_type, o + g, main_out);
            }
        }
    }
    return KPU_OK;
}

#endif /* KPU_REFERENCE_KERNEL */

const char *kpu_status_text(enum kpu_status s)
{
    switch (s) {
    case KPU_OK:
        return "ok";
    case KPU_BAD_KERNEL:
        return "kernel_type is not 0 (1x1) or 1 (3x3)";
    case KPU_BAD_POOL:
        return "pool_type is not a KPU pool type (0..9)";
    case KPU_BAD_SHAPE:
        return "output shape does not match input shape and pool stride";
    case KPU_MAP_OUTSIDE_RAM:
        return "feature map extends past the 2 MiB KPU RAM";
    case KPU_BAD_ACTIVATION:
        return "activation table x_start values are not non-decreasing";
    case KPU_ACC_OUT_OF_RANGE:
        return "convolution accumulator outside 36-bit signed range";
    case KPU_BN_OUT_OF_RANGE:
        return "batch-norm output outside 36-bit signed range";
    }
    return "unknown KPU status";
}
