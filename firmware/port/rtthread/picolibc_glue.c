/* What picolibc (Debian's picolibc-riscv64-unknown-elf) needs from an RT-Thread 5.0.1 kernel, which ships glue for
 * newlib and musl only: stdout/stderr on the RT-Thread console, and the C heap on rt_malloc so that library code
 * and the SDK share the kernel's heap. Built only in BSP copies adapted for that toolchain. */
#include <rtthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int console_put(char c, FILE *file)
{
    char text[2] = {c, '\0'};
    (void)file;
    rt_kputs(text);
    return (unsigned char)c;
}

static FILE console_stream = FDEV_SETUP_STREAM(console_put, NULL, NULL, _FDEV_SETUP_WRITE);
FILE *const stdout = &console_stream;
FILE *const stderr = &console_stream;

void *malloc(size_t size)
{
    return rt_malloc(size);
}

void free(void *ptr)
{
    rt_free(ptr);
}

void *realloc(void *ptr, size_t size)
{
    return rt_realloc(ptr, size);
}

void *calloc(size_t count, size_t size)
{
    return rt_calloc(count, size);
}

/* abort() and raise() end here: report it and stop this thread (the kernel has no processes to end). */
void _exit(int status)
{
    rt_kprintf("libc: exit(%d) in thread %s; the thread stops here\n", status, rt_thread_self()->parent.name);
    for (;;)
        rt_thread_suspend(rt_thread_self()), rt_schedule();
}

int getpid(void)
{
    return 1;
}

int kill(int pid, int sig)
{
    (void)pid;
    _exit(128 + sig);
    return -1;
}
