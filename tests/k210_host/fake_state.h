/* What the fake RT-Thread (fake_rtthread.c) counts, for the harnesses to report. */
#ifndef K210_HOST_FAKE_STATE_H
#define K210_HOST_FAKE_STATE_H
extern int fake_allocated, fake_freed, fake_lock_nesting_errors, fake_irq_off;
#endif
