/* Pixel work of the board display (see frame_convert.h). Plain C99, no allocation. */
#include "frame_convert.h"

#include <stddef.h>

/* Distinct outline colours, 8-bit RGB: green, red, blue, yellow, cyan, magenta, orange, white. */
static const uint8_t class_palette[][3] = {
    {0, 255, 0}, {255, 0, 0}, {0, 64, 255}, {255, 255, 0}, {0, 255, 255}, {255, 0, 255}, {255, 128, 0}, {255, 255, 255},
};

uint16_t frame_rgb565(uint8_t r, uint8_t g, uint8_t b)
{
    return (uint16_t)(((uint16_t)(r >> 3) << 11) | ((uint16_t)(g >> 2) << 5) | (uint16_t)(b >> 3));
}

uint16_t frame_class_color(uint32_t class_id)
{
    const uint8_t *c = class_palette[class_id % (sizeof(class_palette) / sizeof(class_palette[0]))];
    return frame_rgb565(c[0], c[1], c[2]);
}

struct frame_offset frame_center(uint32_t src_w, uint32_t src_h, uint32_t dst_w, uint32_t dst_h)
{
    struct frame_offset at;
    at.x = ((int32_t)dst_w - (int32_t)src_w) / 2;
    at.y = ((int32_t)dst_h - (int32_t)src_h) / 2;
    return at;
}

void frame_dvp565_to_display(const uint16_t *src, uint32_t src_w, uint32_t src_h, uint16_t *dst, uint32_t dst_w,
                             uint32_t dst_h, struct frame_offset at)
{
    uint32_t x, y;
    for (y = 0; y < dst_h; y++) {
        int32_t sy = (int32_t)y - at.y;
        uint16_t *row = dst + (size_t)y * dst_w;
        for (x = 0; x < dst_w; x++) {
            int32_t sx = (int32_t)x - at.x;
            if (sy < 0 || sy >= (int32_t)src_h || sx < 0 || sx >= (int32_t)src_w)
                row[x] = 0;
            else
                row[x] = src[(size_t)sy * src_w + (uint32_t)(sx ^ 1)];
        }
    }
}

static int32_t clip_round(float v, uint32_t limit)
{
    if (v <= 0.0f)
        return 0;
    if (v >= (float)(limit - 1))
        return (int32_t)limit - 1;
    return (int32_t)(v + 0.5f);
}

int frame_box_to_display(const float box[4], struct frame_offset at, uint32_t dst_w, uint32_t dst_h,
                         struct frame_rect *out)
{
    float x1 = box[0] + (float)at.x, y1 = box[1] + (float)at.y;
    float x2 = box[2] + (float)at.x, y2 = box[3] + (float)at.y;
    if (dst_w == 0 || dst_h == 0 || !(x1 <= x2 && y1 <= y2)) /* also refuses NaN */
        return 0;
    if (x2 < 0.0f || y2 < 0.0f || x1 > (float)(dst_w - 1) || y1 > (float)(dst_h - 1))
        return 0;
    out->x1 = clip_round(x1, dst_w);
    out->y1 = clip_round(y1, dst_h);
    out->x2 = clip_round(x2, dst_w);
    out->y2 = clip_round(y2, dst_h);
    return 1;
}

static void fill_row(uint16_t *dst, uint32_t dst_w, int32_t y, int32_t x1, int32_t x2, uint16_t color)
{
    int32_t x;
    for (x = x1; x <= x2; x++)
        dst[(size_t)y * dst_w + (uint32_t)x] = color;
}

static void fill_column(uint16_t *dst, uint32_t dst_w, int32_t x, int32_t y1, int32_t y2, uint16_t color)
{
    int32_t y;
    for (y = y1; y <= y2; y++)
        dst[(size_t)y * dst_w + (uint32_t)x] = color;
}

void frame_draw_rect(uint16_t *dst, uint32_t dst_w, uint32_t dst_h, const struct frame_rect *rect, uint32_t thickness,
                     uint16_t color)
{
    uint32_t t;
    if (rect->x1 < 0 || rect->y1 < 0 || rect->x2 >= (int32_t)dst_w || rect->y2 >= (int32_t)dst_h)
        return;
    for (t = 0; t < thickness; t++) {
        int32_t x1 = rect->x1 + (int32_t)t, y1 = rect->y1 + (int32_t)t;
        int32_t x2 = rect->x2 - (int32_t)t, y2 = rect->y2 - (int32_t)t;
        if (x1 > x2 || y1 > y2)
            break;
        fill_row(dst, dst_w, y1, x1, x2, color);
        fill_row(dst, dst_w, y2, x1, x2, color);
        fill_column(dst, dst_w, x1, y1, y2, color);
        fill_column(dst, dst_w, x2, y1, y2, color);
    }
}
