/* CPU layers of kmodel V3: float32 in sequential C loop order, integer layers as the SDK defines them. */
#include "cpu_layers.h"

#include <math.h>
#include <string.h>

#include "kmodel_format.h"
#include "kpu_arith.h"
#include "kpu_soft.h"

#define F(body, off) kmodel_u32((body) + (off))

static float *f32_at(uint8_t *main, uint32_t addr)
{
    return (float *)(void *)(main + addr);
}

static uint32_t min_body_size(uint32_t type, const uint8_t *body, uint32_t body_size)
{
    switch (type) {
    case KL_ADD:
        return KMODEL_ADD_BYTES;
    case KL_GLOBAL_MAX_POOL2D: case KL_QUANTIZED_GLOBAL_MAX_POOL2D: case KL_GLOBAL_AVERAGE_POOL2D:
    case KL_QUANTIZED_GLOBAL_AVERAGE_POOL2D:
        return KMODEL_GLOBAL_POOL_BYTES;
    case KL_QUANTIZED_ADD:
        return KMODEL_QUANTIZED_ADD_BYTES;
    case KL_QUANTIZED_MAX_POOL2D: case KL_QUANTIZED_AVERAGE_POOL2D:
        return KMODEL_POOL2D_BYTES;
    case KL_MAX_POOL2D: case KL_AVERAGE_POOL2D:
        return KMODEL_FLOAT_POOL2D_BYTES;
    case KL_QUANTIZE: case KL_DEQUANTIZE:
        return KMODEL_QUANTIZE_BYTES;
    case KL_TENSORFLOW_FLATTEN: case KL_QUANTIZED_TENSORFLOW_FLATTEN:
        return KMODEL_FLATTEN_BYTES;
    case KL_K210_UPLOAD:
        return KMODEL_UPLOAD_BYTES;
    case KL_REQUANTIZE:
        return KMODEL_REQUANTIZE_BYTES + 256;
    case KL_L2_NORMALIZATION: case KL_SOFTMAX: case KL_LOGISTIC:
        return KMODEL_CHANNELS_BYTES;
    case KL_K210_ADD_PADDING:
        return KMODEL_ADD_PADDING_BYTES;
    case KL_K210_REMOVE_PADDING:
        return KMODEL_REMOVE_PADDING_BYTES;
    case KL_CONCAT: case KL_QUANTIZED_CONCAT:
        return body_size < KMODEL_CONCAT_BYTES ? KMODEL_CONCAT_BYTES
                                               : KMODEL_CONCAT_BYTES + 8 * F(body, KMODEL_CONCAT_INPUT_COUNT);
    case KL_FULLY_CONNECTED:
        return body_size < KMODEL_FULLY_CONNECTED_BYTES
                   ? KMODEL_FULLY_CONNECTED_BYTES
                   : KMODEL_FULLY_CONNECTED_BYTES + 4 * (F(body, KMODEL_FULLY_CONNECTED_IN_CHANNELS) *
                                                             F(body, KMODEL_FULLY_CONNECTED_OUT_CHANNELS) +
                                                         F(body, KMODEL_FULLY_CONNECTED_OUT_CHANNELS));
    case KL_RESIZE_NEAREST_NEIGHBOR: case KL_QUANTIZED_RESIZE_NEAREST_NEIGHBOR:
        return KMODEL_RESIZE_NEAREST_BYTES;
    case KL_CHANNELWISE_DEQUANTIZE:
        return body_size < KMODEL_CHANNELWISE_DEQUANTIZE_BYTES
                   ? KMODEL_CHANNELWISE_DEQUANTIZE_BYTES
                   : KMODEL_CHANNELWISE_DEQUANTIZE_BYTES + 8 * F(body, KMODEL_CHANNELWISE_DEQUANTIZE_CHANNELS);
    default:
        return 0;
    }
}

int cpu_layer_known(uint32_t type)
{
    return min_body_size(type, NULL, 0) != 0;
}

struct range_check {
    uint32_t main_bytes;
    uint32_t bad_field;
    int failed;
};

/* Record a failure when main[addr .. addr + bytes) is outside the main buffer; field = body offset of addr. */
static void need(struct range_check *rc, const uint8_t *body, uint32_t field, uint64_t bytes)
{
    uint64_t addr = F(body, field);
    if (!rc->failed && addr + bytes > rc->main_bytes) {
        rc->failed = 1;
        rc->bad_field = field;
    }
}

