/* DVP capture through the Kendryte SDK: the sensor streams QVGA RGB565, the DVP writes each frame twice (the RGB565
 * display output and the planar RGB888 AI output the model input wants) into one of K210_CAPTURE_BUFFERS buffers.
 * Manual mode: the frame-start interrupt (PLIC, IRQN_DVP_INTERRUPT) points the DVP at a buffer the application does
 * not hold and starts the conversion; the frame-done interrupt publishes it. The DVP and the CPU both use the
 * buffers through SRAM's uncached alias (address - IOMEM): the DVP does not go through the CPU's data cache, and the
 * SDK (FIX_CACHE 1 in utils.h) refuses cached addresses in dvp_set_ai_addr / dvp_set_display_addr. */
#include <stdint.h>

#include <rthw.h>
#include <rtthread.h>

#include <dvp.h>
#include <kpu.h>
#include <plic.h>

#include "k210_port.h"

#define CAMERA_FRAME_READY 1u

#if K210_CAPTURE_BUFFERS != 2
#error "k210_camera.c hands buffers over as a pair (K210_CAPTURE_BUFFERS 2)"
#endif

struct camera_buffer {
    void *block;      /* the allocation (cached address) */
    uint8_t *display; /* uncached: K210_DISPLAY_BYTES of RGB565, then the R, G and B planes */
    uint8_t *ai;
};

static struct {
    struct camera_buffer buf[K210_CAPTURE_BUFFERS];
    struct rt_event event;
    struct rt_spinlock lock; /* held/ready/filling: bsp/k210 runs SMP, the interrupt may be on the other hart */
    volatile int held;    /* buffer the application reads, -1 = none */
    volatile int ready;   /* newest complete frame not yet taken, -1 = none */
    volatile int filling; /* buffer the DVP writes, -1 = none */
    int opened;           /* 1 = streaming, -1 = failed (not retried: the reason was printed) */
} cam;

/* The buffer a new frame goes to: never the held one, and the not-yet-taken one only when nothing else is free. */
static int camera_target(void)
{
    if (cam.held >= 0)
        return 1 - cam.held;
    return cam.ready >= 0 ? 1 - cam.ready : 0;
}

static int camera_irq(void *ctx)
{
    int published = 0;
    rt_base_t level = rt_spin_lock_irqsave(&cam.lock);
    (void)ctx;
    if (dvp_get_interrupt(DVP_STS_FRAME_FINISH)) {
        dvp_clear_interrupt(DVP_STS_FRAME_FINISH);
        if (cam.filling >= 0) {
            cam.ready = cam.filling;
            cam.filling = -1;
            published = 1;
        }
    }
    if (dvp_get_interrupt(DVP_STS_FRAME_START)) {
        int target = camera_target();
        const struct camera_buffer *b = &cam.buf[target];
        if (cam.ready == target)
            cam.ready = -1;
        dvp_set_display_addr((uint32_t)(uintptr_t)b->display);
        dvp_set_ai_addr((uint32_t)(uintptr_t)b->ai, (uint32_t)(uintptr_t)(b->ai + K210_AI_PLANE_BYTES),
                        (uint32_t)(uintptr_t)(b->ai + 2u * K210_AI_PLANE_BYTES));
        cam.filling = target;
        dvp_start_convert();
        dvp_clear_interrupt(DVP_STS_FRAME_START);
    }
    rt_spin_unlock_irqrestore(&cam.lock, level);
    if (published)
        rt_event_send(&cam.event, CAMERA_FRAME_READY);
    return 0;
}

static int camera_alloc(void)
{
    int i;
    for (i = 0; i < K210_CAPTURE_BUFFERS; i++) {
        cam.buf[i].block = rt_malloc_align(K210_DISPLAY_BYTES + 3u * K210_AI_PLANE_BYTES, 64);
        if (cam.buf[i].block == RT_NULL) {
            rt_kprintf("board: no RAM for %d camera buffers of %u bytes\n", K210_CAPTURE_BUFFERS,
                       (unsigned)(K210_DISPLAY_BYTES + 3u * K210_AI_PLANE_BYTES));
            while (i-- > 0)
                rt_free_align(cam.buf[i].block);
            return -1;
        }
        cam.buf[i].display = (uint8_t *)((uintptr_t)cam.buf[i].block - IOMEM);
        cam.buf[i].ai = cam.buf[i].display + K210_DISPLAY_BYTES;
    }
    return 0;
}

