/* The RT-Thread API subset the generated glue uses, for the host process (a single thread, no kernel). The qemu,
 * sim and k210 boards build on the real RT-Thread kernel and its <rtthread.h>. This shim keeps the real API's
 * limits so that host tests catch what would break there: rt_kprintf has no floating-point conversions (the
 * shim aborts on one) and cuts each call at RT_CONSOLEBUF_SIZE (bsp/k210's value); rt_kputs has no limit. */
#ifndef RT_PORT_RTTHREAD_H
#define RT_PORT_RTTHREAD_H

/* This is the host process, not the kernel (e.g. a test hook's power cut exits instead of idling forever). */
#define RT_PORT_HOST_SHIM 1

#include <stddef.h>
#include <stdint.h>

typedef int8_t rt_int8_t;
typedef uint8_t rt_uint8_t;
typedef int16_t rt_int16_t;
typedef uint16_t rt_uint16_t;
typedef int32_t rt_int32_t;
typedef uint32_t rt_uint32_t;
typedef long rt_err_t;
typedef unsigned long rt_size_t;
typedef uint32_t rt_tick_t;
typedef long rt_base_t;

#define RT_NULL ((void *)0)
#define RT_EOK 0
#define RT_ERROR 1
#define RT_ETIMEOUT 2
#define RT_ENOMEM 5
#define RT_WAITING_FOREVER (-1)
#define RT_IPC_FLAG_FIFO 0x00
#define RT_TICK_PER_SECOND 1000u
#define RT_NAME_MAX 16
#define RT_CONSOLEBUF_SIZE 128

void *rt_malloc(rt_size_t size);
void rt_free(void *ptr);
void *rt_malloc_align(rt_size_t size, rt_size_t align);
void rt_free_align(void *ptr);
void rt_kprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void rt_kputs(const char *str);
rt_tick_t rt_tick_get(void);

/* A counting semaphore. With one thread, a take that would block can never be satisfied: it fails with
 * -RT_ETIMEOUT instead of hanging (callbacks of this port run synchronously, before the take). */
struct rt_semaphore {
    char name[RT_NAME_MAX];
    rt_uint32_t value;
};
typedef struct rt_semaphore *rt_sem_t;

rt_err_t rt_sem_init(rt_sem_t sem, const char *name, rt_uint32_t value, rt_uint8_t flag);
rt_err_t rt_sem_take(rt_sem_t sem, rt_int32_t timeout);
rt_err_t rt_sem_release(rt_sem_t sem);
rt_err_t rt_sem_detach(rt_sem_t sem);

/* Automatic initialisation: functions run by rt_components_init() in level order (board 1 .. app 6). */
typedef int (*rt_init_fn_t)(void);
struct rt_init_entry {
    int level;
    rt_init_fn_t fn;
    const char *name;
};
#define RT_PORT_INIT_EXPORT(fn, level)                                                                          \
    static const struct rt_init_entry __rt_init_##fn __attribute__((used, section("rt_init_table"), aligned(8))) = { \
        level, fn, #fn}
#define INIT_BOARD_EXPORT(fn) RT_PORT_INIT_EXPORT(fn, 1)
#define INIT_PREV_EXPORT(fn) RT_PORT_INIT_EXPORT(fn, 2)
#define INIT_DEVICE_EXPORT(fn) RT_PORT_INIT_EXPORT(fn, 3)
#define INIT_COMPONENT_EXPORT(fn) RT_PORT_INIT_EXPORT(fn, 4)
#define INIT_ENV_EXPORT(fn) RT_PORT_INIT_EXPORT(fn, 5)
#define INIT_APP_EXPORT(fn) RT_PORT_INIT_EXPORT(fn, 6)

/* msh commands: int cmd(int argc, char **argv), found by name; desc is bare words, stringified as in RT-Thread. */
typedef int (*rt_msh_fn_t)(int argc, char **argv);
struct rt_msh_entry {
    const char *name;
    const char *desc;
    rt_msh_fn_t fn;
};
#define MSH_CMD_EXPORT_ALIAS(fn, alias, desc)                                                                    \
    static const struct rt_msh_entry __rt_msh_##alias __attribute__((used, section("rt_msh_table"), aligned(8))) = { \
        #alias, #desc, fn}
#define MSH_CMD_EXPORT(fn, desc) MSH_CMD_EXPORT_ALIAS(fn, fn, desc)

/* Run every exported init function, lowest level first; returns the number that failed. */
int rt_components_init(void);
/* Split a command line into words and run the msh command it names; -RT_ERROR when there is none. */
int msh_exec(char *cmdline, rt_size_t length);

#endif
