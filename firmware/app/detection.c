/* Frame -> input, output -> detections in frame pixels -> console line: see detection.h. */
#include "detection.h"

#include <stdlib.h>

#include "console_line.h"

struct letterbox detection_input(const struct detection *d, const struct rt_port_frame *frame, uint8_t *input)
{
    struct letterbox box = letterbox_fit(frame->width, frame->height, d->in_w, d->in_h);
    letterbox_frame(frame->data, frame->width, frame->height, frame->planar, &box, d->in_w, d->in_h, d->in_c, d->fill,
                    input);
    return box;
}

const float *detection_grid(const struct detection *d, const void *output)
{
    const uint8_t *q = output;
    uint32_t i;
    if (output == NULL || d->grid == NULL)
        return output;
    for (i = 0; i < d->out_count; i++)
        d->grid[i] = ((float)q[i] - (float)d->out_zero_point) * d->out_scale;
    return d->grid;
}

uint32_t detection_decode(const struct detection *d, const float *grid, const struct rt_port_frame *frame,
                          const struct letterbox *box, uint32_t *found)
{
    uint32_t kept, i;
    *found = region_decode(&d->region, grid, d->dets, d->max_candidates);
    kept = region_nms(&d->region, d->dets, *found < d->max_candidates ? *found : d->max_candidates);
    for (i = 0; i < kept; i++) {
        const float *b = d->dets[i].box;
        d->boxes[i][0] = letterbox_to_frame(b[0], d->in_w, box->pad_x, box->width, frame->width);
        d->boxes[i][1] = letterbox_to_frame(b[1], d->in_h, box->pad_y, box->height, frame->height);
        d->boxes[i][2] = letterbox_to_frame(b[2], d->in_w, box->pad_x, box->width, frame->width);
        d->boxes[i][3] = letterbox_to_frame(b[3], d->in_h, box->pad_y, box->height, frame->height);
        d->classes[i] = d->dets[i].class_id;
    }
    return kept;
}

void detection_print(const struct detection *d, int frame, uint32_t kept, uint32_t found, unsigned long long ms,
                     int counted, uint64_t instructions)
{
    struct console_line line;
    uint32_t i, k;
    console_line_begin(&line);
    console_line_text(&line, "{\"frame\":");
    console_line_int(&line, frame);
    console_line_text(&line, ",\"detections\":[");
    for (i = 0; i < kept; i++) {
        console_line_text(&line, i ? ",{\"box\":[" : "{\"box\":[");
        for (k = 0; k < 4; k++) {
            console_line_text(&line, k ? "," : "");
            console_line_fixed(&line, d->boxes[i][k], 3);
        }
        console_line_text(&line, "],\"score\":");
        console_line_fixed(&line, d->dets[i].score, 6);
        console_line_text(&line, ",\"class\":");
        console_line_uint(&line, d->classes[i]);
        console_line_text(&line, ",\"label\":\"");
        console_line_text(&line, d->labels[d->classes[i]]);
        console_line_text(&line, "\"}");
    }
    console_line_text(&line, "],\"ms\":");
    console_line_uint(&line, ms);
    if (counted) {
        console_line_text(&line, ",\"insn\":");
        console_line_uint(&line, instructions);
    }
    if (found > d->max_candidates) {
        console_line_text(&line, ",\"dropped\":");
        console_line_uint(&line, found - d->max_candidates);
    }
    console_line_text(&line, "}");
    console_line_end(&line);
}

int detection_frame_count(int argc, char **argv, int available)
{
    if (argc > 1 && atoi(argv[1]) > 0 && atoi(argv[1]) < available)
        return atoi(argv[1]);
    return available;
}
