/* kmodel V3 on-disk constants (kmodel-v3-and-kpu.md section 7) and little-endian field readers. */
#ifndef KMODEL_FORMAT_H
#define KMODEL_FORMAT_H

#include <stdint.h>

/* Format constants, layer types and body field offsets (kmodel_layout.h) and the K210 facts (k210_kpu.h) are
 * generated from the Python side by deploy/firmware/k210_headers.py into the build's include path. */
#include "k210_kpu.h"
#include "kmodel_layout.h"

static inline uint32_t kmodel_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static inline uint64_t kmodel_u64(const uint8_t *p)
{
    return (uint64_t)kmodel_u32(p) | ((uint64_t)kmodel_u32(p + 4) << 32);
}

static inline int32_t kmodel_i32(const uint8_t *p)
{
    return (int32_t)kmodel_u32(p);
}

static inline float kmodel_f32(const uint8_t *p)
{
    union {
        uint32_t u;
        float f;
    } v;
    v.u = kmodel_u32(p);
    return v.f;
}

#endif
