/* Pixel work of the board display, with no SDK dependency (tested on the host against NumPy): the DVP's RGB565
 * display frame into an LCD framebuffer, detection boxes drawn into it. */
#ifndef FRAME_CONVERT_H
#define FRAME_CONVERT_H

#include <stdint.h>

/* Where a source image sits in a destination of another size: centred, cropped where it is larger. */
struct frame_offset {
    int32_t x, y;
};

/* A rectangle in destination pixels, corners included. */
struct frame_rect {
    int32_t x1, y1, x2, y2;
};

/* RGB565 value of an 8-bit-per-channel colour. */
uint16_t frame_rgb565(uint8_t r, uint8_t g, uint8_t b);

/* Outline colour of detection class `class_id` (a fixed palette, repeating). */
uint16_t frame_class_color(uint32_t class_id);

/* Offset that centres a src_w x src_h image in a dst_w x dst_h one (negative = the source is cropped). */
struct frame_offset frame_center(uint32_t src_w, uint32_t src_h, uint32_t dst_w, uint32_t dst_h);

/* Copy the DVP's RGB565 display output into an RGB565 framebuffer at `at` (frame_center), swapping the two pixels
 * of every 32-bit word (the DVP stores the left pixel in the upper half, the LCD driver sends halves in memory
 * order); destination pixels the source does not cover become black. src_w must be even. */
void frame_dvp565_to_display(const uint16_t *src, uint32_t src_w, uint32_t src_h, uint16_t *dst, uint32_t dst_w,
                             uint32_t dst_h, struct frame_offset at);

/* A box in source-frame pixels (x1, y1, x2, y2, floats) moved by `at` and clipped to the destination;
 * 0 when nothing of it is visible. */
int frame_box_to_display(const float box[4], struct frame_offset at, uint32_t dst_w, uint32_t dst_h,
                         struct frame_rect *out);

/* Outline of `rect` (already inside the buffer), `thickness` pixels inwards, in `color`. */
void frame_draw_rect(uint16_t *dst, uint32_t dst_w, uint32_t dst_h, const struct frame_rect *rect, uint32_t thickness,
                     uint16_t color);

#endif
