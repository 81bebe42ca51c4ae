/* kmodel V3 on-disk constants (kmodel-v3-and-kpu.md section 7) and little-endian field readers. */
#ifndef KMODEL_FORMAT_H
#define KMODEL_FORMAT_H

#include <stdint.h>

#define KMODEL_V3_VERSION 3u
#define KMODEL_HEADER_BYTES 28u
#define KMODEL_OUTPUT_BYTES 8u
#define KMODEL_LAYER_HEADER_BYTES 8u
#define KMODEL_FLAG_8BIT_WEIGHTS 1u
#define KMODEL_LAYER_FLAG_MAIN_MEM_OUT 1u

#define KPU_RAM_BYTES (2u * 1024u * 1024u)
#define KPU_RAM_LINES 32768u
#define KPU_LINE_BYTES 64u
#define KPU_REG_WORDS 12u
#define KPU_ACT_SEGMENTS 16u
#define KMODEL_MODEL_ALIGNMENT 256u

enum kmodel_layer_type {
    KL_ADD = 1,
    KL_QUANTIZED_ADD = 2,
    KL_GLOBAL_MAX_POOL2D = 3,
    KL_QUANTIZED_GLOBAL_MAX_POOL2D = 4,
    KL_GLOBAL_AVERAGE_POOL2D = 5,
    KL_QUANTIZED_GLOBAL_AVERAGE_POOL2D = 6,
    KL_MAX_POOL2D = 7,
    KL_QUANTIZED_MAX_POOL2D = 8,
    KL_AVERAGE_POOL2D = 9,
    KL_QUANTIZED_AVERAGE_POOL2D = 10,
    KL_QUANTIZE = 11,
    KL_DEQUANTIZE = 12,
    KL_REQUANTIZE = 13,
    KL_L2_NORMALIZATION = 14,
    KL_SOFTMAX = 15,
    KL_CONCAT = 16,
    KL_QUANTIZED_CONCAT = 17,
    KL_FULLY_CONNECTED = 18,
    KL_TENSORFLOW_FLATTEN = 20,
    KL_QUANTIZED_TENSORFLOW_FLATTEN = 21,
    KL_RESIZE_NEAREST_NEIGHBOR = 22,
    KL_QUANTIZED_RESIZE_NEAREST_NEIGHBOR = 23,
    KL_CHANNELWISE_DEQUANTIZE = 24,
    KL_LOGISTIC = 25,
    KL_K210_CONV = 10240,
    KL_K210_ADD_PADDING = 10241,
    KL_K210_REMOVE_PADDING = 10242,
    KL_K210_UPLOAD = 10243
};

enum kmodel_activation { KACT_LINEAR = 0, KACT_RELU = 1, KACT_RELU6 = 2 };

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
