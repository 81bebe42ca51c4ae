/* Software KPU: the K210 KPU RAM layout and one K210_CONV layer computed bit-exactly
 * (kmodel-v3-and-kpu.md sections 1.3, 2, 3 and 5), by the fast kernel (kpu_soft.c) or, built with
 * -DKPU_REFERENCE_KERNEL, the reference one (kpu_ref.c): the same bytes. */
#ifndef KPU_SOFT_H
#define KPU_SOFT_H

#include <stddef.h>
#include <stdint.h>

#include "kmodel_format.h"

/* Row layout of a feature map of width w in KPU RAM. */
struct kpu_layout {
    uint32_t groups;    /* channels sharing one 64-byte line */
    uint32_t row_lines; /* lines per row */
    uint32_t pitch;     /* byte offset between grouped channels inside a line */
};

struct kpu_layout kpu_layout_for_width(uint32_t width);
/* Bytes of KPU RAM a c x h x w map occupies. */
uint32_t kpu_map_bytes(uint32_t c, uint32_t h, uint32_t w);
/* Byte offset of element (c, y, x) from the map base. */
static inline uint32_t kpu_offset(const struct kpu_layout *l, uint32_t h, uint32_t c, uint32_t y, uint32_t x)
{
    return ((c / l->groups) * l->row_lines * h + y * l->row_lines) * KPU_LINE_BYTES + (c % l->groups) * l->pitch + x;
}

/* Copy a compact CHW uint8 map into / out of KPU RAM at a line address. */
void kpu_upload(uint8_t *ram, uint32_t line, const uint8_t *chw, uint32_t c, uint32_t h, uint32_t w);
void kpu_download(const uint8_t *ram, uint32_t line, uint8_t *chw, uint32_t c, uint32_t h, uint32_t w);

/* The decoded 12-word register block of one layer. */
struct kpu_conv_args {
    uint32_t in_c, in_h, in_w, out_c, out_h, out_w;
    uint32_t src_line, dst_line;
    uint32_t kernel;    /* 1 or 3 */
    uint32_t depthwise; /* 0 or 1 */
    uint32_t pool_type; /* 0..9 */
    uint32_t pad_value;
    int64_t arg_x, arg_w, arg_add;
    uint32_t shr_x, shr_w;
};

enum kpu_status {
    KPU_OK = 0,
    KPU_BAD_KERNEL,
    KPU_BAD_POOL,
    KPU_BAD_SHAPE,
    KPU_MAP_OUTSIDE_RAM,
    KPU_BAD_ACTIVATION,
    KPU_ACC_OUT_OF_RANGE,
    KPU_BN_OUT_OF_RANGE
};

/* Decode and check a register block (96 bytes, little-endian words). */
enum kpu_status kpu_decode_conv(const uint8_t *regs, struct kpu_conv_args *out);
/* Scratch bytes kpu_conv needs for this layer. */
size_t kpu_conv_scratch_bytes(const struct kpu_conv_args *a);

/* Parameter blobs of one layer, as stored in the kmodel. */
struct kpu_conv_params {
    const uint8_t *weights; /* [OC][IC][k][k] (or [C][k][k] depthwise), u8 or little-endian u16 */
    const uint8_t *bn;      /* OC x u64 */
    const uint8_t *act;     /* 18 x u64 */
    int eight_bit;
};

/* Run one layer on KPU RAM; also writes compact CHW output to main_out when it is not NULL. */
enum kpu_status kpu_conv(uint8_t *ram, const struct kpu_conv_args *a, const struct kpu_conv_params *p,
                         uint8_t *main_out, void *scratch);

const char *kpu_status_text(enum kpu_status s);

#endif
