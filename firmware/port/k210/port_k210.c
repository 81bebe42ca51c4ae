/* rt_port_board.h on the K210 board: live camera frames, the LCD, the dump switch. Flash is in k210_flash.c. */
#include <stdint.h>

#include <rtthread.h>

#include "k210_port.h"

#define K210_LIVE_FRAMES 0x7fffffff /* the camera never runs out; `<name>_detect N` bounds a run */

static int port_dump;

uint8_t *rt_port_kpu_ram(void)
{
    return RT_NULL; /* the real KPU owns the AI SRAM */
}

int rt_port_frame_count(void)
{
    return k210_camera_open() == 0 ? K210_LIVE_FRAMES : 0;
}

int rt_port_frame_get(int index, struct rt_port_frame *frame)
{
    (void)index; /* live: always the newest frame */
    return k210_camera_next(frame);
}

int rt_port_dump_outputs(void)
{
    return port_dump;
}

void k210_port_set_dump(int on)
{
    port_dump = on;
}

void rt_port_show(const struct rt_port_frame *frame, const float (*boxes)[4], const uint32_t *classes, uint32_t count)
{
    k210_display_show(k210_camera_display(), frame->width, frame->height, boxes, classes, count);
}

int rt_port_instructions(uint64_t *count)
{
    (void)count;
    return 0; /* no exact instruction count on the board */
}