static void need_kpu(struct range_check *rc, uint32_t field, uint64_t line, uint64_t bytes)
{
    if (!rc->failed && line * KPU_LINE_BYTES + bytes > KPU_RAM_BYTES) {
        rc->failed = 1;
        rc->bad_field = field;
    }
}

static uint64_t shape_count(const uint8_t *body, uint32_t off)
{
    return (uint64_t)F(body, off) * F(body, off + 4) * F(body, off + 8);
}

static void check_ranges(uint32_t type, const uint8_t *body, struct range_check *rc)
{
    uint64_t n;
    uint32_t i;
    switch (type) {
    case KL_ADD:
        n = (uint64_t)F(body, KMODEL_ADD_COUNT) * 4;
        need(rc, body, KMODEL_ADD_IN_A_ADDR, n);
        need(rc, body, KMODEL_ADD_IN_B_ADDR, n);
        need(rc, body, KMODEL_ADD_OUT_ADDR, n);
        break;
    case KL_QUANTIZED_ADD:
        n = ((uint64_t)F(body, KMODEL_QUANTIZED_ADD_COUNT) + 7) / 8 * 8;
        need(rc, body, KMODEL_QUANTIZED_ADD_IN_A_ADDR, n);
        need(rc, body, KMODEL_QUANTIZED_ADD_IN_B_ADDR, n);
        need(rc, body, KMODEL_QUANTIZED_ADD_OUT_ADDR, n);
        for (i = KMODEL_QUANTIZED_ADD_IN_A_SHIFT; i <= KMODEL_QUANTIZED_ADD_OUT_SHIFT;
             i += KMODEL_QUANTIZED_ADD_IN_B_SHIFT - KMODEL_QUANTIZED_ADD_IN_A_SHIFT)
            if (F(body, i) > 62 && !rc->failed)
                rc->failed = 1, rc->bad_field = i;
        break;
    case KL_GLOBAL_MAX_POOL2D: case KL_QUANTIZED_GLOBAL_MAX_POOL2D: case KL_GLOBAL_AVERAGE_POOL2D:
    case KL_QUANTIZED_GLOBAL_AVERAGE_POOL2D:
        n = (type == KL_GLOBAL_AVERAGE_POOL2D || type == KL_GLOBAL_MAX_POOL2D) ? 4 : 1;
        need(rc, body, KMODEL_GLOBAL_POOL_IN_ADDR,
             n * F(body, KMODEL_GLOBAL_POOL_KERNEL_SIZE) * F(body, KMODEL_GLOBAL_POOL_CHANNELS));
        need(rc, body, KMODEL_GLOBAL_POOL_OUT_ADDR, n * F(body, KMODEL_GLOBAL_POOL_CHANNELS));
        if (F(body, KMODEL_GLOBAL_POOL_KERNEL_SIZE) == 0 && !rc->failed)
            rc->failed = 1, rc->bad_field = KMODEL_GLOBAL_POOL_KERNEL_SIZE;
        break;
    case KL_QUANTIZED_MAX_POOL2D: case KL_QUANTIZED_AVERAGE_POOL2D: case KL_MAX_POOL2D: case KL_AVERAGE_POOL2D:
        n = (type == KL_AVERAGE_POOL2D || type == KL_MAX_POOL2D) ? 4 : 1;
        need(rc, body, KMODEL_POOL2D_IN_ADDR, n * shape_count(body, KMODEL_POOL2D_IN_WIDTH));
        need(rc, body, KMODEL_POOL2D_OUT_ADDR, n * shape_count(body, KMODEL_POOL2D_OUT_WIDTH));
        for (i = KMODEL_POOL2D_KERNEL_WIDTH; i <= KMODEL_POOL2D_STRIDE_HEIGHT; i += 4)
            if (F(body, i) == 0 && !rc->failed)
                rc->failed = 1, rc->bad_field = i;
        if (F(body, KMODEL_POOL2D_IN_CHANNELS) != F(body, KMODEL_POOL2D_OUT_CHANNELS) && !rc->failed)
            rc->failed = 1, rc->bad_field = KMODEL_POOL2D_OUT_CHANNELS;
        break;
    case KL_QUANTIZE: case KL_DEQUANTIZE:
        n = F(body, KMODEL_QUANTIZE_COUNT);
        need(rc, body, KMODEL_QUANTIZE_IN_ADDR, n * (type == KL_QUANTIZE ? 4 : 1));
        need(rc, body, KMODEL_QUANTIZE_OUT_ADDR, n * (type == KL_QUANTIZE ? 1 : 4));
        break;
    case KL_REQUANTIZE:
        need(rc, body, KMODEL_REQUANTIZE_IN_ADDR, F(body, KMODEL_REQUANTIZE_COUNT));
        need(rc, body, KMODEL_REQUANTIZE_OUT_ADDR, F(body, KMODEL_REQUANTIZE_COUNT));
        break;
    case KL_L2_NORMALIZATION: case KL_SOFTMAX: case KL_LOGISTIC:
        need(rc, body, KMODEL_CHANNELS_IN_ADDR, (uint64_t)F(body, KMODEL_CHANNELS_CHANNELS) * 4);
        need(rc, body, KMODEL_CHANNELS_OUT_ADDR, (uint64_t)F(body, KMODEL_CHANNELS_CHANNELS) * 4);
        break;
    case KL_CONCAT: case KL_QUANTIZED_CONCAT:
        n = 0;
        for (i = 0; i < F(body, KMODEL_CONCAT_INPUT_COUNT); i++) {
            need(rc, body, KMODEL_CONCAT_BYTES + 8 * i, F(body, KMODEL_CONCAT_BYTES + 4 + 8 * i));
            n += F(body, KMODEL_CONCAT_BYTES + 4 + 8 * i);
        }
        need(rc, body, KMODEL_CONCAT_OUT_ADDR, n);
        break;
    case KL_FULLY_CONNECTED:
        need(rc, body, KMODEL_FULLY_CONNECTED_IN_ADDR, (uint64_t)F(body, KMODEL_FULLY_CONNECTED_IN_CHANNELS) * 4);
        need(rc, body, KMODEL_FULLY_CONNECTED_OUT_ADDR, (uint64_t)F(body, KMODEL_FULLY_CONNECTED_OUT_CHANNELS) * 4);
        break;
    case KL_TENSORFLOW_FLATTEN: case KL_QUANTIZED_TENSORFLOW_FLATTEN:
        n = shape_count(body, KMODEL_FLATTEN_WIDTH) * (type == KL_TENSORFLOW_FLATTEN ? 4 : 1);
        need(rc, body, KMODEL_FLATTEN_IN_ADDR, n), need(rc, body, KMODEL_FLATTEN_OUT_ADDR, n);
        break;
    case KL_RESIZE_NEAREST_NEIGHBOR: case KL_QUANTIZED_RESIZE_NEAREST_NEIGHBOR:
        n = type == KL_RESIZE_NEAREST_NEIGHBOR ? 4 : 1;
        need(rc, body, KMODEL_RESIZE_NEAREST_IN_ADDR, n * shape_count(body, KMODEL_RESIZE_NEAREST_IN_WIDTH));
        need(rc, body, KMODEL_RESIZE_NEAREST_OUT_ADDR,
             n * F(body, KMODEL_RESIZE_NEAREST_CHANNELS) * F(body, KMODEL_RESIZE_NEAREST_OUT_WIDTH) *
                 F(body, KMODEL_RESIZE_NEAREST_OUT_HEIGHT));
        if ((F(body, KMODEL_RESIZE_NEAREST_OUT_WIDTH) == 0 || F(body, KMODEL_RESIZE_NEAREST_OUT_HEIGHT) == 0) &&
            !rc->failed)
            rc->failed = 1, rc->bad_field = KMODEL_RESIZE_NEAREST_OUT_WIDTH;
        break;
    case KL_CHANNELWISE_DEQUANTIZE:
        n = (uint64_t)F(body, KMODEL_CHANNELWISE_DEQUANTIZE_CHANNELS) *
            F(body, KMODEL_CHANNELWISE_DEQUANTIZE_CHANNEL_SIZE);
        need(rc, body, KMODEL_CHANNELWISE_DEQUANTIZE_IN_ADDR, n);
        need(rc, body, KMODEL_CHANNELWISE_DEQUANTIZE_OUT_ADDR, n * 4);
        break;
    case KL_K210_ADD_PADDING:
        need(rc, body, KMODEL_ADD_PADDING_IN_ADDR, F(body, KMODEL_ADD_PADDING_CHANNELS));
        need_kpu(rc, KMODEL_ADD_PADDING_KPU_OUT_LINE, F(body, KMODEL_ADD_PADDING_KPU_OUT_LINE),
                 ((uint64_t)F(body, KMODEL_ADD_PADDING_CHANNELS) + 3) / 4 * 4 * KPU_LINE_BYTES);
        break;
    case KL_K210_REMOVE_PADDING:
        need(rc, body, KMODEL_REMOVE_PADDING_IN_ADDR, (uint64_t)F(body, KMODEL_REMOVE_PADDING_CHANNELS) * 16);
        need(rc, body, KMODEL_REMOVE_PADDING_OUT_ADDR, F(body, KMODEL_REMOVE_PADDING_CHANNELS));
        break;
    case KL_K210_UPLOAD:
        need(rc, body, KMODEL_UPLOAD_IN_ADDR, shape_count(body, KMODEL_UPLOAD_WIDTH));
        need_kpu(rc, KMODEL_UPLOAD_KPU_OUT_LINE, F(body, KMODEL_UPLOAD_KPU_OUT_LINE),
                 kpu_map_bytes(F(body, KMODEL_UPLOAD_CHANNELS), F(body, KMODEL_UPLOAD_HEIGHT),
                               F(body, KMODEL_UPLOAD_WIDTH)));
        break;
    default:
        rc->failed = 1;
        rc->bad_field = 0;
    }
}

