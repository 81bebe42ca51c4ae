/* rt_ai backend on the software KPU: init parses and checks the kmodel and takes its working memory once;
 * run executes every layer and then calls the done callback (at once: there is no interrupt to wait for). */
#include "backend_soft_kpu.h"

#include <stdint.h>

#include "kmodel_format.h"
#include "rt_port_board.h"

#define SOFT_KPU_ERROR_TEXT 160

static struct soft_kpu *soft(rt_ai_t ai)
{
    return (struct soft_kpu *)ai;
}

static int report(const struct soft_kpu *s)
{
    char text[SOFT_KPU_ERROR_TEXT];
    kmodel_describe_error(&s->km, text, sizeof(text));
    rt_kprintf("rt_ai %s: %s\n", RT_AI_NAME(&s->parent), text);
    return -1;
}

/* The sizes the generated header promises must be the ones the kmodel declares. */
static int check_sizes(const struct soft_kpu *s)
{
    const struct rt_ai_info *info = &s->parent.info;
    rt_uint32_t i;
    if (info->input_n != 1 || info->input_n_stack[0] != s->km.input_bytes) {
        rt_kprintf("rt_ai %s: the kmodel input is %lu bytes, the generated header says %lu\n", RT_AI_NAME(&s->parent),
                   (unsigned long)s->km.input_bytes, (unsigned long)info->input_n_stack[0]);
        return -1;
    }
    if (info->output_n != s->km.output_count) {
        rt_kprintf("rt_ai %s: the kmodel has %lu outputs, the generated header says %lu\n", RT_AI_NAME(&s->parent),
                   (unsigned long)s->km.output_count, (unsigned long)info->output_n);
        return -1;
    }
    for (i = 0; i < info->output_n; i++)
        if (kmodel_output_size(&s->km, i) != info->output_n_stack[i]) {
            rt_kprintf("rt_ai %s: kmodel output %lu is %lu bytes, the generated header says %lu\n", RT_AI_NAME(&s->parent),
                       (unsigned long)i, (unsigned long)kmodel_output_size(&s->km, i),
                       (unsigned long)info->output_n_stack[i]);
            return -1;
        }
    return 0;
}

static int soft_init(rt_ai_t ai, rt_ai_buffer_t *buf)
{
    struct soft_kpu *s = soft(ai);
    const rt_uint8_t *model = s->model;
    if (model == RT_NULL)
        model = rt_port_flash_map(s->flash_offset, s->model_size);
    if (model == RT_NULL) {
        rt_kprintf("rt_ai %s: no kmodel of %lu bytes in flash at 0x%lx\n", RT_AI_NAME(ai), (unsigned long)s->model_size,
                   (unsigned long)s->flash_offset);
        return -1;
    }
    if ((uintptr_t)model % KMODEL_MODEL_ALIGNMENT != 0) {
        rt_kprintf("rt_ai %s: kmodel at %p is not %u-byte aligned\n", RT_AI_NAME(ai), (const void *)model,
                   KMODEL_MODEL_ALIGNMENT);
        return -1;
    }
    if (kmodel_parse(&s->km, model, s->model_size) != KM_OK)
        return report(s);
    if (check_sizes(s) != 0)
        return -1;
    if (s->work != RT_NULL)
        rt_free_align(s->work);
    s->work = rt_malloc_align((rt_size_t)kmodel_work_bytes(&s->km), 8);
    if (s->work == RT_NULL) {
        rt_kprintf("rt_ai %s: out of memory for %lu bytes of working memory\n", RT_AI_NAME(ai),
                   (unsigned long)kmodel_work_bytes(&s->km));
        return -1;
    }
    if (kmodel_attach(&s->km, rt_port_kpu_ram(), s->work) != KM_OK)
        return report(s);
    ai->input[0] = buf;
    ai->flag |= RT_AI_FLAG_LOADED;
    return 0;
}

static int soft_run(rt_ai_t ai, void (*callback)(void *arg), void *arg)
{
    struct soft_kpu *s = soft(ai);
    if (kmodel_run(&s->km, ai->input[0]) != KM_OK)
        return report(s);
    callback(arg);
    return 0;
}

static int soft_get_output(rt_ai_t ai, rt_uint32_t index)
{
    const rt_uint8_t *data;
    rt_uint32_t size;
    if (kmodel_output(&soft(ai)->km, index, &data, &size) != KM_OK)
        return -1;
    ai->output[index] = (rt_ai_buffer_t *)(uintptr_t)data;
    RT_AI_KEEP_OUTPUT_SIZE(ai, index, size);
    return 0;
}

static int soft_config(rt_ai_t ai, int cmd, rt_ai_buffer_t *arg)
{
    (void)arg;
    rt_kprintf("rt_ai %s: config command %d has no meaning on the software KPU\n", RT_AI_NAME(ai), cmd);
    return -1;
}

static const struct rt_ai_backend_ops soft_ops = {soft_init, soft_run, soft_get_output, soft_config,
                                                   ALLOC_INPUT_BUFFER_FLAG};

int backend_soft_kpu(void *arg)
{
    struct soft_kpu *s = (struct soft_kpu *)arg;
    rt_ai_plug_backend(&s->parent, &soft_ops);
    s->work = RT_NULL;
    return 0;
}
