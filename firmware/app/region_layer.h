/* YOLOv2 region layer: decode a CHW float32 output grid into scored boxes, then per-class greedy NMS.
 * Same arithmetic and order as models/yolo_decode.py (decode_yolov2 + nms). */
#ifndef REGION_LAYER_H
#define REGION_LAYER_H

#include <stdint.h>

struct region_params {
    uint32_t grid_w, grid_h;
    uint32_t num_anchors, num_classes;
    const float *anchors; /* num_anchors (w, h) pairs in grid cells */
    float score_threshold;
    float nms_iou;
};

struct region_detection {
    float box[4]; /* x1, y1, x2, y2 as fractions of the model input, not clipped */
    float score;
    uint32_t class_id;
};

/* Decode output channel-major (C = A*(5+K), H, W) into dets (at most max_dets, in row, col, anchor, class order);
 * returns how many scored above the threshold, which may exceed max_dets (the rest are dropped). */
uint32_t region_decode(const struct region_params *p, const float *chw, struct region_detection *dets,
                       uint32_t max_dets);
/* Sort by score (descending, stable) and keep a box unless a kept box of its class overlaps it with IoU > nms_iou.
 * Works in place; returns the number kept (they are dets[0 .. n)). */
uint32_t region_nms(const struct region_params *p, struct region_detection *dets, uint32_t count);

#endif
