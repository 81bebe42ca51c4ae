/* RT-AK style model registry and call-through to the backend. */
#include "rt_ai_port.h"

#include <string.h>

static rt_ai_t registry;

rt_err_t rt_ai_register(rt_ai_t ai, const char *name, rt_uint16_t flags, int (*call)(void *arg), void *arg)
{
    (void)flags;
    if (ai == RT_NULL || name == RT_NULL || strlen(name) > RT_AI_NAME_MAX || call == RT_NULL) {
        rt_kprintf("rt_ai: refused to register a model without a name of 1..%d characters\n", RT_AI_NAME_MAX);
        return -RT_ERROR;
    }
    if (rt_ai_find(name) != RT_NULL) {
        rt_kprintf("rt_ai: a model named '%s' is already registered\n", name);
        return -RT_ERROR;
    }
    if (call(arg) != 0)
        return -RT_ERROR;
    memset(ai->name, 0, sizeof(ai->name));
    memcpy(ai->name, name, strlen(name));
    ai->next = registry;
    registry = ai;
    return RT_EOK;
}

void rt_ai_plug_backend(rt_ai_t ai, const struct rt_ai_backend_ops *ops)
{
    ai->init = ops->init;
    ai->run = ops->run;
    ai->get_output = ops->get_output;
    ai->config = ops->config;
    ai->mem_flag = ops->mem_flag;
}

rt_ai_t rt_ai_find(const char *name)
{
    rt_ai_t ai;
    for (ai = registry; ai != RT_NULL; ai = ai->next)
        if (strcmp(ai->name, name) == 0)
            return ai;
    return RT_NULL;
}

rt_err_t rt_ai_init(rt_ai_t ai, rt_ai_buffer_t *work_buf)
{
    if (ai == RT_NULL || ai->init == RT_NULL)
        return -RT_ERROR;
    ai->flag = 0;
    ai->workbuffer = work_buf;
    if (ai->init(ai, work_buf) != 0)
        return -RT_ERROR;
    ai->flag |= RT_AI_FLAG_INITED;
    return RT_EOK;
}

static void run_done(void *arg)
{
    rt_ai_t ai = (rt_ai_t)arg;
    ai->flag |= RT_AI_FLAG_OUTPUT;
    if (ai->done_callback_user != RT_NULL)
        ai->done_callback_user(ai->arg);
}

rt_err_t rt_ai_run(rt_ai_t ai, void (*callback)(void *arg), void *arg)
{
    if (ai == RT_NULL || !(ai->flag & RT_AI_FLAG_INITED))
        return -RT_ERROR;
    ai->done_callback_user = callback;
    ai->arg = arg;
    ai->flag = (ai->flag | RT_AI_FLAG_RUN) & ~(rt_uint32_t)RT_AI_FLAG_OUTPUT;
    return ai->run(ai, run_done, ai) == 0 ? RT_EOK : -RT_ERROR;
}

rt_ai_buffer_t *rt_ai_output(rt_ai_t ai, rt_uint32_t index)
{
    if (ai == RT_NULL || !(ai->flag & RT_AI_FLAG_INITED) || !(ai->flag & RT_AI_FLAG_RUN) ||
        index >= ai->info.output_n || ai->get_output(ai, index) != 0)
        return RT_NULL;
    return ai->output[index];
}

rt_uint32_t rt_ai_output_size(rt_ai_t ai, rt_uint32_t index)
{
    return rt_ai_output(ai, index) == RT_NULL ? 0 : ai->output_size[index];
}

rt_err_t rt_ai_config(rt_ai_t ai, int cmd, rt_ai_buffer_t *arg)
{
    if (ai == RT_NULL || ai->config == RT_NULL)
        return -RT_ERROR;
    return ai->config(ai, cmd, arg) == 0 ? RT_EOK : -RT_ERROR;
}
