/* rt_ai backend on the K210 KPU. rt_ai_init's buffer is the model input (the camera's planar RGB888 AI frame);
 * rt_ai_run takes a DMA channel from bsp/k210's dmalock, returns at once, and the SDK calls the done callback from
 * the KPU/DMA interrupt, where the channel goes back to dmalock before the caller's callback runs. */
#include <rtthread.h>

#ifdef RT_AI_USE_K210
#include <stdint.h>

#include "backend_k210_kpu.h"
#include "dmalock.h"
#include "rt_port_board.h"

#define K210_KPU_DMA_WAIT_MS 1000 /* longest wait for a free DMA channel before a run fails */

static struct k210_kpu *k210(rt_ai_t ai)
{
    return (struct k210_kpu *)ai;
}

static const rt_uint8_t *k210_model(rt_ai_t ai)
{
    struct k210_kpu *k = k210(ai);
    const rt_uint8_t *model = k->model;
    if (model == RT_NULL) {
        model = rt_port_flash_map(k->flash_offset, k->model_size);
        if (model == RT_NULL)
            rt_kprintf("rt_ai %s: no kmodel of %lu bytes in flash at 0x%lx\n", RT_AI_NAME(ai), (unsigned long)k->model_size,
                       (unsigned long)k->flash_offset);
    }
    return model;
}

static int k210_init(rt_ai_t ai, rt_ai_buffer_t *buf)
{
    struct k210_kpu *k = k210(ai);
    const rt_uint8_t *model = k210_model(ai);
    if (model == RT_NULL)
        return -1;
    if ((uintptr_t)model % 256u != 0) {
        rt_kprintf("rt_ai %s: kmodel is not 256-byte aligned\n", RT_AI_NAME(ai));
        return -1;
    }
    if (kpu_load_kmodel(&k->task, model) != 0) {
        rt_kprintf("rt_ai %s: kpu_load_kmodel refused the model\n", RT_AI_NAME(ai));
        return -1;
    }
    k->dmac = DMAC_CHANNEL_MAX;
    ai->input[0] = buf;
    ai->flag |= RT_AI_FLAG_LOADED;
    return 0;
}

/* KPU done (interrupt context): give the channel back, then tell the caller. */
static void k210_done(void *arg)
{
    struct k210_kpu *k = arg;
    dmalock_release(k->dmac);
    k->dmac = DMAC_CHANNEL_MAX;
    k->done(k->done_arg);
}

static int k210_run(rt_ai_t ai, void (*callback)(void *arg), void *arg)
{
    struct k210_kpu *k = k210(ai);
    /* dmalock hands its timeout to rt_sem_take, which counts ticks */
    if (dmalock_sync_take(&k->dmac, (int)rt_tick_from_millisecond(K210_KPU_DMA_WAIT_MS)) != RT_EOK ||
        k->dmac >= DMAC_CHANNEL_MAX) {
        rt_kprintf("rt_ai %s: no free DMA channel within %d ms (msh: dma_ch_info)\n", RT_AI_NAME(ai), K210_KPU_DMA_WAIT_MS);
        k->dmac = DMAC_CHANNEL_MAX;
        return -1;
    }
    k->done = callback;
    k->done_arg = arg;
    if (kpu_run_kmodel(&k->task, ai->input[0], k->dmac, k210_done, k) != 0) {
        rt_kprintf("rt_ai %s: kpu_run_kmodel failed\n", RT_AI_NAME(ai));
        dmalock_release(k->dmac);
        k->dmac = DMAC_CHANNEL_MAX;
        return -1;
    }
    return 0;
}

static int k210_get_output(rt_ai_t ai, rt_uint32_t index)
{
    uint8_t *data = RT_NULL;
    size_t size = 0;
    if (kpu_get_output(&k210(ai)->task, index, &data, &size) != 0)
        return -1;
    ai->output[index] = data;
    RT_AI_KEEP_OUTPUT_SIZE(ai, index, (rt_uint32_t)size);
    return 0;
}

static int k210_config(rt_ai_t ai, int cmd, rt_ai_buffer_t *arg)
{
    (void)arg;
    if (cmd == RT_AI_CFG_DMAC)
        rt_kprintf("rt_ai %s: the KPU's DMA channel comes from dmalock for each run; not settable\n", RT_AI_NAME(ai));
    return -1;
}

static const struct rt_ai_backend_ops k210_ops = {k210_init, k210_run, k210_get_output, k210_config,
                                                   ALLOC_INPUT_BUFFER_FLAG};

int backend_k210_kpu(void *arg)
{
    rt_ai_plug_backend(&((struct k210_kpu *)arg)->parent, &k210_ops);
    return 0;
}
#endif
