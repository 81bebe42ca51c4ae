/* Host target of the RT-Thread port: a native process. Options name the flash contents and the frames;
 * then the components are initialised and the application's msh command runs.
 *
 *   firmware [--flash-file OFFSET FILE]... [--storage FILE] [--dump] [--args "ARGUMENTS"] [--command "LINE"]...
 *            FRAME.ppm...
 *
 * --args appends its text (space-separated arguments) to the command, as typed at msh; --command (repeatable) types
 * these lines instead, one after another. --storage names the board's
 * persistent flash store, a 16 MiB flash-image file (created erased when missing; storage_host.c).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kmodel_format.h"
#include "ppm_frame.h"
#include "rt_port_board.h"
#include "rtthread.h"
#include "storage_host.h"

#ifndef RT_APP_COMMAND
#error "RT_APP_COMMAND (the msh command the host target runs) must be defined by the build"
#endif

#define HOST_MAX_FLASH_FILES 8
#define HOST_MAX_FRAMES 256
#define HOST_COMMAND_BYTES 256

struct flash_file {
    uint32_t offset;
    uint32_t size;
    uint8_t *data;
};

static struct flash_file flash_files[HOST_MAX_FLASH_FILES];
static int flash_file_count;
static struct rt_port_frame frames[HOST_MAX_FRAMES];
static int frame_count;
static int dump_outputs;
static uint8_t kpu_ram[KPU_RAM_BYTES] __attribute__((aligned(64)));

static uint8_t *read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    uint8_t *data;
    long n;
    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        if (f)
            fclose(f);
        return NULL;
    }
    data = rt_malloc_align((rt_size_t)n + 1, KMODEL_MODEL_ALIGNMENT);
    if (data != NULL && fread(data, 1, (size_t)n, f) != (size_t)n) {
        rt_free_align(data);
        data = NULL;
    }
    fclose(f);
    *size = (size_t)n;
    return data;
}

static int usage_error(const char *what, const char *arg)
{
    fprintf(stderr, "error: %s: %s\nusage: firmware [--flash-file OFFSET FILE]... [--storage FILE] [--dump] "
            "[--args \"ARGUMENTS\"] FRAME.ppm...\n", what, arg);
    return 2;
}

static int add_flash_file(const char *offset_text, const char *path)
{
    char *end;
    size_t size;
    unsigned long offset = strtoul(offset_text, &end, 0);
    if (*end != '\0' || flash_file_count >= HOST_MAX_FLASH_FILES)
        return usage_error("bad or too many --flash-file offsets", offset_text);
    flash_files[flash_file_count].data = read_file(path, &size);
    if (flash_files[flash_file_count].data == NULL)
        return usage_error("cannot read flash file", path);
    flash_files[flash_file_count].offset = (uint32_t)offset;
    flash_files[flash_file_count].size = (uint32_t)size;
    flash_file_count++;
    return 0;
}

static int add_frame(const char *path)
{
    size_t size;
    uint8_t *data = read_file(path, &size);
    if (data == NULL)
        return usage_error("cannot read frame", path);
    if (frame_count >= HOST_MAX_FRAMES || ppm_frame_parse(data, size, &frames[frame_count]) != 0)
        return usage_error("not a binary PPM (P6, maxval 255) frame, or too many frames", path);
    frame_count++;
    return 0;
}

const uint8_t *rt_port_flash_map(uint32_t offset, uint32_t size)
{
    int i;
    for (i = 0; i < flash_file_count; i++)
        if (offset == flash_files[i].offset && size <= flash_files[i].size)
            return flash_files[i].data;
    return NULL;
}

uint8_t *rt_port_kpu_ram(void)
{
    return kpu_ram;
}

int rt_port_frame_count(void)
{
    return frame_count;
}

int rt_port_frame_get(int index, struct rt_port_frame *frame)
{
    if (index < 0 || index >= frame_count)
        return -1;
    *frame = frames[index];
    return 0;
}

int rt_port_dump_outputs(void)
{
    return dump_outputs;
}

void rt_port_show(const struct rt_port_frame *frame, const float (*boxes)[4], const uint32_t *classes, uint32_t count)
{
    /* A host process has no display: the JSON line on stdout is the result. */
    (void)frame, (void)boxes, (void)classes, (void)count;
}

int rt_port_instructions(uint64_t *count)
{
    (void)count;
    return 0;
}

rt_tick_t rt_tick_get(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (rt_tick_t)((uint64_t)ts.tv_sec * RT_TICK_PER_SECOND + (uint64_t)ts.tv_nsec / (1000000000u / RT_TICK_PER_SECOND));
}

#define HOST_MAX_COMMANDS 16

int main(int argc, char **argv)
{
    char command[HOST_COMMAND_BYTES] = RT_APP_COMMAND;
    const char *typed[HOST_MAX_COMMANDS];
    int i, rc, commands = 0, failed = 0;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--flash-file") == 0) {
            if (i + 2 >= argc)
                return usage_error("--flash-file needs OFFSET FILE", argv[i]);
            if ((rc = add_flash_file(argv[i + 1], argv[i + 2])) != 0)
                return rc;
            i += 2;
        } else if (strcmp(argv[i], "--storage") == 0) {
            if (i + 1 >= argc)
                return usage_error("--storage needs a flash-image FILE", argv[i]);
            if (host_storage_open(argv[++i]) != 0)
                return 2;
        } else if (strcmp(argv[i], "--command") == 0) {
            if (i + 1 >= argc || commands >= HOST_MAX_COMMANDS || strlen(argv[i + 1]) >= HOST_COMMAND_BYTES)
                return usage_error("--command needs one command line (at most 16 of them)", argv[i]);
            typed[commands++] = argv[++i];
        } else if (strcmp(argv[i], "--dump") == 0) {
            dump_outputs = 1;
        } else if (strcmp(argv[i], "--args") == 0) {
            if (i + 1 >= argc || strlen(command) + 1 + strlen(argv[i + 1]) >= sizeof(command))
                return usage_error("--args needs one argument text that fits the command line", argv[i]);
            strcat(strcat(command, " "), argv[++i]);
        } else if (argv[i][0] == '-') {
            return usage_error("unknown option", argv[i]);
        } else if ((rc = add_frame(argv[i])) != 0) {
            return rc;
        }
    }
    if (rt_components_init() != 0)
        return 1;
    if (commands == 0)
        return msh_exec(command, (rt_size_t)strlen(command)) == 0 ? 0 : 1;
    for (i = 0; i < commands; i++) { /* typed one after another at the console, as on the board */
        strcpy(command, typed[i]);
        failed |= msh_exec(command, (rt_size_t)strlen(command)) != 0;
    }
    return failed;
}
