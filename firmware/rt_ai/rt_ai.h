/* RT-AK style model API (rt_ai_lib subset): register a model under a name, find it, initialise it on an
 * input buffer, run it with a done callback, read its outputs. Backends fill the function pointers. */
#ifndef RT_AI_H
#define RT_AI_H

#include <rtthread.h>

#define RT_AI_NAME_MAX 16
#define RT_AI_IO_MAX 10

#define RT_AI_OK 0
#define RT_AI_ERROR 1
#define RT_AI_EREADY 2
#define RT_AI_EBUSY 3
#define RT_AI_NONE 4
#define RT_AI_EEMPTY 5

#define RT_AI_FLAG_INITED 0x01
#define RT_AI_FLAG_LOADED 0x02
#define RT_AI_FLAG_RUN 0x04
#define RT_AI_FLAG_OUTPUT 0x08

#define ALLOC_WORK_BUFFER_FLAG 0x01
#define ALLOC_INPUT_BUFFER_FLAG 0x02
#define ALLOC_OUTPUT_BUFFER_FLAG 0x04

#define RT_AI_CFG_DEFAULT 0
#define RT_AI_CFG_DMAC 1
#define RT_AI_CFG_CRC 2
#define RT_AI_CFG_KPU 3

typedef rt_uint8_t rt_ai_buffer_t;
typedef struct rt_ai *rt_ai_t;

struct rt_ai_info {
    rt_uint32_t input_n;
    rt_uint32_t output_n;
    rt_uint32_t input_n_stack[RT_AI_IO_MAX];  /* bytes of each input */
    rt_uint32_t output_n_stack[RT_AI_IO_MAX]; /* bytes of each output */
    rt_uint32_t work_buffer_size;
    rt_uint32_t flag;
};

struct rt_ai {
    char name[RT_AI_NAME_MAX + 1]; /* always NUL-terminated */
    rt_uint32_t flag;
    rt_uint32_t mem_flag;
    rt_ai_buffer_t *workbuffer;
    rt_ai_buffer_t *input[RT_AI_IO_MAX];
    rt_ai_buffer_t *output[RT_AI_IO_MAX];
    rt_uint32_t output_size[RT_AI_IO_MAX];
    struct rt_ai_info info;
    int (*init)(rt_ai_t ai, rt_ai_buffer_t *buf);
    int (*run)(rt_ai_t ai, void (*callback)(void *arg), void *arg);
    int (*get_output)(rt_ai_t ai, rt_uint32_t index);
    int (*config)(rt_ai_t ai, int cmd, rt_ai_buffer_t *arg);
    void (*done_callback_user)(void *arg);
    void *arg;
    rt_ai_t next;
};

#define RT_AI_T(h) ((rt_ai_t)(h))

rt_err_t rt_ai_register(rt_ai_t ai, const char *name, rt_uint16_t flags, int (*call)(void *arg), void *arg);
rt_ai_t rt_ai_find(const char *name);
rt_err_t rt_ai_init(rt_ai_t ai, rt_ai_buffer_t *work_buf);
rt_err_t rt_ai_run(rt_ai_t ai, void (*callback)(void *arg), void *arg);
rt_ai_buffer_t *rt_ai_output(rt_ai_t ai, rt_uint32_t index);
/* Bytes of output `index` after a run (0 before). */
rt_uint32_t rt_ai_output_size(rt_ai_t ai, rt_uint32_t index);
rt_err_t rt_ai_config(rt_ai_t ai, int cmd, rt_ai_buffer_t *arg);

#endif
