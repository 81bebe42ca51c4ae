/* rt_ai backend on the K210's KPU through the Kendryte SDK (kpu_load_kmodel / kpu_run_kmodel).
 * Compiled only inside an RT-Thread bsp/k210 tree with the K210 SDK package (RT_AI_USE_K210). */
#ifndef BACKEND_K210_KPU_H
#define BACKEND_K210_KPU_H

#include <rtthread.h>

#ifdef RT_AI_USE_K210
#include <dmac.h>
#include <kpu.h>

#include "rt_ai_port.h"

struct k210_kpu {
    struct rt_ai parent;
    kpu_model_context_t task;
    const rt_uint8_t *model;  /* 256-byte aligned kmodel in SRAM, or NULL to read it from flash at init */
    rt_uint32_t flash_offset; /* where the kmodel is stored when model is NULL */
    rt_uint32_t model_size;   /* its bytes (flash storage only) */
    /* DMA channel of the run in flight: taken from bsp/k210's dmalock for each run, released when it ends or fails
     * (a value set here beforehand is overwritten). */
    dmac_channel_number_t dmac;
    void (*done)(void *arg);
    void *done_arg;
};

/* Backend constructor for rt_ai_register: arg is the struct k210_kpu. */
int backend_k210_kpu(void *arg);
#endif

#endif
