/* The detector's letterbox preprocessing; see letterbox.h. */
#include "letterbox.h"

#define LETTERBOX_WEIGHT_BITS 14 /* models/letterbox.py WEIGHT_BITS */

struct letterbox letterbox_fit(uint32_t frame_w, uint32_t frame_h, uint32_t in_w, uint32_t in_h)
{
    struct letterbox box;
    if ((uint64_t)frame_w * in_h >= (uint64_t)frame_h * in_w) {
        box.width = in_w;
        box.height = (uint32_t)((uint64_t)frame_h * in_w / frame_w);
    } else {
        box.height = in_h;
        box.width = (uint32_t)((uint64_t)frame_w * in_h / frame_h);
    }
    box.width = box.width ? box.width : 1;
    box.height = box.height ? box.height : 1;
    box.pad_x = (in_w - box.width) / 2;
    box.pad_y = (in_h - box.height) / 2;
    return box;
}

/* The taps of output pixel i of an axis scaled from src to dst pixels (models/letterbox.py axis_taps): source
 * pixels first..last, raw weight max(0, 2M - |(2j + 1) dst - (2i + 1) src|), M = max(src, dst), and their sum. */
struct axis_taps {
    uint32_t first, last;
    uint64_t centre, m2, dst, total;
};

static uint64_t raw_weight(const struct axis_taps *t, uint32_t j)
{
    uint64_t at = (2 * (uint64_t)j + 1) * t->dst;
    uint64_t distance = at > t->centre ? at - t->centre : t->centre - at;
    return distance < t->m2 ? t->m2 - distance : 0;
}

static struct axis_taps axis_taps(uint32_t i, uint32_t src, uint32_t dst)
{
    struct axis_taps t;
    uint32_t j;
    t.m2 = 2 * (uint64_t)(src > dst ? src : dst);
    t.centre = (2 * (uint64_t)i + 1) * src;
    t.dst = dst;
    t.first = t.centre > t.m2 ? (uint32_t)((t.centre - t.m2) / (2 * t.dst)) : 0;
    t.last = (uint32_t)((t.centre + t.m2) / (2 * t.dst));
    if (t.last > src - 1)
        t.last = src - 1;
    t.total = 0;
    for (j = t.first; j <= t.last; j++)
        t.total += raw_weight(&t, j);
    return t;
}

/* A raw weight in LETTERBOX_WEIGHT_BITS fixed point, rounded half up. */
static uint32_t fixed_weight(const struct axis_taps *t, uint64_t raw)
{
    return (uint32_t)(((raw << (LETTERBOX_WEIGHT_BITS + 1)) + t->total) / (2 * t->total));
}

static uint8_t rounded_byte(int64_t acc)
{
    acc = (acc + (1 << (LETTERBOX_WEIGHT_BITS - 1))) >> LETTERBOX_WEIGHT_BITS;
    return (uint8_t)(acc < 0 ? 0 : acc > 255 ? 255 : acc);
}

/* Frame channel c, row sy, filtered along the row for output column x (the horizontal pass, rounded). */
static uint8_t row_value(const uint8_t *frame, uint32_t frame_w, uint32_t frame_h, int planar, uint32_t c,
                         uint32_t sy, const struct axis_taps *tx)
{
    int64_t acc = 0;
    uint32_t sx;
    for (sx = tx->first; sx <= tx->last; sx++) {
        uint64_t raw = raw_weight(tx, sx);
        if (raw)
            acc += (int64_t)fixed_weight(tx, raw) * (planar ? frame[((uint64_t)c * frame_h + sy) * frame_w + sx]
                                                           : frame[((uint64_t)sy * frame_w + sx) * 3 + c]);
    }
    return rounded_byte(acc);
}

void letterbox_frame(const uint8_t *frame, uint32_t frame_w, uint32_t frame_h, int planar,
                     const struct letterbox *box, uint32_t in_w, uint32_t in_h, uint32_t in_c, uint8_t fill,
                     uint8_t *chw)
{
    uint32_t c, y, x;
    for (c = 0; c < in_c; c++)
        for (y = 0; y < in_h; y++)
            for (x = 0; x < in_w; x++) {
                uint8_t v = fill;
                int inside = y >= box->pad_y && y < box->pad_y + box->height && x >= box->pad_x &&
                             x < box->pad_x + box->width;
                if (inside && box->width == frame_w && box->height == frame_h) {
                    /* not resized (a camera frame as wide as the input): the filter's one tap of weight 1 */
                    uint32_t sx = x - box->pad_x, sy = y - box->pad_y;
                    v = planar ? frame[((uint64_t)c * frame_h + sy) * frame_w + sx]
                               : frame[((uint64_t)sy * frame_w + sx) * 3 + c];
                } else if (inside) {
                    struct axis_taps tx = axis_taps(x - box->pad_x, frame_w, box->width);
                    struct axis_taps ty = axis_taps(y - box->pad_y, frame_h, box->height);
                    int64_t acc = 0;
                    uint32_t sy;
                    for (sy = ty.first; sy <= ty.last; sy++) {
                        uint64_t raw = raw_weight(&ty, sy);
                        if (raw)
                            acc += (int64_t)fixed_weight(&ty, raw) *
                                   row_value(frame, frame_w, frame_h, planar, c, sy, &tx);
                    }
                    v = rounded_byte(acc);
                }
                chw[((uint64_t)c * in_h + y) * in_w + x] = v;
            }
}

float letterbox_to_frame(float fraction, uint32_t input, uint32_t pad, uint32_t fitted, uint32_t frame)
{
    return (fraction * (float)input - (float)pad) * (float)frame / (float)fitted;
}
