/* Test double of the SDK's KPU API the port uses (host memory has no uncached alias: IOMEM 0). */
#ifndef K210_HOST_KPU_H
#define K210_HOST_KPU_H
#include <stddef.h>
#include <stdint.h>

#include "dmac.h"

#define IOMEM 0
typedef void (*kpu_done_callback_t)(void *userdata);
typedef struct {
    const uint8_t *model;
} kpu_model_context_t;
int kpu_load_kmodel(kpu_model_context_t *ctx, const uint8_t *buffer);
int kpu_run_kmodel(kpu_model_context_t *ctx, const uint8_t *src, dmac_channel_number_t dma_ch,
                   kpu_done_callback_t done_callback, void *userdata);
int kpu_get_output(kpu_model_context_t *ctx, uint32_t index, uint8_t **data, size_t *size);
#endif
