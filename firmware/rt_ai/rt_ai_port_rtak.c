/* What rt_ai_port.h promises on top of RT-AK's rt_ai_lib (built only with firmware.rt_ai: rtak). */
#include "rt_ai_port.h"

#ifdef RT_AI_USE_RTAK
void rt_ai_plug_backend(rt_ai_t ai, const struct rt_ai_backend_ops *ops)
{
    ai->init = ops->init;
    ai->run = ops->run;
    ai->get_output = ops->get_output;
    ai->config = ops->config;
    ai->mem_flag = (rt_ai_uint16_t)ops->mem_flag;
}

rt_uint32_t rt_ai_output_size(rt_ai_t ai, rt_uint32_t index)
{
    return index < ai->info.output_n ? ai->info.output_n_stack[index] : 0;
}
#endif
