/* YOLOv2 region layer in float32 C, mirroring models/yolo_decode.py step by step. */
#include "region_layer.h"

#include <math.h>
#include <stddef.h>

static float sigmoid(float x)
{
    return 1.0f / (1.0f + expf(-x));
}

uint32_t region_decode(const struct region_params *p, const float *chw, struct region_detection *dets,
                       uint32_t max_dets)
{
    uint32_t plane = p->grid_w * p->grid_h, entries = 5 + p->num_classes, found = 0;
    uint32_t row, col, a, c;
    for (row = 0; row < p->grid_h; row++)
        for (col = 0; col < p->grid_w; col++)
            for (a = 0; a < p->num_anchors; a++) {
                const float *t = chw + (size_t)a * entries * plane + row * p->grid_w + col;
                float cx = ((float)col + sigmoid(t[0])) / (float)p->grid_w;
                float cy = ((float)row + sigmoid(t[plane])) / (float)p->grid_h;
                float bw = expf(t[2 * plane]) * p->anchors[2 * a] / (float)p->grid_w;
                float bh = expf(t[3 * plane]) * p->anchors[2 * a + 1] / (float)p->grid_h;
                float obj = sigmoid(t[4 * plane]), max = t[5 * plane], sum = 0.0f;
                for (c = 1; c < p->num_classes; c++)
                    max = t[(5 + c) * plane] > max ? t[(5 + c) * plane] : max;
                for (c = 0; c < p->num_classes; c++)
                    sum += expf(t[(5 + c) * plane] - max);
                for (c = 0; c < p->num_classes; c++) {
                    float score = obj * (expf(t[(5 + c) * plane] - max) / sum);
                    if (!(score > p->score_threshold))
                        continue;
                    if (found < max_dets) {
                        struct region_detection *d = &dets[found];
                        d->box[0] = cx - bw * 0.5f;
                        d->box[1] = cy - bh * 0.5f;
                        d->box[2] = cx + bw * 0.5f;
                        d->box[3] = cy + bh * 0.5f;
                        d->score = score;
                        d->class_id = c;
                    }
                    found++;
                }
            }
    return found;
}

static float iou(const struct region_detection *a, const struct region_detection *b)
{
    float iw = fminf(a->box[2], b->box[2]) - fmaxf(a->box[0], b->box[0]);
    float ih = fminf(a->box[3], b->box[3]) - fmaxf(a->box[1], b->box[1]);
    float inter, uni;
    iw = iw > 0.0f ? iw : 0.0f;
    ih = ih > 0.0f ? ih : 0.0f;
    inter = iw * ih;
    uni = (a->box[2] - a->box[0]) * (a->box[3] - a->box[1]) + (b->box[2] - b->box[0]) * (b->box[3] - b->box[1]) - inter;
    return uni > 0.0f ? inter / uni : 0.0f;
}

uint32_t region_nms(const struct region_params *p, struct region_detection *dets, uint32_t count)
{
    uint32_t i, j, kept = 0;
    for (i = 1; i < count; i++) { /* stable insertion sort, descending score */
        struct region_detection d = dets[i];
        for (j = i; j > 0 && dets[j - 1].score < d.score; j--)
            dets[j] = dets[j - 1];
        dets[j] = d;
    }
    for (i = 0; i < count; i++) {
        int keep = 1;
        for (j = 0; j < kept && keep; j++)
            if (dets[j].class_id == dets[i].class_id && iou(&dets[j], &dets[i]) > p->nms_iou)
                keep = 0;
        if (keep)
            dets[kept++] = dets[i];
    }
    return kept;
}
