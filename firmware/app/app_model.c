/* A generated application's model: set-up, run, outputs, frame cost; see app_model.h. */
#include "app_model.h"

#include <string.h>

#include "output_dump.h"
#include "rt_port_board.h"

static void app_model_done(void *arg)
{
    rt_sem_release((rt_sem_t)arg);
}

int app_model_setup(struct app_model *app)
{
    char sem_name[APP_MODEL_SEM_NAME_CHARS + 1];
    if (app->model != RT_NULL)
        return 0;
    app->model = rt_ai_find(app->name);
    if (app->model == RT_NULL) {
        rt_kprintf("%s: model not registered\n", app->name);
        return -1;
    }
    app->input = rt_malloc(app->input_bytes);
    if (app->input == RT_NULL || rt_ai_init(app->model, app->input) != RT_EOK) {
        rt_kprintf("%s: rt_ai_init failed\n", app->name);
        app->model = RT_NULL;
        return -1;
    }
    strncpy(sem_name, app->name, APP_MODEL_SEM_NAME_CHARS);
    sem_name[APP_MODEL_SEM_NAME_CHARS] = '\0';
    rt_sem_init(&app->done, sem_name, 0, RT_IPC_FLAG_FIFO);
    return 0;
}

int app_model_run(struct app_model *app)
{
    if (rt_ai_run(app->model, app_model_done, &app->done) != RT_EOK ||
        rt_sem_take(&app->done, RT_WAITING_FOREVER) != RT_EOK)
        return -1;
    return 0;
}

const void *app_model_output(const struct app_model *app, rt_uint32_t index)
{
    return rt_ai_output(app->model, index);
}

void app_model_dump(const struct app_model *app, int frame)
{
    if (rt_port_dump_outputs())
        output_dump(app->model, app->outputs, frame);
}

void app_cost_start(struct app_cost *cost)
{
    cost->insn_start = 0;
    cost->instructions = 0;
    cost->start = rt_tick_get();
    cost->counted = rt_port_instructions(&cost->insn_start);
}

void app_cost_stop(struct app_cost *cost)
{
    uint64_t insn_end = 0;
    cost->counted = cost->counted && rt_port_instructions(&insn_end);
    cost->instructions = insn_end - cost->insn_start;
    cost->ticks = rt_tick_get() - cost->start;
}

unsigned long long app_cost_ms(const struct app_cost *cost)
{
    return (unsigned long long)cost->ticks * 1000u / RT_TICK_PER_SECOND;
}
