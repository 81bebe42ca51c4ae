/* The rt_ai runtime the generated code runs on: ours (rt_ai.c, the default) or RT-AK's own rt_ai_lib
 * (firmware.rt_ai: rtak; the build then defines RT_AI_USE_RTAK in the BSP's rtconfig.h and leaves our rt_ai.c/.h
 * out, so "rt_ai.h" is RT-AK's). The backends and the app use the names below, which both runtimes then give. */
#ifndef RT_AI_PORT_H
#define RT_AI_PORT_H

#include <rtthread.h>

#include "rt_ai.h"

/* What a backend provides; a backend constructor hands it to rt_ai_plug_backend. */
struct rt_ai_backend_ops {
    int (*init)(rt_ai_t ai, rt_ai_buffer_t *buf);
    int (*run)(rt_ai_t ai, void (*callback)(void *arg), void *arg);
    int (*get_output)(rt_ai_t ai, rt_uint32_t index);
    int (*config)(rt_ai_t ai, int cmd, rt_ai_buffer_t *arg);
    rt_uint32_t mem_flag;
};
void rt_ai_plug_backend(rt_ai_t ai, const struct rt_ai_backend_ops *ops);

#ifdef RT_AI_USE_RTAK
/* RT-AK keeps the name in its core object and no output sizes; the backend functions are fields of struct rt_ai. */
#define RT_AI_NAME(ai) ((ai)->parent.name)
#define RT_AI_KEEP_OUTPUT_SIZE(ai, index, size) ((void)(ai), (void)(index), (void)(size))
/* Bytes of output `index`: what the generated header declared (the backends check it against the kmodel). */
rt_uint32_t rt_ai_output_size(rt_ai_t ai, rt_uint32_t index);
#else
#define RT_AI_NAME(ai) ((ai)->name)
#define RT_AI_KEEP_OUTPUT_SIZE(ai, index, size) ((ai)->output_size[index] = (size))
#endif

#endif
