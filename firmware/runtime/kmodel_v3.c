/* kmodel V3 interpreter (kmodel-v3-and-kpu.md sections 7.1-7.5). */
#include "kmodel_v3.h"

#include <stdio.h>
#include <string.h>

#include "cpu_layers.h"
#include "kmodel_format.h"
#include "kpu_soft.h"

#define MAIN_SLACK_BYTES 8u

static enum kmodel_status fail(struct kmodel *m, enum kmodel_status s, int32_t layer, uint32_t offset)
{
    m->error.status = s;
    m->error.layer = layer;
    m->error.offset = offset;
    return s;
}

static uint32_t layer_size(const struct kmodel *m, uint32_t index)
{
    return kmodel_u32(m->model + KMODEL_HEADER_BYTES + KMODEL_OUTPUT_BYTES * m->output_count +
                      KMODEL_LAYER_HEADER_BYTES * index + 4);
}

static uint32_t layer_type(const struct kmodel *m, uint32_t index)
{
    return kmodel_u32(m->model + KMODEL_HEADER_BYTES + KMODEL_OUTPUT_BYTES * m->output_count +
                      KMODEL_LAYER_HEADER_BYTES * index);
}

/* Checks of one K210_CONV body: blob offsets inside the file, registers valid, main output in range. */
static enum kmodel_status check_conv(struct kmodel *m, uint32_t index, uint32_t at, uint32_t size)
{
    const uint8_t *b = m->model + at;
    struct kpu_conv_args a;
    enum kpu_status st;
    uint32_t regs, weights, bn, act;
    uint64_t weight_bytes;
    if (size < KMODEL_K210_CONV_BYTES)
        return fail(m, KM_TRUNCATED, (int32_t)index, at);
    regs = kmodel_u32(b + KMODEL_K210_CONV_LAYER_OFFSET), weights = kmodel_u32(b + KMODEL_K210_CONV_WEIGHTS_OFFSET);
    bn = kmodel_u32(b + KMODEL_K210_CONV_BN_OFFSET), act = kmodel_u32(b + KMODEL_K210_CONV_ACT_OFFSET);
    if ((uint64_t)regs + KPU_REG_BYTES > m->size)
        return fail(m, KM_TRUNCATED, (int32_t)index, at + KMODEL_K210_CONV_LAYER_OFFSET);
    st = kpu_decode_conv(m->model + regs, &a);
    if (st != KPU_OK) {
        m->error.kpu_status = (int)st;
        return fail(m, KM_KPU, (int32_t)index, regs);
    }
    weight_bytes = (uint64_t)a.out_c * (a.depthwise ? 1 : a.in_c) * a.kernel * a.kernel *
                   ((m->flags & KMODEL_FLAG_8BIT_WEIGHTS) ? 1 : 2);
    if ((uint64_t)weights + weight_bytes > m->size)
        return fail(m, KM_TRUNCATED, (int32_t)index, at + KMODEL_K210_CONV_WEIGHTS_OFFSET);
    if ((uint64_t)bn + KPU_BN_WORD_BYTES * a.out_c > m->size)
        return fail(m, KM_TRUNCATED, (int32_t)index, at + KMODEL_K210_CONV_BN_OFFSET);
    if ((uint64_t)act + KPU_ACT_TABLE_BYTES > m->size)
        return fail(m, KM_TRUNCATED, (int32_t)index, at + KMODEL_K210_CONV_ACT_OFFSET);
    if ((kmodel_u32(b + KMODEL_K210_CONV_FLAGS) & KMODEL_LAYER_FLAG_MAIN_MEM_OUT) &&
        (uint64_t)kmodel_u32(b + KMODEL_K210_CONV_MAIN_MEM_OUT_ADDR) + (uint64_t)a.out_c * a.out_h * a.out_w >
            m->main_bytes)
        return fail(m, KM_BAD_FIELD, (int32_t)index, at + KMODEL_K210_CONV_MAIN_MEM_OUT_ADDR);
    if (kpu_conv_scratch_bytes(&a) > m->scratch_bytes)
        m->scratch_bytes = kpu_conv_scratch_bytes(&a);
    if (index == 0) {
        m->input_c = a.in_c, m->input_h = a.in_h, m->input_w = a.in_w;
        m->input_bytes = a.in_c * a.in_h * a.in_w;
    }
    return KM_OK;
}

