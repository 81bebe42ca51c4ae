/* Host check of firmware/app/detection.c over the RT-Thread API shim, without rendering a model.
 * `detection_check CASE INPUT` reads a case that tests/test_detection_c.py writes (the detector's parameters, a
 * camera frame and a model output), letterboxes the frame into the model input (written to the file INPUT), decodes
 * the output and prints the frame's console line. `detection_check --count AVAILABLE [ARG...]` prints what
 * detection_frame_count makes of `<name>_detect [ARG...]` with AVAILABLE frames.
 *
 * Case layout, little-endian: 16 u32 (grid_w, grid_h, num_anchors, num_classes, in_w, in_h, in_c, fill,
 * max_candidates, frame_w, frame_h, planar, quantized, frame index, counted, label bytes), 3 f32 (score threshold,
 * NMS IoU, output scale), i32 output zero point, 2 u64 (ms, instructions), the anchors as 2 x num_anchors f32, the
 * labels (NUL-terminated, one after another), the frame (frame_h x frame_w x 3 bytes, CHW when planar) and the
 * output (grid_h x grid_w x num_anchors * (5 + num_classes) values: u8 when quantized, else f32). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "detection.h"

#include "shim_tables.h"

struct reader {
    const uint8_t *at, *end;
};

static const void *take(struct reader *r, size_t bytes)
{
    const void *at = r->at;
    if ((size_t)(r->end - r->at) < bytes) {
        fprintf(stderr, "case file too short\n");
        exit(2);
    }
    r->at += bytes;
    return at;
}

static uint32_t take_u32(struct reader *r)
{
    uint32_t v;
    memcpy(&v, take(r, 4), 4);
    return v;
}

static float take_f32(struct reader *r)
{
    float v;
    memcpy(&v, take(r, 4), 4);
    return v;
}

static uint8_t *read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    uint8_t *data;
    long length;
    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (length = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fprintf(stderr, "cannot read %s\n", path);
        exit(2);
    }
    data = malloc((size_t)length + 1);
    if (data == NULL || fread(data, 1, (size_t)length, f) != (size_t)length) {
        fprintf(stderr, "cannot read %s\n", path);
        exit(2);
    }
    fclose(f);
    *size = (size_t)length;
    return data;
}

int main(int argc, char **argv)
{
    struct detection d;
    struct rt_port_frame frame;
    struct reader r;
    struct letterbox box;
    const char **labels;
    const float *grid;
    float *anchors;
    void *output;
    uint8_t *data, *input;
    uint32_t u[16], found, kept, i, count;
    uint64_t ms, instructions;
    size_t size;
    FILE *f;
    if (argc >= 3 && strcmp(argv[1], "--count") == 0) {
        printf("%d\n", detection_frame_count(argc - 2, argv + 2, atoi(argv[2])));
        return 0;
    }
    if (argc != 3) {
        fprintf(stderr, "usage: detection_check CASE INPUT | --count AVAILABLE [ARG...]\n");
        return 2;
    }
    data = read_file(argv[1], &size);
    r.at = data;
    r.end = data + size;
    for (i = 0; i < 16; i++)
        u[i] = take_u32(&r);
    memset(&d, 0, sizeof(d));
    d.region.grid_w = u[0];
    d.region.grid_h = u[1];
    d.region.num_anchors = u[2];
    d.region.num_classes = u[3];
    d.in_w = u[4];
    d.in_h = u[5];
    d.in_c = u[6];
    d.fill = (uint8_t)u[7];
    d.max_candidates = u[8];
    d.region.score_threshold = take_f32(&r);
    d.region.nms_iou = take_f32(&r);
    d.out_scale = take_f32(&r);
    d.out_zero_point = (int)take_u32(&r);
    memcpy(&ms, take(&r, 8), 8);
    memcpy(&instructions, take(&r, 8), 8);
    anchors = malloc(2 * d.region.num_anchors * sizeof(float));
    for (i = 0; i < 2 * d.region.num_anchors; i++)
        anchors[i] = take_f32(&r);
    d.region.anchors = anchors;
    labels = malloc(d.region.num_classes * sizeof(*labels));
    {
        const char *text = take(&r, u[15]);
        for (i = 0; i < d.region.num_classes; i++) {
            labels[i] = text;
            text += strlen(text) + 1;
        }
    }
    d.labels = labels;
    frame.width = u[9];
    frame.height = u[10];
    frame.planar = (int)u[11];
    frame.data = take(&r, (size_t)frame.width * frame.height * 3);
    count = d.region.grid_w * d.region.grid_h * d.region.num_anchors * (5 + d.region.num_classes);
    d.out_count = count;
    output = malloc(count * sizeof(float));
    memcpy(output, take(&r, count * (u[12] ? 1 : sizeof(float))), count * (u[12] ? 1 : sizeof(float)));
    d.grid = u[12] ? malloc(count * sizeof(float)) : NULL;
    d.dets = malloc(d.max_candidates * sizeof(*d.dets));
    d.boxes = malloc(d.max_candidates * sizeof(*d.boxes));
    d.classes = malloc(d.max_candidates * sizeof(*d.classes));

    input = malloc((size_t)d.in_c * d.in_h * d.in_w);
    box = detection_input(&d, &frame, input);
    f = fopen(argv[2], "wb");
    if (f == NULL || fwrite(input, 1, (size_t)d.in_c * d.in_h * d.in_w, f) != (size_t)d.in_c * d.in_h * d.in_w) {
        fprintf(stderr, "cannot write %s\n", argv[2]);
        return 2;
    }
    fclose(f);
    grid = detection_grid(&d, output);
    kept = detection_decode(&d, grid, &frame, &box, &found);
    detection_print(&d, (int)u[13], kept, found, ms, (int)u[14], instructions);
    return 0;
}