int cpu_layer_check(uint32_t type, const uint8_t *body, uint32_t body_size, uint32_t main_bytes, uint32_t *bad_field)
{
    struct range_check rc;
    uint32_t need_size = min_body_size(type, body, body_size);
    if (need_size == 0 || body_size < need_size) {
        *bad_field = body_size;
        return 1;
    }
    rc.main_bytes = main_bytes;
    rc.bad_field = 0;
    rc.failed = 0;
    check_ranges(type, body, &rc);
    *bad_field = rc.bad_field;
    return rc.failed;
}

/* SDK carry_shift: round half up for v >= 0, literal definition for negatives. */
static int64_t carry_shift(int64_t v, int32_t s)
{
    int64_t u;
    if (s <= 0)
        return v;
    u = kpu_floor_shift(v, (unsigned)(s - 1));
    if ((u & 1) == 0)
        return kpu_floor_shift(u, 1);
    return u >= 0 ? kpu_floor_shift(u, 1) + 1 : kpu_floor_shift(u, 1) - 1;
}

static void quantized_add(const uint8_t *b, uint8_t *main)
{
    const uint8_t *in_a = main + F(b, KMODEL_QUANTIZED_ADD_IN_A_ADDR);
    const uint8_t *in_b = main + F(b, KMODEL_QUANTIZED_ADD_IN_B_ADDR);
    uint8_t *out = main + F(b, KMODEL_QUANTIZED_ADD_OUT_ADDR);
    uint32_t count = (F(b, KMODEL_QUANTIZED_ADD_COUNT) + 7) / 8 * 8, i;
    int32_t off_a = kmodel_i32(b + KMODEL_QUANTIZED_ADD_IN_A_OFFSET);
    int32_t mul_a = kmodel_i32(b + KMODEL_QUANTIZED_ADD_IN_A_MUL);
    int32_t sh_a = kmodel_i32(b + KMODEL_QUANTIZED_ADD_IN_A_SHIFT);
    int32_t off_b = kmodel_i32(b + KMODEL_QUANTIZED_ADD_IN_B_OFFSET);
    int32_t mul_b = kmodel_i32(b + KMODEL_QUANTIZED_ADD_IN_B_MUL);
    int32_t sh_b = kmodel_i32(b + KMODEL_QUANTIZED_ADD_IN_B_SHIFT);
    int32_t off_o = kmodel_i32(b + KMODEL_QUANTIZED_ADD_OUT_OFFSET);
    int32_t mul_o = kmodel_i32(b + KMODEL_QUANTIZED_ADD_OUT_MUL), sh_o = kmodel_i32(b + KMODEL_QUANTIZED_ADD_OUT_SHIFT);
    for (i = 0; i < count; i++) {
        int64_t va = ((int64_t)in_a[i] + off_a) * mul_a, vb = ((int64_t)in_b[i] + off_b) * mul_b, v;
        if (sh_a == sh_b)
            v = kpu_floor_shift(va + vb, (unsigned)sh_a);
        else
            v = kpu_floor_shift(va, (unsigned)sh_a) + kpu_floor_shift(vb, (unsigned)sh_b);
        out[i] = kpu_clamp_u8(carry_shift(v * mul_o, sh_o) + off_o);
    }
}

