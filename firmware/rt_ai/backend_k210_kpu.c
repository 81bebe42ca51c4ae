/* rt_ai backend on the K210 KPU. rt_ai_init's buffer is the model input (the camera's planar RGB888 AI frame);
 * rt_ai_run returns at once and the SDK calls the done callback from the KPU/DMA interrupt. */
#ifdef RT_AI_USE_K210
#include "backend_k210_kpu.h"

#include <stdint.h>

static struct k210_kpu *k210(rt_ai_t ai)
{
    return (struct k210_kpu *)ai;
}

static int k210_init(rt_ai_t ai, rt_ai_buffer_t *buf)
{
    struct k210_kpu *k = k210(ai);
    if ((uintptr_t)k->model % 256u != 0) {
        rt_kprintf("rt_ai %s: kmodel is not 256-byte aligned\n", ai->name);
        return -1;
    }
    if (kpu_load_kmodel(&k->task, k->model) != 0) {
        rt_kprintf("rt_ai %s: kpu_load_kmodel refused the model\n", ai->name);
        return -1;
    }
    ai->input[0] = buf;
    ai->flag |= RT_AI_FLAG_LOADED;
    return 0;
}

static int k210_run(rt_ai_t ai, void (*callback)(void *arg), void *arg)
{
    struct k210_kpu *k = k210(ai);
    return kpu_run_kmodel(&k->task, ai->input[0], k->dmac, (kpu_done_callback_t)callback, arg) == 0 ? 0 : -1;
}

static int k210_get_output(rt_ai_t ai, rt_uint32_t index)
{
    uint8_t *data = RT_NULL;
    size_t size = 0;
    if (kpu_get_output(&k210(ai)->task, index, &data, &size) != 0)
        return -1;
    ai->output[index] = data;
    ai->output_size[index] = (rt_uint32_t)size;
    return 0;
}

static int k210_config(rt_ai_t ai, int cmd, rt_ai_buffer_t *arg)
{
    if (cmd != RT_AI_CFG_DMAC || arg == RT_NULL)
        return -1;
    k210(ai)->dmac = (dmac_channel_number_t)arg[0];
    return 0;
}

static const struct rt_ai_backend_ops k210_ops = {k210_init, k210_run, k210_get_output, k210_config,
                                                   ALLOC_INPUT_BUFFER_FLAG};

int backend_k210_kpu(void *arg)
{
    rt_ai_plug_backend(&((struct k210_kpu *)arg)->parent, &k210_ops);
    return 0;
}
#endif
