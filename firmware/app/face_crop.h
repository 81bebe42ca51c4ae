/* The face-crop policy of models/recognizer/crop.py in C, byte for byte: a detector box -> a square around its
 * centre with a margin -> size x size pixels, sampled bilinearly with 8-bit weights, edge pixels repeated outside
 * the image. After the box is rounded to whole pixels everything is integer arithmetic (int64_t where products
 * exceed 32 bits), so the firmware's crops equal the ones the recognizer was trained and evaluated on. */
#ifndef FACE_CROP_H
#define FACE_CROP_H

#include <stdint.h>

/* Layout flags: the image is planar (C x H x W) rather than interleaved (H x W x C); the same for the output.
 * crop.py's crop_face gives the interleaved output; the planar one is its transpose (the KPU's input layout). */
#define FACE_CROP_IN_PLANAR 1
#define FACE_CROP_OUT_PLANAR 2
#define FACE_CROP_HWC_TO_HWC 0
#define FACE_CROP_HWC_TO_CHW FACE_CROP_OUT_PLANAR
#define FACE_CROP_CHW_TO_CHW (FACE_CROP_IN_PLANAR | FACE_CROP_OUT_PLANAR)

/* Policy bounds, as CropPolicy checks them. */
#define FACE_CROP_MIN_SIZE 4
#define FACE_CROP_MAX_MARGIN_PERMILLE 2000
/* Box coordinates face_crop_round_box accepts: |x| < 2^20 pixels. */
#define FACE_CROP_MAX_COORDINATE 1048576.0f

/* crop_face(image, box, CropPolicy(size, margin_permille)): box = x1, y1 (inclusive), x2, y2 (exclusive) in whole
 * pixels (x2, y2 are raised to at least x1 + 1, y1 + 1, as rounded_box does); out receives size * size * channels
 * bytes in the output layout. Returns 0, or -1 (out untouched) for a null pointer, an empty image, channels < 1,
 * an unknown layout, size < FACE_CROP_MIN_SIZE or a margin outside 0 .. FACE_CROP_MAX_MARGIN_PERMILLE. */
int face_crop(const uint8_t *image, int width, int height, int channels, int layout, const int box[4],
              int margin_permille, int size, uint8_t *out);

/* crop.py's mirrored(crop) on a planar (C x size x size) crop, in place: column j of every row of every channel
 * becomes column size - 1 - j (the mirror image the flip policy embeds second). */
void face_crop_mirror(uint8_t *chw, int channels, int size);

/* rounded_box(box): each coordinate rounded half up (floor(x + 0.5)), x2, y2 raised to at least x1 + 1, y1 + 1.
 * Python computes floor(x + 0.5) in float64, this in float without forming x + 0.5 (which float would round:
 * 0.49999997f + 0.5f is 1.0f): floor(x) plus one when x - floor(x) >= 0.5, a difference float holds exactly
 * (or, for -0.5 < x < 0, rounds to a value above 0.5 as the exact one is).
 * For the values boxes take (|x| < 2^20) the results agree for float32 inputs. Returns 0, or -1 (out untouched)
 * when a coordinate is not finite or not below FACE_CROP_MAX_COORDINATE in magnitude. */
int face_crop_round_box(const float box[4], int out[4]);

#endif