static enum kmodel_status check_layers(struct kmodel *m)
{
    uint32_t i, at = m->first_body;
    for (i = 0; i < m->layer_count; i++) {
        uint32_t type = layer_type(m, i), bad = 0;
        uint32_t header = KMODEL_HEADER_BYTES + KMODEL_OUTPUT_BYTES * m->output_count + KMODEL_LAYER_HEADER_BYTES * i;
        uint32_t size = layer_size(m, i);
        /* The padding of the last body is counted in body_size but may be absent from the file (spec 7.3). */
        uint32_t present = (uint64_t)at + size > m->size ? m->size - (at < m->size ? at : m->size) : size;
        if ((uint64_t)at + size > (uint64_t)m->size + 7 || (i + 1 < m->layer_count && (uint64_t)at + size > m->size))
            return fail(m, KM_TRUNCATED, (int32_t)i, header + 4);
        if (i == 0 && type != KL_K210_CONV && type != KL_FULLY_CONNECTED)
            return fail(m, KM_BAD_FIRST_LAYER, 0, header);
        if (type == KL_K210_CONV) {
            if (check_conv(m, i, at, present) != KM_OK)
                return m->error.status;
        } else if (!cpu_layer_known(type)) {
            return fail(m, KM_UNSUPPORTED_LAYER, (int32_t)i, header);
        } else if (cpu_layer_check(type, m->model + at, present, (uint32_t)m->main_bytes, &bad)) {
            return fail(m, bad >= present ? KM_TRUNCATED : KM_BAD_FIELD, (int32_t)i, at + bad);
        }
        if (i == 0 && type == KL_FULLY_CONNECTED) {
            m->input_is_float = 1;
            m->input_c = kmodel_u32(m->model + at + KMODEL_FULLY_CONNECTED_IN_CHANNELS), m->input_h = 1, m->input_w = 1;
            m->input_bytes = 4 * m->input_c;
        }
        at += size;
    }
    return KM_OK;
}

enum kmodel_status kmodel_parse(struct kmodel *m, const uint8_t *model, uint32_t size)
{
    uint32_t i;
    memset(m, 0, sizeof(*m));
    m->model = model;
    m->size = size;
    if (size < KMODEL_HEADER_BYTES)
        return fail(m, KM_TRUNCATED, -1, 0);
    if (kmodel_u32(model) != KMODEL_V3_VERSION)
        return fail(m, KM_BAD_VERSION, -1, 0);
    m->flags = kmodel_u32(model + 4);
    if (kmodel_u32(model + 8) != 0)
        return fail(m, KM_BAD_ARCH, -1, 8);
    m->layer_count = kmodel_u32(model + 12);
    m->main_mem_usage = kmodel_u32(model + 20);
    m->output_count = kmodel_u32(model + 24);
    if (m->layer_count == 0)
        return fail(m, KM_BAD_FIELD, -1, 12);
    if (m->output_count == 0 || m->output_count > KMODEL_MAX_OUTPUTS)
        return fail(m, KM_BAD_FIELD, -1, 24);
    if ((uint64_t)KMODEL_HEADER_BYTES + KMODEL_OUTPUT_BYTES * (uint64_t)m->output_count +
            KMODEL_LAYER_HEADER_BYTES * (uint64_t)m->layer_count > size)
        return fail(m, KM_TRUNCATED, -1, 12);
    m->first_body = KMODEL_HEADER_BYTES + KMODEL_OUTPUT_BYTES * m->output_count +
                    KMODEL_LAYER_HEADER_BYTES * m->layer_count;
    m->main_bytes = ((size_t)m->main_mem_usage + MAIN_SLACK_BYTES + 7u) & ~(size_t)7u;
    for (i = 0; i < m->output_count; i++) {
        const uint8_t *o = model + KMODEL_HEADER_BYTES + KMODEL_OUTPUT_BYTES * i;
        if ((uint64_t)kmodel_u32(o) + kmodel_u32(o + 4) > m->main_mem_usage)
            return fail(m, KM_BAD_FIELD, -1, KMODEL_HEADER_BYTES + KMODEL_OUTPUT_BYTES * i);
    }
    return check_layers(m);
}

size_t kmodel_work_bytes(const struct kmodel *m)
{
    return m->main_bytes + ((m->scratch_bytes + 7u) & ~(size_t)7u);
}

enum kmodel_status kmodel_attach(struct kmodel *m, uint8_t *kpu_ram, void *work)
{
    if (kpu_ram == NULL || work == NULL)
        return fail(m, KM_NOT_READY, -1, 0);
    m->kpu_ram = kpu_ram;
    m->main = (uint8_t *)work;
    m->scratch = (uint8_t *)work + m->main_bytes;
    memset(m->main, 0, m->main_bytes);
    return KM_OK;
}