/* Per channel over kernel_size values: max or (truncating for u8) mean. */
static void global_pool(const uint8_t *b, uint8_t *main, int quantized, int is_max)
{
    uint32_t ks = F(b, KMODEL_GLOBAL_POOL_KERNEL_SIZE), ch = F(b, KMODEL_GLOBAL_POOL_CHANNELS), c, i;
    for (c = 0; c < ch; c++) {
        if (quantized) {
            const uint8_t *in = main + F(b, KMODEL_GLOBAL_POOL_IN_ADDR) + (size_t)c * ks;
            uint32_t sum = 0, best = 0;
            for (i = 0; i < ks; i++) {
                sum += in[i];
                best = in[i] > best ? in[i] : best;
            }
            main[F(b, KMODEL_GLOBAL_POOL_OUT_ADDR) + c] = (uint8_t)(is_max ? best : sum / ks);
        } else {
            const float *in = f32_at(main, F(b, KMODEL_GLOBAL_POOL_IN_ADDR)) + (size_t)c * ks;
            float sum = 0.0f, best = in[0];
            for (i = 0; i < ks; i++) {
                sum += in[i];
                best = in[i] > best ? in[i] : best;
            }
            f32_at(main, F(b, KMODEL_GLOBAL_POOL_OUT_ADDR))[c] = is_max ? best : sum / (float)ks;
        }
    }
}

