/* The detector's preprocessing: a camera frame (any size, interleaved RGB or planar) -> the model input (CHW uint8),
 * scaled to fit with its aspect ratio kept (a separable triangle filter widened by the downscale factor, integer
 * arithmetic: the project's one letterbox, models/letterbox.py, which training and `invoke eval` use), centred, the
 * rest filled; byte for byte its Python twin letterbox_input (tests/test_letterbox_c.py). */
#ifndef LETTERBOX_H
#define LETTERBOX_H

#include <stdint.h>

/* Where a frame lands in the model input: fitted size and centring offsets, in input pixels. */
struct letterbox {
    uint32_t width, height, pad_x, pad_y;
};

/* The geometry for a frame_w x frame_h frame in an in_w x in_h input (frames.py letterbox_fit). */
struct letterbox letterbox_fit(uint32_t frame_w, uint32_t frame_h, uint32_t in_w, uint32_t in_h);

/* The input bytes (in_c x in_h x in_w) of a frame: inside the fitted area the frame resized to width x height
 * (columns, rounded to bytes, then rows), every other pixel `fill`. `planar` frames are C x H x W, others
 * H x W x 3. */
void letterbox_frame(const uint8_t *frame, uint32_t frame_w, uint32_t frame_h, int planar,
                     const struct letterbox *box, uint32_t in_w, uint32_t in_h, uint32_t in_c, uint8_t fill,
                     uint8_t *chw);

/* A box coordinate from a fraction of the model input back to frame pixels (frames.py boxes_to_frame). */
float letterbox_to_frame(float fraction, uint32_t input, uint32_t pad, uint32_t fitted, uint32_t frame);

#endif
