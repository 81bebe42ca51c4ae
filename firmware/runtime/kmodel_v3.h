/* kmodel V3 interpreter: parse and check a model once, then run it on a caller-provided working area
 * (no allocation inside the runtime). K210_CONV layers run on the software KPU. */
#ifndef KMODEL_V3_H
#define KMODEL_V3_H

#include <stddef.h>
#include <stdint.h>

#define KMODEL_MAX_OUTPUTS 10u

enum kmodel_status {
    KM_OK = 0,
    KM_TRUNCATED,         /* a header, table or body lies past the end of the file */
    KM_BAD_VERSION,       /* version != 3 */
    KM_BAD_ARCH,          /* arch != 0 */
    KM_BAD_FIELD,         /* a field has a value the format does not allow */
    KM_UNSUPPORTED_LAYER, /* layer type not implemented */
    KM_BAD_FIRST_LAYER,   /* first layer is not K210_CONV or FULLY_CONNECTED */
    KM_KPU,               /* the software KPU refused a layer (see kpu_status) */
    KM_NOT_READY          /* run before attach, or bad argument */
};

struct kmodel_error {
    enum kmodel_status status;
    int kpu_status;  /* enum kpu_status when status == KM_KPU */
    int32_t layer;   /* layer index, -1 for the file header */
    uint32_t offset; /* absolute file offset of the offending field */
};

struct kmodel {
    const uint8_t *model;
    uint32_t size;
    uint32_t flags, layer_count, main_mem_usage, output_count;
    uint32_t first_body;
    uint32_t input_bytes;      /* bytes the caller passes to kmodel_run */
    uint32_t input_c, input_h, input_w;
    int input_is_float;        /* 1 when the first layer is FULLY_CONNECTED */
    size_t main_bytes;         /* main buffer including slack */
    size_t scratch_bytes;      /* largest software-KPU scratch */
    uint8_t *kpu_ram;          /* 2 MiB */
    uint8_t *main;
    void *scratch;
    struct kmodel_error error;
};

/* Parse and check every header, body size and buffer range. */
enum kmodel_status kmodel_parse(struct kmodel *m, const uint8_t *model, uint32_t size);
/* Bytes of the working area kmodel_attach needs (main buffer + scratch, 8-aligned). */
size_t kmodel_work_bytes(const struct kmodel *m);
/* Hand the runtime its memory: kpu_ram of KPU_RAM_BYTES and a work area of kmodel_work_bytes. */
enum kmodel_status kmodel_attach(struct kmodel *m, uint8_t *kpu_ram, void *work);
/* Run all layers on one input (u8 CHW for a K210_CONV first layer, f32 for FULLY_CONNECTED). */
enum kmodel_status kmodel_run(struct kmodel *m, const uint8_t *input);
/* Byte size of output i as the header declares it (0 when there is no such output). */
uint32_t kmodel_output_size(const struct kmodel *m, uint32_t index);
/* Output i of the last run: pointer into the main buffer and its size in bytes. */
enum kmodel_status kmodel_output(const struct kmodel *m, uint32_t index, const uint8_t **data, uint32_t *size);
/* One line describing m->error, e.g. "layer 3 at offset 0x1c4: ...". */
void kmodel_describe_error(const struct kmodel *m, char *text, size_t text_size);

#endif
