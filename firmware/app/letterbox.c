/* The detector's letterbox preprocessing; see letterbox.h. */
#include "letterbox.h"

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

void letterbox_frame(const uint8_t *frame, uint32_t frame_w, uint32_t frame_h, int planar,
                     const struct letterbox *box, uint32_t in_w, uint32_t in_h, uint32_t in_c, uint8_t fill,
                     uint8_t *chw)
{
    uint32_t c, y, x;
    for (c = 0; c < in_c; c++)
        for (y = 0; y < in_h; y++)
            for (x = 0; x < in_w; x++) {
                uint8_t v = fill;
                if (y >= box->pad_y && y < box->pad_y + box->height && x >= box->pad_x && x < box->pad_x + box->width) {
                    uint32_t sy = (uint32_t)((uint64_t)(y - box->pad_y) * frame_h / box->height);
                    uint32_t sx = (uint32_t)((uint64_t)(x - box->pad_x) * frame_w / box->width);
                    v = planar ? frame[((uint64_t)c * frame_h + sy) * frame_w + sx]
                               : frame[((uint64_t)sy * frame_w + sx) * 3 + c];
                }
                chw[((uint64_t)c * in_h + y) * in_w + x] = v;
            }
}

float letterbox_to_frame(float fraction, uint32_t input, uint32_t pad, uint32_t fitted, uint32_t frame)
{
    return (fraction * (float)input - (float)pad) * (float)frame / (float)fitted;
}