static float apply_activation(float v, uint32_t act)
{
    if (act == KACT_RELU || act == KACT_RELU6)
        v = v < 0.0f ? 0.0f : v;
    if (act == KACT_RELU6)
        v = v > 6.0f ? 6.0f : v;
    return v;
}

/* 2-D pooling with windows clipped to the image: u8 max (from 0) or truncating mean over in-range pixels;
 * f32 max (from -inf, then the body's activation) or mean over in-range pixels (activation not applied). */
static void pool2d(uint32_t type, const uint8_t *b, uint8_t *main)
{
    int quantized = type == KL_QUANTIZED_MAX_POOL2D || type == KL_QUANTIZED_AVERAGE_POOL2D;
    int is_max = type == KL_QUANTIZED_MAX_POOL2D || type == KL_MAX_POOL2D;
    uint32_t iw = F(b, KMODEL_POOL2D_IN_WIDTH), ih = F(b, KMODEL_POOL2D_IN_HEIGHT);
    uint32_t ch = F(b, KMODEL_POOL2D_IN_CHANNELS), ow = F(b, KMODEL_POOL2D_OUT_WIDTH);
    uint32_t oh = F(b, KMODEL_POOL2D_OUT_HEIGHT);
    uint32_t kw = F(b, KMODEL_POOL2D_KERNEL_WIDTH), kh = F(b, KMODEL_POOL2D_KERNEL_HEIGHT);
    uint32_t sw = F(b, KMODEL_POOL2D_STRIDE_WIDTH), sh = F(b, KMODEL_POOL2D_STRIDE_HEIGHT);
    int32_t pw = (int32_t)F(b, KMODEL_POOL2D_PADDING_WIDTH), ph = (int32_t)F(b, KMODEL_POOL2D_PADDING_HEIGHT);
    uint32_t c, oy, ox;
    for (c = 0; c < ch; c++)
        for (oy = 0; oy < oh; oy++)
            for (ox = 0; ox < ow; ox++) {
                int32_t y0 = (int32_t)(oy * sh) - ph, x0 = (int32_t)(ox * sw) - pw, y, x;
                int32_t y1 = y0 + (int32_t)kh, x1 = x0 + (int32_t)kw;
                float sum = 0.0f, best = -INFINITY;
                uint32_t count = 0, qsum = 0, qbest = 0;
                size_t out = ((size_t)c * oh + oy) * ow + ox;
                y0 = y0 < 0 ? 0 : y0;
                x0 = x0 < 0 ? 0 : x0;
                y1 = y1 > (int32_t)ih ? (int32_t)ih : y1;
                x1 = x1 > (int32_t)iw ? (int32_t)iw : x1;
                for (y = y0; y < y1; y++)
                    for (x = x0; x < x1; x++) {
                        size_t idx = ((size_t)c * ih + (size_t)y) * iw + (size_t)x;
                        if (quantized) {
                            uint32_t v = main[F(b, KMODEL_POOL2D_IN_ADDR) + idx];
                            qsum += v;
                            qbest = v > qbest ? v : qbest;
                        } else {
                            float v = f32_at(main, F(b, KMODEL_POOL2D_IN_ADDR))[idx];
                            sum += v;
                            best = v > best ? v : best;
                        }
                        count++;
                    }
                if (quantized)
                    main[F(b, KMODEL_POOL2D_OUT_ADDR) + out] = (uint8_t)(is_max ? qbest : (count ? qsum / count : 0));
                else
                    f32_at(main, F(b, KMODEL_POOL2D_OUT_ADDR))[out] =
                        is_max ? apply_activation(best, F(b, KMODEL_FLOAT_POOL2D_ACT))
                                                        : (count ? sum / (float)count : 0.0f);
            }
}

