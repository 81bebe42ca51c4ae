/* Test double of the RT-Thread kernel calls the K210 port makes (single thread, console on stderr). Allocations
 * come from below 4 GiB, as on the K210, because the port hands buffer addresses to 32-bit DVP registers. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <sys/mman.h>

#include "fake_state.h"
#include "rtthread.h"

int fake_allocated, fake_freed, fake_lock_nesting_errors, fake_irq_off;
static rt_tick_t fake_ticks;

void rt_kprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
}

void *rt_malloc_align(size_t size, size_t align)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
    (void)align; /* pages are aligned far beyond what the port asks */
    if (p == MAP_FAILED)
        return NULL;
    fake_allocated++;
    return p;
}

void rt_free_align(void *ptr)
{
    if (ptr != NULL)
        fake_freed++;
}

rt_tick_t rt_tick_from_millisecond(rt_int32_t ms)
{
    return (rt_tick_t)ms;
}

void rt_spin_lock_init(struct rt_spinlock *lock)
{
    lock->locked = 0;
}

rt_base_t rt_spin_lock_irqsave(struct rt_spinlock *lock)
{
    fake_lock_nesting_errors += lock->locked;
    lock->locked = 1;
    return 0;
}

void rt_spin_unlock_irqrestore(struct rt_spinlock *lock, rt_base_t level)
{
    (void)level;
    lock->locked = 0;
}

rt_base_t rt_hw_interrupt_disable(void)
{
    return fake_irq_off++;
}

void rt_hw_interrupt_enable(rt_base_t level)
{
    fake_irq_off = (int)level;
}

rt_tick_t rt_tick_get(void)
{
    return fake_ticks++;
}

rt_err_t rt_thread_mdelay(rt_int32_t ms)
{
    fake_ticks += (rt_tick_t)ms;
    return RT_EOK;
}
