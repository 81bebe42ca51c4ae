/* Test double of the RT-Thread API the K210 port uses, for the host harnesses (tests/test_k210_port.py). */
#ifndef K210_HOST_RTTHREAD_H
#define K210_HOST_RTTHREAD_H

#include <stddef.h>
#include <stdint.h>

typedef long rt_base_t;
typedef long rt_err_t;
typedef uint32_t rt_uint32_t;
typedef uint32_t rt_tick_t;
typedef int32_t rt_int32_t;
typedef uint8_t rt_uint8_t;
typedef uint16_t rt_uint16_t;

#define RT_NULL ((void *)0)
#define RT_EOK 0
#define RT_ETIMEOUT 2
#define RT_IPC_FLAG_FIFO 0
#define RT_EVENT_FLAG_OR 0x02
#define RT_EVENT_FLAG_CLEAR 0x04

struct rt_event {
    rt_uint32_t set;
};
struct rt_spinlock {
    int locked;
};

void rt_kprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
rt_base_t rt_hw_interrupt_disable(void);
void rt_hw_interrupt_enable(rt_base_t level);
void *rt_malloc_align(size_t size, size_t align);
void rt_free_align(void *ptr);
rt_err_t rt_event_init(struct rt_event *event, const char *name, rt_uint8_t flag);
rt_err_t rt_event_send(struct rt_event *event, rt_uint32_t set);
rt_err_t rt_event_recv(struct rt_event *event, rt_uint32_t set, rt_uint8_t option, rt_int32_t timeout,
                       rt_uint32_t *recved);
rt_tick_t rt_tick_from_millisecond(rt_int32_t ms);
rt_tick_t rt_tick_get(void); /* simulated time: 1 ms per call, plus what rt_thread_mdelay sleeps */
void rt_spin_lock_init(struct rt_spinlock *lock);
rt_base_t rt_spin_lock_irqsave(struct rt_spinlock *lock);
void rt_spin_unlock_irqrestore(struct rt_spinlock *lock, rt_base_t level);
rt_err_t rt_thread_mdelay(rt_int32_t ms);

#endif
