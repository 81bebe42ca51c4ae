/* Host tool: run a kmodel V3 on the software KPU, without the application around it.
 *
 *   kmodel_run MODEL INPUT OUT_PREFIX [REPEAT]
 *
 * INPUT holds the raw model input (u8 CHW, or f32 for a FULLY_CONNECTED first layer). Writes OUT_PREFIX.<i>.bin for
 * every output and prints {"runs":..,"ms_per_run":..,"work_bytes":..} on stdout (ms of process CPU time, which a
 * busy machine disturbs less than wall time). Errors go to stderr, exit 2. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "kmodel_format.h"
#include "kmodel_v3.h"

static uint8_t *read_all(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    uint8_t *data = NULL;
    long n;
    if (f != NULL && fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        /* round up: aligned_alloc needs a multiple of the alignment */
        data = aligned_alloc(KMODEL_MODEL_ALIGNMENT, ((size_t)n / KMODEL_MODEL_ALIGNMENT + 1) * KMODEL_MODEL_ALIGNMENT);
        if (data != NULL && fread(data, 1, (size_t)n, f) != (size_t)n) {
            free(data);
            data = NULL;
        }
        *size = (size_t)n;
    }
    if (f != NULL)
        fclose(f);
    return data;
}

static int fail(const char *what, const char *detail)
{
    fprintf(stderr, "error: %s: %s\n", what, detail);
    return 2;
}

static double cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
    struct kmodel m;
    char text[200], name[4096];
    size_t model_size, input_size;
    uint8_t *model, *input, *kpu_ram;
    void *work;
    int repeat = argc > 4 ? atoi(argv[4]) : 1, r;
    uint32_t i;
    double start;
    if (argc < 4 || repeat < 1)
        return fail("usage", "kmodel_run MODEL INPUT OUT_PREFIX [REPEAT]");
    if ((model = read_all(argv[1], &model_size)) == NULL)
        return fail("cannot read kmodel", argv[1]);
    if ((input = read_all(argv[2], &input_size)) == NULL)
        return fail("cannot read input", argv[2]);
    if (kmodel_parse(&m, model, (uint32_t)model_size) != KM_OK) {
        kmodel_describe_error(&m, text, sizeof(text));
        return fail(argv[1], text);
    }
    if (input_size != m.input_bytes) {
        snprintf(text, sizeof(text), "%lu bytes, the model takes %lu", (unsigned long)input_size,
                 (unsigned long)m.input_bytes);
        return fail(argv[2], text);
    }
    kpu_ram = calloc(1, KPU_RAM_BYTES); /* zeroed like the simulator's KPU RAM */
    work = malloc(kmodel_work_bytes(&m));
    if (kpu_ram == NULL || work == NULL || kmodel_attach(&m, kpu_ram, work) != KM_OK)
        return fail("out of memory", argv[1]);
    start = cpu_ms();
    for (r = 0; r < repeat; r++)
        if (kmodel_run(&m, input) != KM_OK) {
            kmodel_describe_error(&m, text, sizeof(text));
            return fail(argv[1], text);
        }
    printf("{\"runs\":%d,\"ms_per_run\":%.3f,\"work_bytes\":%lu}\n", repeat, (cpu_ms() - start) / repeat,
           (unsigned long)kmodel_work_bytes(&m));
    for (i = 0; i < m.output_count; i++) {
        const uint8_t *data;
        uint32_t size;
        FILE *f;
        kmodel_output(&m, i, &data, &size);
        snprintf(name, sizeof(name), "%s.%lu.bin", argv[3], (unsigned long)i);
        if ((f = fopen(name, "wb")) == NULL || fwrite(data, 1, size, f) != size)
            return fail("cannot write output", name);
        fclose(f);
    }
    return 0;
}