static void quantize(const uint8_t *b, uint8_t *main)
{
    uint32_t n = F(b, KMODEL_QUANTIZE_COUNT), i;
    float scale = kmodel_f32(b + KMODEL_QUANTIZE_SCALE), bias = kmodel_f32(b + KMODEL_QUANTIZE_BIAS);
    float inv = 1.0f / scale;
    const float *in = f32_at(main, F(b, KMODEL_QUANTIZE_IN_ADDR));
    for (i = 0; i < n; i++) {
        float q = roundf((in[i] - bias) * inv);
        main[F(b, KMODEL_QUANTIZE_OUT_ADDR) + i] = (uint8_t)(q != q || q < 0.0f ? 0.0f : (q > 255.0f ? 255.0f : q));
    }
}

static void dequantize(const uint8_t *b, uint8_t *main)
{
    uint32_t n = F(b, KMODEL_QUANTIZE_COUNT), i;
    float scale = kmodel_f32(b + KMODEL_QUANTIZE_SCALE), bias = kmodel_f32(b + KMODEL_QUANTIZE_BIAS);
    const uint8_t *in = main + F(b, KMODEL_QUANTIZE_IN_ADDR);
    float *out = f32_at(main, F(b, KMODEL_QUANTIZE_OUT_ADDR));
    for (i = 0; i < n; i++)
        out[i] = (float)in[i] * scale + bias;
}

static void requantize(const uint8_t *b, uint8_t *main)
{
    uint32_t n = F(b, KMODEL_REQUANTIZE_COUNT), i;
    for (i = 0; i < n; i++)
        main[F(b, KMODEL_REQUANTIZE_OUT_ADDR) + i] =
            b[KMODEL_REQUANTIZE_BYTES + main[F(b, KMODEL_REQUANTIZE_IN_ADDR) + i]];
}

static void channel_vector(uint32_t type, const uint8_t *b, uint8_t *main)
{
    uint32_t n = F(b, KMODEL_CHANNELS_CHANNELS), i;
    const float *in = f32_at(main, F(b, KMODEL_CHANNELS_IN_ADDR));
    float *out = f32_at(main, F(b, KMODEL_CHANNELS_OUT_ADDR));
    float acc = 0.0f, max;
    if (n == 0)
        return;
    max = in[0];
    switch (type) {
    case KL_L2_NORMALIZATION:
        for (i = 0; i < n; i++)
            acc += in[i] * in[i];
        acc = sqrtf(acc > 1e-10f ? acc : 1e-10f);
        for (i = 0; i < n; i++)
            out[i] = in[i] / acc;
        break;
    case KL_SOFTMAX:
        for (i = 1; i < n; i++)
            max = in[i] > max ? in[i] : max;
        for (i = 0; i < n; i++) {
            out[i] = expf(in[i] - max);
            acc += out[i];
        }
        for (i = 0; i < n; i++)
            out[i] /= acc;
        break;
    default:
        for (i = 0; i < n; i++)
            out[i] = 1.0f / (1.0f + expf(-in[i]));
    }
}

static void concat(const uint8_t *b, uint8_t *main)
{
    uint32_t n = F(b, KMODEL_CONCAT_INPUT_COUNT), i, at = F(b, KMODEL_CONCAT_OUT_ADDR);
    for (i = 0; i < n; i++) {
        memmove(main + at, main + F(b, KMODEL_CONCAT_BYTES + 8 * i), F(b, KMODEL_CONCAT_BYTES + 4 + 8 * i));
        at += F(b, KMODEL_CONCAT_BYTES + 4 + 8 * i);
    }
}

