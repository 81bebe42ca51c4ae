/* Face crop -> embedding -> console line: see embedding.h. */
#include "embedding.h"

#include <math.h>
#include <stdlib.h>

#include "console_line.h"
#include "face_crop.h"

static int embedding_int_arg(const char *text, int *value)
{
    char *end;
    long v = strtol(text, &end, 10);
    if (end == text || *end != '\0' || v < -FACE_CROP_MAX_COORDINATE || v > FACE_CROP_MAX_COORDINATE)
        return -1;
    *value = (int)v;
    return 0;
}

int embedding_parse_args(int argc, char **argv, struct embedding_request *request)
{
    int k;
    request->has_box = argc >= 5;
    request->count = 0;
    if (argc != 1 && argc != 2 && argc != 5 && argc != 6)
        return -1;
    for (k = 0; request->has_box && k < 4; k++)
        if (embedding_int_arg(argv[1 + k], &request->box[k]) != 0)
            return -1;
    if (argc == 2 || argc == 6)
        if (embedding_int_arg(argv[argc - 1], &request->count) != 0 || request->count <= 0)
            return -1;
    return 0;
}

void embedding_frame_box(const struct embedding_request *request, const struct rt_port_frame *frame, int box[4])
{
    int k;
    for (k = 0; k < 4; k++)
        box[k] = request->has_box ? request->box[k] : k < 2 ? 0 : k == 2 ? (int)frame->width : (int)frame->height;
}

int embedding_crop(const struct rt_port_frame *frame, const int box[4], int margin_permille, int size, uint8_t *chw)
{
    return face_crop(frame->data, (int)frame->width, (int)frame->height, 3,
                     frame->planar ? FACE_CROP_CHW_TO_CHW : FACE_CROP_HWC_TO_CHW, box, margin_permille, size, chw);
}

void embedding_dequantize(const uint8_t *codes, uint32_t count, float scale, int zero_point, float *out)
{
    uint32_t i;
    for (i = 0; i < count; i++)
        out[i] = (float)((int)codes[i] - zero_point) * scale;
}

float embedding_normalise(float *values, uint32_t count)
{
    double sum = 0.0;
    float norm;
    uint32_t i;
    for (i = 0; i < count; i++)
        sum += (double)values[i] * (double)values[i];
    norm = (float)sqrt(sum);
    if (norm > 0.0f)
        for (i = 0; i < count; i++)
            values[i] = (float)((double)values[i] / (double)norm);
    return norm;
}

void embedding_add(float *values, const float *mirror, uint32_t count)
{
    uint32_t i;
    for (i = 0; i < count; i++)
        values[i] = values[i] + mirror[i];
    embedding_normalise(values, count);
}

void embedding_centre(float *values, const float *centre, uint32_t count)
{
    uint32_t i;
    if (centre == RT_NULL)
        return;
    for (i = 0; i < count; i++)
        values[i] = values[i] - centre[i];
    embedding_normalise(values, count);
}

long embedding_unit(float value)
{
    return lround((double)value * EMBEDDING_UNITS);
}

void embedding_print(int frame, const int box[4], const float *values, uint32_t count, unsigned long ms, int counted,
                     uint64_t instructions)
{
    struct console_line line;
    uint32_t i;
    console_line_begin(&line);
    console_line_text(&line, "{\"frame\":");
    console_line_int(&line, frame);
    console_line_text(&line, ",\"box\":[");
    for (i = 0; i < 4; i++) {
        console_line_text(&line, i ? "," : "");
        console_line_int(&line, box[i]);
    }
    console_line_text(&line, "],\"embedding\":[");
    for (i = 0; i < count; i++) {
        console_line_text(&line, i ? "," : "");
        console_line_int(&line, embedding_unit(values[i]));
    }
    console_line_text(&line, "],\"ms\":");
    console_line_uint(&line, ms);
    if (counted) {
        console_line_text(&line, ",\"insn\":");
        console_line_uint(&line, instructions);
    }
    console_line_text(&line, "}");
    console_line_end(&line);
}
