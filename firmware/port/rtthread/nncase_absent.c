/* The K210 SDK's kpu.c hands kmodels other than V3 to nncase's C++ runtime (nncase_*). That runtime needs a C++
 * library, which Debian's picolibc toolchain lacks, so the adapted build copy leaves it out and these answer
 * instead: a V4/V5 kmodel is refused with a message; V3 kmodels (what our compiler writes) never get here. */
#include <rtthread.h>

#include <kpu.h>
#include <nncase.h>

static int nncase_absent(const char *what)
{
    rt_kprintf("kpu: %s: this build has no nncase runtime (kmodel V4/V5); only kmodel V3 runs\n", what);
    return -1;
}

int nncase_load_kmodel(kpu_model_context_t *ctx, const uint8_t *buffer)
{
    (void)ctx, (void)buffer;
    return nncase_absent("load");
}

int nncase_get_output(kpu_model_context_t *ctx, uint32_t index, uint8_t **data, size_t *size)
{
    (void)ctx, (void)index, (void)data, (void)size;
    return nncase_absent("get output");
}

void nncase_model_free(kpu_model_context_t *ctx)
{
    (void)ctx;
}

int nncase_run_kmodel(kpu_model_context_t *ctx, const uint8_t *src, dmac_channel_number_t dma_ch,
                      kpu_done_callback_t done_callback, void *userdata)
{
    (void)ctx, (void)src, (void)dma_ch, (void)done_callback, (void)userdata;
    return nncase_absent("run");
}