static void fully_connected(const uint8_t *b, uint8_t *main)
{
    uint32_t in_n = F(b, KMODEL_FULLY_CONNECTED_IN_CHANNELS), out_n = F(b, KMODEL_FULLY_CONNECTED_OUT_CHANNELS);
    uint32_t act = F(b, KMODEL_FULLY_CONNECTED_ACT), o, i;
    const float *in = f32_at(main, F(b, KMODEL_FULLY_CONNECTED_IN_ADDR));
    float *out = f32_at(main, F(b, KMODEL_FULLY_CONNECTED_OUT_ADDR));
    for (o = 0; o < out_n; o++) {
        float sum = 0.0f;
        for (i = 0; i < in_n; i++)
            sum += kmodel_f32(b + KMODEL_FULLY_CONNECTED_BYTES + 4 * ((size_t)o * in_n + i)) * in[i];
        sum += kmodel_f32(b + KMODEL_FULLY_CONNECTED_BYTES + 4 * ((size_t)in_n * out_n + o));
        out[o] = apply_activation(sum, act);
    }
}

static void flatten(const uint8_t *b, uint8_t *main, uint32_t elem)
{
    uint32_t w = F(b, KMODEL_FLATTEN_WIDTH), h = F(b, KMODEL_FLATTEN_HEIGHT), ch = F(b, KMODEL_FLATTEN_CHANNELS);
    uint32_t c, y, x;
    for (c = 0; c < ch; c++)
        for (y = 0; y < h; y++)
            for (x = 0; x < w; x++)
                memcpy(main + F(b, KMODEL_FLATTEN_OUT_ADDR) + (((size_t)y * w + x) * ch + c) * elem,
                       main + F(b, KMODEL_FLATTEN_IN_ADDR) + (((size_t)c * h + y) * w + x) * elem, elem);
}

static void resize_nearest(const uint8_t *b, uint8_t *main, uint32_t elem)
{
    uint32_t iw = F(b, KMODEL_RESIZE_NEAREST_IN_WIDTH), ih = F(b, KMODEL_RESIZE_NEAREST_IN_HEIGHT);
    uint32_t ch = F(b, KMODEL_RESIZE_NEAREST_CHANNELS), ow = F(b, KMODEL_RESIZE_NEAREST_OUT_WIDTH);
    uint32_t oh = F(b, KMODEL_RESIZE_NEAREST_OUT_HEIGHT), c, oy, ox;
    float sy = (float)ih / (float)oh, sx = (float)iw / (float)ow;
    for (c = 0; c < ch; c++)
        for (oy = 0; oy < oh; oy++) {
            uint32_t iy = (uint32_t)floorf((float)oy * sy);
            iy = iy < ih ? iy : ih - 1;
            for (ox = 0; ox < ow; ox++) {
                uint32_t ix = (uint32_t)floorf((float)ox * sx);
                ix = ix < iw ? ix : iw - 1;
                memcpy(main + F(b, KMODEL_RESIZE_NEAREST_OUT_ADDR) + (((size_t)c * oh + oy) * ow + ox) * elem,
                       main + F(b, KMODEL_RESIZE_NEAREST_IN_ADDR) + (((size_t)c * ih + iy) * iw + ix) * elem, elem);
            }
        }
}

static void channelwise_dequantize(const uint8_t *b, uint8_t *main)
{
    uint32_t ch = F(b, KMODEL_CHANNELWISE_DEQUANTIZE_CHANNELS), size = F(b, KMODEL_CHANNELWISE_DEQUANTIZE_CHANNEL_SIZE);
    uint32_t c, i;
    const uint8_t *in = main + F(b, KMODEL_CHANNELWISE_DEQUANTIZE_IN_ADDR);
    float *out = f32_at(main, F(b, KMODEL_CHANNELWISE_DEQUANTIZE_OUT_ADDR));
    for (c = 0; c < ch; c++) {
        float scale = kmodel_f32(b + KMODEL_CHANNELWISE_DEQUANTIZE_BYTES + 8 * c);
        float bias = kmodel_f32(b + KMODEL_CHANNELWISE_DEQUANTIZE_BYTES + 4 + 8 * c);
        for (i = 0; i < size; i++)
            out[(size_t)c * size + i] = (float)in[(size_t)c * size + i] * scale + bias;
    }
}