static void camera_free(void)
{
    int i;
    for (i = 0; i < K210_CAPTURE_BUFFERS; i++) {
        rt_free_align(cam.buf[i].block);
        cam.buf[i].block = RT_NULL;
        cam.buf[i].display = cam.buf[i].ai = RT_NULL;
    }
}

/* DVP clock, outputs and size, then the sensor (it needs XCLK running to answer on SCCB). */
static int camera_start(void)
{
    uint32_t xclk;
    dvp_init(k210_board_sensor.sccb_reg_bits);
    xclk = dvp_set_xclk_rate(K210_DVP_XCLK_HZ);
    dvp_enable_burst();
    dvp_set_output_enable(DVP_OUTPUT_AI, 1);
    dvp_set_output_enable(DVP_OUTPUT_DISPLAY, 1);
    dvp_set_image_format(DVP_CFG_RGB_FORMAT);
    dvp_set_image_size(K210_CAMERA_WIDTH, K210_CAMERA_HEIGHT);
    if (k210_board_sensor.init() != 0)
        return -1;
    dvp_config_interrupt(DVP_CFG_START_INT_ENABLE | DVP_CFG_FINISH_INT_ENABLE, 0);
    dvp_disable_auto();
    cam.held = cam.ready = cam.filling = -1;
    rt_spin_lock_init(&cam.lock);
    rt_event_init(&cam.event, "camera", RT_IPC_FLAG_FIFO);
    plic_set_priority(IRQN_DVP_INTERRUPT, 1);
    plic_irq_register(IRQN_DVP_INTERRUPT, camera_irq, RT_NULL);
    plic_irq_enable(IRQN_DVP_INTERRUPT);
    dvp_clear_interrupt(DVP_STS_FRAME_START | DVP_STS_FRAME_FINISH);
    dvp_config_interrupt(DVP_CFG_START_INT_ENABLE | DVP_CFG_FINISH_INT_ENABLE, 1);
    rt_kprintf("board: %s streaming %ux%u, XCLK %u Hz\n", k210_board_sensor.name, (unsigned)K210_CAMERA_WIDTH,
               (unsigned)K210_CAMERA_HEIGHT, (unsigned)xclk);
    return 0;
}

int k210_camera_open(void)
{
    if (cam.opened != 0)
        return cam.opened > 0 ? 0 : -1;
    cam.opened = -1;
#ifndef BSP_USING_CAMERA
    rt_kprintf("board: this bsp/k210 build has no camera pins: enable BSP_USING_CAMERA "
               "(menuconfig: Hardware Drivers Config > Enable Camera)\n");
    return -1;
#endif
    if (camera_alloc() != 0)
        return -1;
    if (camera_start() != 0) {
        camera_free();
        return -1;
    }
    cam.opened = 1;
    return 0;
}

int k210_camera_next(struct rt_port_frame *frame)
{
    rt_base_t level;
    int got = -1;
    if (k210_camera_open() != 0)
        return -1;
    level = rt_spin_lock_irqsave(&cam.lock);
    cam.held = -1;
    rt_spin_unlock_irqrestore(&cam.lock, level);
    while (got < 0) {
        level = rt_spin_lock_irqsave(&cam.lock);
        if (cam.ready >= 0) {
            got = cam.held = cam.ready;
            cam.ready = -1;
        }
        rt_spin_unlock_irqrestore(&cam.lock, level);
        if (got < 0 && rt_event_recv(&cam.event, CAMERA_FRAME_READY, RT_EVENT_FLAG_OR | RT_EVENT_FLAG_CLEAR,
                                     rt_tick_from_millisecond(K210_FRAME_TIMEOUT_MS), RT_NULL) != RT_EOK) {
            rt_kprintf("board: no frame from the %s within %u ms (DVP frame interrupt not firing)\n",
                       k210_board_sensor.name, (unsigned)K210_FRAME_TIMEOUT_MS);
            return -1;
        }
    }
    frame->data = cam.buf[got].ai;
    frame->width = K210_CAMERA_WIDTH;
    frame->height = K210_CAMERA_HEIGHT;
    frame->planar = 1;
    return 0;
}

const uint16_t *k210_camera_display(void)
{
    int held = cam.held;
    return held >= 0 ? (const uint16_t *)(void *)cam.buf[held].display : RT_NULL;
}
