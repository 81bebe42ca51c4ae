/* The detector's side of the firmware, apart from running the model: a camera frame letterboxed into the model
 * input (letterbox.c), the output grid (dequantized on the CPU when the model gives uint8 codes), the YOLOv2 region
 * layer and NMS (region_layer.c) with the boxes mapped back to frame pixels, and the frame's console line
 * {"frame":F,"detections":[{"box":[x1,y1,x2,y2],"score":S,"class":C,"label":"L"},...],"ms":T}
 * (+ "insn" where the target counts instructions, + "dropped" when more boxes scored than there is room for).
 * Everything the model decides comes in a struct detection that the generated <name>_app.c fills from its model
 * and detector headers; tests/test_detection_c.py checks this file against the Python decoder on the host. */
#ifndef DETECTION_H
#define DETECTION_H

#include <stdint.h>

#include "letterbox.h"
#include "region_layer.h"
#include "rt_port_board.h"

struct detection {
    struct region_params region; /* grid, anchors, classes, score threshold, NMS IoU */
    uint32_t in_w, in_h, in_c;   /* the model input (RT_AI_<NAME>_IN_1_W/H/C) */
    uint8_t fill;                /* the letterbox border value */
    const char *const *labels;   /* class names, already escaped for a JSON string */
    uint32_t max_candidates;     /* room in dets, boxes and classes */
    uint32_t out_count;          /* values of the output grid */
    /* A uint8 output: its dequantization, into grid (out_count floats); grid NULL: the output is float32. */
    float out_scale;
    int out_zero_point;
    float *grid;
    /* One frame's results, at most max_candidates, highest score first. */
    struct region_detection *dets; /* boxes as fractions of the model input */
    float (*boxes)[4];             /* the same boxes in frame pixels */
    uint32_t *classes;
};

/* Letterbox `frame` into the model input (in_c x in_h x in_w bytes); where the frame landed. */
struct letterbox detection_input(const struct detection *d, const struct rt_port_frame *frame, uint8_t *input);
/* The float grid of the model output `output` (dequantized into d->grid for a uint8 output); NULL when there is
 * no output. */
const float *detection_grid(const struct detection *d, const void *output);
/* Decode the grid, NMS, and map the kept boxes back to the pixels of a frame letterboxed as `box`: the number
 * kept; `found` gets how many scored above the threshold before NMS (which may exceed max_candidates). */
uint32_t detection_decode(const struct detection *d, const float *grid, const struct rt_port_frame *frame,
                          const struct letterbox *box, uint32_t *found);
/* The frame's console line; `instructions` is printed when `counted`. */
void detection_print(const struct detection *d, int frame, uint32_t kept, uint32_t found, unsigned long long ms,
                     int counted, uint64_t instructions);
/* How many of `available` frames `<name>_detect [N]` asks for: N when it is a number between 1 and available - 1,
 * else all. */
int detection_frame_count(int argc, char **argv, int available);

#endif
