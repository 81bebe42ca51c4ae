/* Target-independent part of the single-threaded RT-Thread port: heap, console, semaphores,
 * the automatic-initialisation table and the msh command table. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rtthread.h"

#define MSH_MAX_ARGS 16

/* Linker-provided bounds of the tables the INIT_*_EXPORT and MSH_CMD_EXPORT macros fill. */
extern const struct rt_init_entry __start_rt_init_table[], __stop_rt_init_table[];
extern const struct rt_msh_entry __start_rt_msh_table[], __stop_rt_msh_table[];

void *rt_malloc(rt_size_t size)
{
    return malloc(size);
}

void rt_free(void *ptr)
{
    free(ptr);
}

/* Over-allocate, align, and keep the block's own address just below the aligned pointer. */
void *rt_malloc_align(rt_size_t size, rt_size_t align)
{
    uintptr_t raw, aligned;
    if (align < sizeof(void *) || (align & (align - 1)) != 0)
        return RT_NULL;
    raw = (uintptr_t)malloc(size + align + sizeof(void *));
    if (raw == 0)
        return RT_NULL;
    aligned = (raw + sizeof(void *) + align - 1) & ~(uintptr_t)(align - 1);
    memcpy((void *)(aligned - sizeof(void *)), &raw, sizeof(raw));
    return (void *)aligned;
}

void rt_free_align(void *ptr)
{
    uintptr_t raw;
    if (ptr == RT_NULL)
        return;
    memcpy(&raw, (uint8_t *)ptr - sizeof(void *), sizeof(raw));
    free((void *)raw);
}

/* The conversion characters of a printf format, checked against what RT-Thread's rt_vsnprintf knows. */
static void refuse_float_conversions(const char *fmt)
{
    const char *p;
    for (p = fmt; *p; p++) {
        if (*p != '%')
            continue;
        p += strspn(p + 1, "-+ #0123456789.*hlLqjzt") + 1;
        if (*p == '\0')
            break;
        if (strchr("fFeEgGaA", *p) != NULL) {
            fprintf(stderr, "rt_kprintf(\"%s\"): RT-Thread's rt_kprintf has no floating-point conversion %%%c\n",
                    fmt, *p);
            abort();
        }
    }
}

void rt_kprintf(const char *fmt, ...)
{
    char buf[RT_CONSOLEBUF_SIZE];
    va_list args;
    refuse_float_conversions(fmt);
    va_start(args, fmt);
    vsnprintf(buf, sizeof(buf), fmt, args); /* cut at RT_CONSOLEBUF_SIZE - 1 characters, as the kernel does */
    va_end(args);
    fputs(buf, stdout);
    fflush(stdout);
}

void rt_kputs(const char *str)
{
    fputs(str, stdout);
    fflush(stdout);
}

rt_err_t rt_sem_init(rt_sem_t sem, const char *name, rt_uint32_t value, rt_uint8_t flag)
{
    (void)flag;
    strncpy(sem->name, name, RT_NAME_MAX - 1);
    sem->name[RT_NAME_MAX - 1] = '\0';
    sem->value = value;
    return RT_EOK;
}

rt_err_t rt_sem_take(rt_sem_t sem, rt_int32_t timeout)
{
    (void)timeout;
    if (sem->value == 0)
        return -RT_ETIMEOUT;
    sem->value--;
    return RT_EOK;
}

rt_err_t rt_sem_release(rt_sem_t sem)
{
    sem->value++;
    return RT_EOK;
}

rt_err_t rt_sem_detach(rt_sem_t sem)
{
    sem->value = 0;
    return RT_EOK;
}

int rt_components_init(void)
{
    const struct rt_init_entry *e;
    int level, failed = 0;
    for (level = 1; level <= 6; level++)
        for (e = __start_rt_init_table; e < __stop_rt_init_table; e++)
            if (e->level == level && e->fn() != 0) {
                rt_kprintf("init: %s failed\n", e->name);
                failed++;
            }
    return failed;
}

int msh_exec(char *cmdline, rt_size_t length)
{
    char *argv[MSH_MAX_ARGS];
    int argc = 0;
    rt_size_t i = 0;
    const struct rt_msh_entry *e;
    while (i < length && argc < MSH_MAX_ARGS) {
        while (i < length && (cmdline[i] == ' ' || cmdline[i] == '\0'))
            cmdline[i++] = '\0';
        if (i >= length)
            break;
        argv[argc++] = &cmdline[i];
        while (i < length && cmdline[i] != ' ' && cmdline[i] != '\0')
            i++;
    }
    if (argc == 0)
        return -RT_ERROR;
    for (e = __start_rt_msh_table; e < __stop_rt_msh_table; e++)
        if (strcmp(e->name, argv[0]) == 0)
            return e->fn(argc, argv);
    rt_kprintf("%s: command not found.\n", argv[0]);
    return -RT_ERROR;
}