static void add_padding(const uint8_t *b, uint8_t *main, uint8_t *kpu_ram)
{
    uint32_t ch = F(b, KMODEL_ADD_PADDING_CHANNELS), c;
    uint8_t *base = kpu_ram + (size_t)F(b, KMODEL_ADD_PADDING_KPU_OUT_LINE) * KPU_LINE_BYTES;
    for (c = 0; c < ch; c++)
        base[(c / 4) * 4 * KPU_LINE_BYTES + (c % 4) * 16] = main[F(b, KMODEL_ADD_PADDING_IN_ADDR) + c];
}

static void remove_padding(const uint8_t *b, uint8_t *main)
{
    uint32_t ch = F(b, KMODEL_REMOVE_PADDING_CHANNELS), c;
    for (c = 0; c < ch; c++)
        main[F(b, KMODEL_REMOVE_PADDING_OUT_ADDR) + c] = main[F(b, KMODEL_REMOVE_PADDING_IN_ADDR) + 16 * c];
}

static void float_add(const uint8_t *b, uint8_t *main)
{
    uint32_t n = F(b, KMODEL_ADD_COUNT), i;
    const float *x = f32_at(main, F(b, KMODEL_ADD_IN_A_ADDR)), *y = f32_at(main, F(b, KMODEL_ADD_IN_B_ADDR));
    float *out = f32_at(main, F(b, KMODEL_ADD_OUT_ADDR));
    for (i = 0; i < n; i++)
        out[i] = x[i] + y[i];
}

void cpu_layer_run(uint32_t type, const uint8_t *body, uint8_t *main, uint8_t *kpu_ram)
{
    switch (type) {
    case KL_ADD: float_add(body, main); break;
    case KL_QUANTIZED_ADD: quantized_add(body, main); break;
    case KL_GLOBAL_MAX_POOL2D: global_pool(body, main, 0, 1); break;
    case KL_QUANTIZED_GLOBAL_MAX_POOL2D: global_pool(body, main, 1, 1); break;
    case KL_GLOBAL_AVERAGE_POOL2D: global_pool(body, main, 0, 0); break;
    case KL_QUANTIZED_GLOBAL_AVERAGE_POOL2D: global_pool(body, main, 1, 0); break;
    case KL_MAX_POOL2D: case KL_QUANTIZED_MAX_POOL2D: case KL_AVERAGE_POOL2D: case KL_QUANTIZED_AVERAGE_POOL2D:
        pool2d(type, body, main);
        break;
    case KL_QUANTIZE: quantize(body, main); break;
    case KL_DEQUANTIZE: dequantize(body, main); break;
    case KL_REQUANTIZE: requantize(body, main); break;
    case KL_L2_NORMALIZATION: case KL_SOFTMAX: case KL_LOGISTIC: channel_vector(type, body, main); break;
    case KL_CONCAT: case KL_QUANTIZED_CONCAT: concat(body, main); break;
    case KL_FULLY_CONNECTED: fully_connected(body, main); break;
    case KL_TENSORFLOW_FLATTEN: flatten(body, main, 4); break;
    case KL_QUANTIZED_TENSORFLOW_FLATTEN: flatten(body, main, 1); break;
    case KL_RESIZE_NEAREST_NEIGHBOR: resize_nearest(body, main, 4); break;
    case KL_QUANTIZED_RESIZE_NEAREST_NEIGHBOR: resize_nearest(body, main, 1); break;
    case KL_CHANNELWISE_DEQUANTIZE: channelwise_dequantize(body, main); break;
    case KL_K210_ADD_PADDING: add_padding(body, main, kpu_ram); break;
    case KL_K210_REMOVE_PADDING: remove_padding(body, main); break;
    case KL_K210_UPLOAD:
        kpu_upload(kpu_ram, F(body, KMODEL_UPLOAD_KPU_OUT_LINE), main + F(body, KMODEL_UPLOAD_IN_ADDR),
                   F(body, KMODEL_UPLOAD_CHANNELS), F(body, KMODEL_UPLOAD_HEIGHT), F(body, KMODEL_UPLOAD_WIDTH));
        break;
    default: break;
    }
}
