/* The face-crop policy in integer arithmetic: see face_crop.h and models/recognizer/crop.py. */
#include "face_crop.h"

#include <stddef.h>

#define FRACTION_BITS 16
#define ONE ((int64_t)1 << FRACTION_BITS)
#define WEIGHT_BITS 8
#define FULL_WEIGHT (1 << WEIGHT_BITS)

/* The two source indices (clamped to [0, limit)) an output pixel blends and the 8-bit weight of the second. */
struct face_crop_tap {
    size_t low, high;
    uint32_t weight;
};

static size_t face_crop_clamp(int64_t index, int limit)
{
    return index < 0 ? 0 : index >= limit ? (size_t)limit - 1 : (size_t)index;
}

/* Output pixel `index` samples the source at the centre of its cell: start + (index + 1/2) * step - 1/2 pixel.
 * The position is split with masks (defined for negative int64_t) so it floors like Python's >>. */
static struct face_crop_tap face_crop_tap(int64_t start, int64_t step, int index, int limit)
{
    struct face_crop_tap tap;
    int64_t centre = start + (2 * (int64_t)index + 1) * step / 2 - ONE / 2;
    int64_t fraction = centre & (ONE - 1);
    int64_t whole = (centre - fraction) / ONE;
    tap.low = face_crop_clamp(whole, limit);
    tap.high = face_crop_clamp(whole + 1, limit);
    tap.weight = (uint32_t)(fraction >> (FRACTION_BITS - WEIGHT_BITS));
    return tap;
}

int face_crop(const uint8_t *image, int width, int height, int channels, int layout, const int box[4],
              int margin_permille, int size, uint8_t *out)
{
    const int in_planar = (layout & FACE_CROP_IN_PLANAR) != 0, out_planar = (layout & FACE_CROP_OUT_PLANAR) != 0;
    const size_t plane = (size_t)width * (size_t)height, out_plane = (size_t)size * (size_t)size;
    int64_t x1, y1, x2, y2, side, left, top, step;
    int i, j, c;
    if (image == NULL || box == NULL || out == NULL || width < 1 || height < 1 || channels < 1 ||
        (layout & ~(FACE_CROP_IN_PLANAR | FACE_CROP_OUT_PLANAR)) != 0 || size < FACE_CROP_MIN_SIZE ||
        margin_permille < 0 || margin_permille > FACE_CROP_MAX_MARGIN_PERMILLE)
        return -1;
    x1 = box[0];
    y1 = box[1];
    x2 = box[2] > x1 + 1 ? box[2] : x1 + 1;
    y2 = box[3] > y1 + 1 ? box[3] : y1 + 1;
    /* at most 2^32 * 5000 * 2^16 < 2^61 for any int box; the sample positions stay below 2^63 */
    side = (x2 - x1 > y2 - y1 ? x2 - x1 : y2 - y1) * (1000 + 2 * margin_permille) * ONE / 1000;
    left = (x1 + x2) * (ONE / 2) - side / 2;
    top = (y1 + y2) * (ONE / 2) - side / 2;
    step = side / size;
    for (i = 0; i < size; i++) {
        const struct face_crop_tap ty = face_crop_tap(top, step, i, height);
        for (j = 0; j < size; j++) {
            const struct face_crop_tap tx = face_crop_tap(left, step, j, width);
            const size_t row = (size_t)width, corners[4] = {ty.low * row + tx.low, ty.low * row + tx.high,
                                                       ty.high * row + tx.low, ty.high * row + tx.high};
            for (c = 0; c < channels; c++) {
                const size_t offset = in_planar ? (size_t)c * plane : (size_t)c;
                const size_t stride = in_planar ? 1 : (size_t)channels;
                /* at most 255 * 2^16 + 2^15 */
                uint32_t upper = image[corners[0] * stride + offset] * (FULL_WEIGHT - tx.weight) +
                                 image[corners[1] * stride + offset] * tx.weight;
                uint32_t lower = image[corners[2] * stride + offset] * (FULL_WEIGHT - tx.weight) +
                                 image[corners[3] * stride + offset] * tx.weight;
                uint32_t value = (upper * (FULL_WEIGHT - ty.weight) + lower * ty.weight +
                                  (1u << (2 * WEIGHT_BITS - 1))) >> (2 * WEIGHT_BITS);
                size_t pixel = (size_t)i * (size_t)size + (size_t)j;
                out[out_planar ? (size_t)c * out_plane + pixel : pixel * (size_t)channels + (size_t)c] = (uint8_t)value;
            }
        }
    }
    return 0;
}

void face_crop_mirror(uint8_t *chw, int channels, int size)
{
    int row, j;
    for (row = 0; row < channels * size; row++) {
        uint8_t *line = chw + (size_t)row * (size_t)size;
        for (j = 0; j < size / 2; j++) {
            uint8_t left = line[j];
            line[j] = line[size - 1 - j];
            line[size - 1 - j] = left;
        }
    }
}

/* floor(v + 0.5) for |v| < 2^20 (see face_crop.h): the int conversion truncates, so floor is one less below it. */
static int face_crop_round(float v)
{
    int whole = (int)v;
    whole -= v < (float)whole;
    return whole + (v - (float)whole >= 0.5f);
}

int face_crop_round_box(const float box[4], int out[4])
{
    int k;
    if (box == NULL || out == NULL)
        return -1;
    for (k = 0; k < 4; k++)
        if (!(box[k] > -FACE_CROP_MAX_COORDINATE && box[k] < FACE_CROP_MAX_COORDINATE))
            return -1;
    for (k = 0; k < 4; k++)
        out[k] = face_crop_round(box[k]);
    out[2] = out[2] > out[0] + 1 ? out[2] : out[0] + 1;
    out[3] = out[3] > out[1] + 1 ? out[3] : out[1] + 1;
    return 0;
}
