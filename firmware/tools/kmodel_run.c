/* Host tool: run a kmodel V3 on the software KPU, without the application around it.
 *
 *   kmodel_run MODEL INPUT OUT_PREFIX [REPEAT]
 *   kmodel_run --batch MODEL INPUTS OUT_PREFIX
 *
 * INPUT holds the raw model input (u8 CHW, or f32 for a FULLY_CONNECTED first layer). Writes OUT_PREFIX.<i>.bin for
 * every output. With --batch, INPUTS holds N >= 1 such inputs back to back (its size a multiple of the input size);
 * they run one after the other in this process and OUT_PREFIX.<i>.bin gets output i of every input, back to back,
 * in input order. Prints {"runs":..,"ms_per_run":..,"work_bytes":..} on stdout (ms of process CPU time, which a
 * busy machine disturbs less than wall time). Errors go to stderr, exit 2. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kmodel_format.h"
#include "kmodel_v3.h"

#define USAGE "kmodel_run MODEL INPUT OUT_PREFIX [REPEAT] | kmodel_run --batch MODEL INPUTS OUT_PREFIX"

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

static long file_size(const char *path)
{
    FILE *f = fopen(path, "rb");
    long n = -1;
    if (f != NULL && fseek(f, 0, SEEK_END) == 0)
        n = ftell(f);
    if (f != NULL)
        fclose(f);
    return n;
}

static int fail(const char *what, const char *detail)
{
    fprintf(stderr, "error: %s: %s\n", what, detail);
    return 2;
}

static int fail_model(const struct kmodel *m, const char *path)
{
    char text[200];
    kmodel_describe_error(m, text, sizeof(text));
    return fail(path, text);
}

static double cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void output_name(char *name, size_t name_size, const char *prefix, uint32_t index)
{
    snprintf(name, name_size, "%s.%lu.bin", prefix, (unsigned long)index);
}

static int input_size_error(const char *path, long size, uint32_t input_bytes, const char *what)
{
    char text[200];
    snprintf(text, sizeof(text), "%ld bytes, the model takes %s%lu", size, what, (unsigned long)input_bytes);
    return fail(path, text);
}

static void print_summary(const struct kmodel *m, long runs, double ms)
{
    printf("{\"runs\":%ld,\"ms_per_run\":%.3f,\"work_bytes\":%lu}\n", runs, ms / (double)runs,
           (unsigned long)kmodel_work_bytes(m));
}

/* One input, run `repeat` times; each output to its own file. */
static int run_single(struct kmodel *m, const char *model_path, const char *input_path, const char *prefix,
                      int repeat)
{
    char name[4096];
    size_t input_size;
    uint8_t *input = read_all(input_path, &input_size);
    uint32_t i;
    int r;
    double start;
    if (input == NULL)
        return fail("cannot read input", input_path);
    if (input_size != m->input_bytes)
        return input_size_error(input_path, (long)input_size, m->input_bytes, "");
    start = cpu_ms();
    for (r = 0; r < repeat; r++)
        if (kmodel_run(m, input) != KM_OK)
            return fail_model(m, model_path);
    print_summary(m, repeat, cpu_ms() - start);
    for (i = 0; i < m->output_count; i++) {
        const uint8_t *data;
        uint32_t size;
        FILE *f;
        kmodel_output(m, i, &data, &size);
        output_name(name, sizeof(name), prefix, i);
        if ((f = fopen(name, "wb")) == NULL || fwrite(data, 1, size, f) != size || fclose(f) != 0)
            return fail("cannot write output", name);
    }
    free(input);
    return 0;
}

/* Zeroed KPU RAM and main buffer, as a fresh process (and the simulator) starts each input with. */
static void fresh_state(struct kmodel *m)
{
    memset(m->kpu_ram, 0, KPU_RAM_BYTES);
    kmodel_attach(m, m->kpu_ram, m->main); /* zeroes the main buffer */
}

/* N inputs streamed from one file, one input in memory at a time, each from a fresh state; output i of every input
 * appended to file i. */
static int run_batch(struct kmodel *m, const char *model_path, const char *inputs_path, const char *prefix)
{
    FILE *in, *out[KMODEL_MAX_OUTPUTS];
    char name[4096];
    long size = file_size(inputs_path), n, runs;
    uint8_t *input;
    uint32_t i;
    double ms = 0.0, start;
    if (size < 0 || (in = fopen(inputs_path, "rb")) == NULL)
        return fail("cannot read inputs", inputs_path);
    if (size == 0 || size % (long)m->input_bytes != 0)
        return input_size_error(inputs_path, size, m->input_bytes, "N >= 1 inputs of ");
    runs = size / (long)m->input_bytes;
    if ((input = aligned_alloc(8, ((size_t)m->input_bytes + 7u) / 8u * 8u)) == NULL)
        return fail("out of memory", inputs_path);
    for (i = 0; i < m->output_count; i++) {
        output_name(name, sizeof(name), prefix, i);
        if ((out[i] = fopen(name, "wb")) == NULL)
            return fail("cannot write output", name);
    }
    for (n = 0; n < runs; n++) {
        if (fread(input, 1, m->input_bytes, in) != m->input_bytes)
            return fail("cannot read inputs", inputs_path);
        start = cpu_ms();
        fresh_state(m);
        if (kmodel_run(m, input) != KM_OK)
            return fail_model(m, model_path);
        ms += cpu_ms() - start;
        for (i = 0; i < m->output_count; i++) {
            const uint8_t *data;
            uint32_t bytes;
            kmodel_output(m, i, &data, &bytes);
            if (fwrite(data, 1, bytes, out[i]) != bytes) {
                output_name(name, sizeof(name), prefix, i);
                return fail("cannot write output", name);
            }
        }
    }
    for (i = 0; i < m->output_count; i++)
        if (fclose(out[i]) != 0) {
            output_name(name, sizeof(name), prefix, i);
            return fail("cannot write output", name);
        }
    fclose(in);
    free(input);
    print_summary(m, runs, ms);
    return 0;
}

int main(int argc, char **argv)
{
    struct kmodel m;
    size_t model_size;
    uint8_t *model, *kpu_ram;
    void *work;
    int batch = argc > 1 && strcmp(argv[1], "--batch") == 0;
    char **args = argv + batch; /* args[1] MODEL, args[2] INPUT(S), args[3] OUT_PREFIX, args[4] REPEAT */
    int count = argc - batch, repeat = !batch && count > 4 ? atoi(args[4]) : 1;
    if (count < 4 || (batch && count != 4) || count > 5 || repeat < 1)
        return fail("usage", USAGE);
    if ((model = read_all(args[1], &model_size)) == NULL)
        return fail("cannot read kmodel", args[1]);
    if (kmodel_parse(&m, model, (uint32_t)model_size) != KM_OK)
        return fail_model(&m, args[1]);
    kpu_ram = calloc(1, KPU_RAM_BYTES); /* zeroed like the simulator's KPU RAM */
    work = malloc(kmodel_work_bytes(&m));
    if (kpu_ram == NULL || work == NULL || kmodel_attach(&m, kpu_ram, work) != KM_OK)
        return fail("out of memory", args[1]);
    return batch ? run_batch(&m, args[1], args[2], args[3]) : run_single(&m, args[1], args[2], args[3], repeat);
}
