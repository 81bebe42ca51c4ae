/* Host harness for firmware/port/k210/k210_camera.c + k210_sensor_ov2640.c over test doubles of the SDK and
 * RT-Thread: a simulated DVP runs frames (start interrupt, the conversion stamps the target buffer, finish
 * interrupt) whenever the application waits, and between frames. Prints one JSON line; argv[1] picks the case:
 * "stream" (normal), "absent" (no sensor on SCCB), "stalled" (sensor answers, no frame interrupt ever). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dvp.h"
#include "fake_state.h"
#include "k210_port.h"
#include "plic.h"
#include "rtthread.h"

static const char *mode;
static plic_irq_callback_t isr;
static uint32_t status, cfg, display_addr, ai_addr;
static int converting, frames_run, writes_into_held;
static uint32_t stamp;          /* id of the frame the simulated DVP converts next */
static uint32_t last_completed; /* id of the newest frame the DVP finished */
static const uint8_t *held;     /* what the application holds (the AI frame it got last) */
static uint8_t last_reg, last_value;

static void run_frame(void);

rt_err_t rt_event_init(struct rt_event *event, const char *name, rt_uint8_t flag)
{
    (void)name, (void)flag;
    event->set = 0;
    return RT_EOK;
}

rt_err_t rt_event_send(struct rt_event *event, rt_uint32_t set)
{
    event->set |= set;
    return RT_EOK;
}

/* Waiting lets the DVP run: up to 5 frames, or none at all when the sensor is stalled. */
rt_err_t rt_event_recv(struct rt_event *event, rt_uint32_t set, rt_uint8_t option, rt_int32_t timeout,
                       rt_uint32_t *recved)
{
    int i;
    (void)option, (void)timeout, (void)recved;
    for (i = 0; i < 5 && !(event->set & set); i++)
        run_frame();
    if (!(event->set & set))
        return -RT_ETIMEOUT;
    event->set &= ~set;
    return RT_EOK;
}

int plic_set_priority(int irq, uint32_t priority)
{
    (void)irq, (void)priority;
    return 0;
}

void plic_irq_register(int irq, plic_irq_callback_t callback, void *ctx)
{
    (void)irq, (void)ctx;
    isr = callback;
}

int plic_irq_enable(int irq)
{
    (void)irq;
    return 0;
}

void dvp_init(uint8_t reg_len) { (void)reg_len; }
uint32_t dvp_set_xclk_rate(uint32_t xclk_rate) { return xclk_rate; }
void dvp_enable_burst(void) {}
void dvp_set_output_enable(dvp_output_mode_t index, int enable) { (void)index, (void)enable; }
void dvp_set_image_format(uint32_t format) { (void)format; }
void dvp_set_image_size(uint32_t width, uint32_t height) { (void)width, (void)height; }
void dvp_disable_auto(void) {}

void dvp_set_ai_addr(uint32_t r_addr, uint32_t g_addr, uint32_t b_addr)
{
    if (g_addr != r_addr + K210_AI_PLANE_BYTES || b_addr != g_addr + K210_AI_PLANE_BYTES)
        abort(); /* the planes must follow each other: the frame is handed out as one CHW block */
    ai_addr = r_addr;
}

void dvp_set_display_addr(uint32_t addr) { display_addr = addr; }
void dvp_start_convert(void) { converting = 1; }

void dvp_config_interrupt(uint32_t interrupt, uint8_t enable)
{
    cfg = enable ? (cfg | interrupt) : (cfg & ~interrupt);
}

int dvp_get_interrupt(uint32_t interrupt) { return (status & interrupt) != 0; }
void dvp_clear_interrupt(uint32_t interrupt) { status &= ~interrupt; }

void dvp_sccb_send_data(uint8_t dev_addr, uint16_t reg_addr, uint8_t reg_data)
{
    (void)dev_addr;
    last_reg = (uint8_t)reg_addr;
    last_value = reg_data;
}

uint8_t dvp_sccb_receive_data(uint8_t dev_addr, uint16_t reg_addr)
{
    (void)dev_addr;
    if (strcmp(mode, "absent") == 0)
        return 0xFF;
    return reg_addr == 0x0A ? 0x26 : 0x42;
}

static void raise_irq(uint32_t bits)
{
    status |= bits;
    if (isr != NULL && (cfg & (DVP_CFG_START_INT_ENABLE | DVP_CFG_FINISH_INT_ENABLE)))
        isr(NULL);
}

/* One sensor frame: start interrupt, the conversion stamps both outputs of the chosen buffer, finish interrupt. */
static void run_frame(void)
{
    if (strcmp(mode, "stalled") == 0)
        return;
    frames_run++;
    converting = 0;
    raise_irq(DVP_STS_FRAME_START);
    if (converting) {
        uint8_t *ai = (uint8_t *)(uintptr_t)ai_addr;
        uint16_t *display = (uint16_t *)(uintptr_t)display_addr;
        writes_into_held += ai == held;
        stamp++;
        memset(ai, (int)(stamp & 0xFF), 3u * K210_AI_PLANE_BYTES);
        display[0] = (uint16_t)stamp;
        display[K210_DISPLAY_BYTES / 2 - 1] = (uint16_t)stamp;
        raise_irq(DVP_STS_FRAME_FINISH);
        last_completed = stamp;
    }
}

int main(int argc, char **argv)
{
    struct rt_port_frame f;
    int i, opened, got = 0, newest = 0, display_match = 0, planar = 1;
    mode = argc > 1 ? argv[1] : "stream";
    opened = k210_camera_open();
    for (i = 0; opened == 0 && i < 40; i++) {
        int between = (i * 7) % 4, k;
        held = NULL; /* asking for the next frame hands the held one back */
        if (k210_camera_next(&f) != 0)
            break;
        held = f.data;
        got++;
        newest += f.data[0] == (uint8_t)(last_completed & 0xFF) &&
                  f.data[3u * K210_AI_PLANE_BYTES - 1] == (uint8_t)(last_completed & 0xFF);
        display_match += k210_camera_display()[0] == (uint16_t)last_completed;
        planar &= f.planar == 1 && f.width == K210_CAMERA_WIDTH && f.height == K210_CAMERA_HEIGHT;
        for (k = 0; k < between; k++) /* the application infers while the DVP keeps streaming */
            run_frame();
    }
    printf("{\"opened\":%d,\"got\":%d,\"newest\":%d,\"display_match\":%d,\"planar\":%d,\"frames_run\":%d,"
           "\"writes_into_held\":%d,\"lock_nesting_errors\":%d,\"allocated\":%d,\"freed\":%d,"
           "\"last_sccb\":[%d,%d]}\n", opened, got, newest, display_match, planar, frames_run, writes_into_held,
           fake_lock_nesting_errors, fake_allocated, fake_freed, last_reg, last_value);
    return 0;
}