static enum kmodel_status run_conv(struct kmodel *m, uint32_t index, const uint8_t *b)
{
    struct kpu_conv_args a;
    struct kpu_conv_params p;
    enum kpu_status st;
    kpu_decode_conv(m->model + kmodel_u32(b + KMODEL_K210_CONV_LAYER_OFFSET), &a);
    p.weights = m->model + kmodel_u32(b + KMODEL_K210_CONV_WEIGHTS_OFFSET);
    p.bn = m->model + kmodel_u32(b + KMODEL_K210_CONV_BN_OFFSET);
    p.act = m->model + kmodel_u32(b + KMODEL_K210_CONV_ACT_OFFSET);
    p.eight_bit = (m->flags & KMODEL_FLAG_8BIT_WEIGHTS) != 0;
    st = kpu_conv(m->kpu_ram, &a, &p,
                  (kmodel_u32(b + KMODEL_K210_CONV_FLAGS) & KMODEL_LAYER_FLAG_MAIN_MEM_OUT)
                      ? m->main + kmodel_u32(b + KMODEL_K210_CONV_MAIN_MEM_OUT_ADDR) : NULL, m->scratch);
    if (st != KPU_OK) {
        m->error.kpu_status = (int)st;
        return fail(m, KM_KPU, (int32_t)index, (uint32_t)(b - m->model));
    }
    return KM_OK;
}

static void place_input(struct kmodel *m, const uint8_t *input)
{
    const uint8_t *b = m->model + m->first_body;
    if (m->input_is_float) {
        memcpy(m->main + kmodel_u32(b + KMODEL_FULLY_CONNECTED_IN_ADDR), input, m->input_bytes);
    } else {
        struct kpu_conv_args a;
        kpu_decode_conv(m->model + kmodel_u32(b + KMODEL_K210_CONV_LAYER_OFFSET), &a);
        kpu_upload(m->kpu_ram, a.src_line, input, a.in_c, a.in_h, a.in_w);
    }
}

enum kmodel_status kmodel_run(struct kmodel *m, const uint8_t *input)
{
    uint32_t i, at = m->first_body;
    if (m->kpu_ram == NULL || input == NULL)
        return fail(m, KM_NOT_READY, -1, 0);
    place_input(m, input);
    for (i = 0; i < m->layer_count; i++) {
        uint32_t type = layer_type(m, i);
        if (type == KL_K210_CONV) {
            if (run_conv(m, i, m->model + at) != KM_OK)
                return m->error.status;
        } else {
            cpu_layer_run(type, m->model + at, m->main, m->kpu_ram);
        }
        at += layer_size(m, i);
    }
    return KM_OK;
}

uint32_t kmodel_output_size(const struct kmodel *m, uint32_t index)
{
    if (index >= m->output_count)
        return 0;
    return kmodel_u32(m->model + KMODEL_HEADER_BYTES + KMODEL_OUTPUT_BYTES * index + 4);
}

enum kmodel_status kmodel_output(const struct kmodel *m, uint32_t index, const uint8_t **data, uint32_t *size)
{
    const uint8_t *o;
    if (index >= m->output_count || m->main == NULL)
        return KM_NOT_READY;
    o = m->model + KMODEL_HEADER_BYTES + KMODEL_OUTPUT_BYTES * index;
    *data = m->main + kmodel_u32(o);
    *size = kmodel_u32(o + 4);
    return KM_OK;
}

static const char *status_text(enum kmodel_status s)
{
    switch (s) {
    case KM_OK: return "ok";
    case KM_TRUNCATED: return "data lies past the end of the kmodel";
    case KM_BAD_VERSION: return "not a kmodel V3 (version field is not 3)";
    case KM_BAD_ARCH: return "arch field is not 0";
    case KM_BAD_FIELD: return "field value outside what the format allows (buffer range, count or size)";
    case KM_UNSUPPORTED_LAYER: return "layer type not supported by this runtime";
    case KM_BAD_FIRST_LAYER: return "first layer must be K210_CONV or FULLY_CONNECTED";
    case KM_KPU: return "software KPU error";
    case KM_NOT_READY: return "runtime not attached or bad argument";
    }
    return "unknown error";
}

void kmodel_describe_error(const struct kmodel *m, char *text, size_t text_size)
{
    const char *detail = m->error.status == KM_KPU ? kpu_status_text((enum kpu_status)m->error.kpu_status) : "";
    if (m->error.layer < 0)
        snprintf(text, text_size, "kmodel header at offset 0x%lx: %s", (unsigned long)m->error.offset,
                 status_text(m->error.status));
    else
        snprintf(text, text_size, "kmodel layer %ld at offset 0x%lx: %s%s%s", (long)m->error.layer,
                 (unsigned long)m->error.offset, status_text(m->error.status), *detail ? ": " : "", detail);
}
