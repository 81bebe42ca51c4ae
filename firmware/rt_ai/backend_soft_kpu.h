/* rt_ai backend that runs a kmodel V3 on the software KPU (host and QEMU targets; no KPU hardware). */
#ifndef BACKEND_SOFT_KPU_H
#define BACKEND_SOFT_KPU_H

#include "kmodel_v3.h"
#include "rt_ai_port.h"

struct soft_kpu {
    struct rt_ai parent;
    const rt_uint8_t *model;   /* embedded kmodel, or NULL to read it from flash at init */
    rt_uint32_t flash_offset;  /* where the kmodel is stored when model is NULL */
    rt_uint32_t model_size;
    struct kmodel km;
    void *work;
};

/* Backend constructor for rt_ai_register: arg is the struct soft_kpu. */
int backend_soft_kpu(void *arg);

#endif
