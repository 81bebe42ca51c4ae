/* What every generated application does with its model: find the registered model once, give it its input buffer
 * and a completion semaphore, run it and wait; and the cost of one frame (wall time and, where the target counts
 * them, instructions). The generated <name>_app.c fills one struct app_model from its model header
 * (rt_ai_<name>_model.h). */
#ifndef APP_MODEL_H
#define APP_MODEL_H

#include <rtthread.h>
#include <stdint.h>

#include "rt_ai_port.h"

/* How many characters of the model name its completion semaphore is given (RT-Thread names are short). */
#define APP_MODEL_SEM_NAME_CHARS 7

struct app_model {
    const char *name;      /* RT_AI_<NAME>_MODEL_NAME: the registered name, also the prefix of its console messages */
    rt_size_t input_bytes; /* RT_AI_<NAME>_IN_1_SIZE_BYTES */
    rt_uint32_t outputs;   /* RT_AI_<NAME>_OUT_NUM */
    rt_ai_t model;         /* RT_NULL until app_model_setup succeeds */
    rt_uint8_t *input;     /* the model input (input_bytes), filled before each run */
    struct rt_semaphore done;
};

/* One-time set-up: find the model, give it its input buffer, create the completion semaphore. 0, or -1 (with a
 * console message) when the model is not registered or cannot be initialised. */
int app_model_setup(struct app_model *app);
/* Run the model on app->input and wait for it: 0, or -1. */
int app_model_run(struct app_model *app);
/* Output `index` of the last run (RT_NULL when there is none). */
const void *app_model_output(const struct app_model *app, rt_uint32_t index);
/* The raw output tensors as hex lines after a frame, when the test harness asks for them. */
void app_model_dump(const struct app_model *app, int frame);

/* The measurement of one frame: wall time and, where the target counts them, instructions. */
struct app_cost {
    rt_tick_t start;
    rt_tick_t ticks;
    int counted;
    uint64_t insn_start, instructions;
};

void app_cost_start(struct app_cost *cost);
void app_cost_stop(struct app_cost *cost);
/* The measured wall time in milliseconds. */
unsigned long long app_cost_ms(const struct app_cost *cost);

#endif
