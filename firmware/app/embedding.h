/* The recognizer's side of the firmware: a face box from the msh arguments or the whole frame, the face crop as the
 * KPU's planar input (face_crop.c, the C twin of models/recognizer/crop.py), the embedding dequantized and
 * L2-normalised on the CPU (with the flip policy, plus the mirrored crop's, L2-normalised; then, with the
 * recognizer's embedding centre, centred and L2-normalised again: the order of models/recognizer/centre.py), and
 * its console line
 * {"frame":F,"box":[x1,y1,x2,y2],"embedding":[...],"ms":T} with each value in units of 1e-4 (EMBEDDING_UNITS),
 * an integer, since rt_kprintf has no %f. */
#ifndef EMBEDDING_H
#define EMBEDDING_H

#include <rtthread.h>
#include <stdint.h>

#include "rt_port_board.h"

#define EMBEDDING_UNITS 10000

/* What `<name>_embed [N] | [x1 y1 x2 y2 [N]]` asks for: a box (else the whole frame) and a frame count bound
 * (0: every frame the board offers). */
struct embedding_request {
    int has_box;
    int box[4];
    int count;
};

/* 0, or -1 for another number of arguments or one that is not an integer (a count must be > 0). */
int embedding_parse_args(int argc, char **argv, struct embedding_request *request);
/* The face box of one frame: the requested box, or the whole frame. */
void embedding_frame_box(const struct embedding_request *request, const struct rt_port_frame *frame, int box[4]);
/* The policy crop of `box` as size x size planar RGB (the model input); 0, or -1 as face_crop refuses. */
int embedding_crop(const struct rt_port_frame *frame, const int box[4], int margin_permille, int size, uint8_t *chw);
/* uint8 output codes -> real values: (code - zero_point) * scale. */
void embedding_dequantize(const uint8_t *codes, uint32_t count, float scale, int zero_point, float *out);
/* `values` scaled to unit L2 norm (left as they are when all zero); returns the norm before. */
float embedding_normalise(float *values, uint32_t count);
/* The flip policy: unit `values` (the crop's) plus unit `mirror` (its mirror image's), value by value in float32,
 * L2-normalised into `values` (deploy/attendance/matching.py flip_added is the Python twin). */
void embedding_add(float *values, const float *mirror, uint32_t count);
/* Unit `values` minus the embedding centre (float32, value by value), L2-normalised again; nothing when `centre` is
 * RT_NULL (deploy/attendance/matching.py centred() is the Python twin). */
void embedding_centre(float *values, const float *centre, uint32_t count);
/* One embedding value in EMBEDDING_UNITS, rounded half away from zero (as printed and as enrolled). */
long embedding_unit(float value);
/* The frame's JSON line; `instructions` is printed when `counted`. */
void embedding_print(int frame, const int box[4], const float *values, uint32_t count, unsigned long ms, int counted,
                     uint64_t instructions);

#endif
