/* LCD output through bsp/k210's "lcd" graphic device (drivers/drv_lcd.c, BSP_USING_LCD): the camera's RGB565 frame
 * and the detection outlines are drawn into the device's framebuffer, then pushed with RTGRAPHIC_CTRL_RECT_UPDATE
 * (the driver sends it over SPI0 with the DMA channel it took from dmalock). */
#include <stdint.h>

#include <rtdevice.h>
#include <rtthread.h>

#include "../common/frame_convert.h"
#include "k210_port.h"

#define DISPLAY_DEVICE "lcd"
#define DISPLAY_BOX_THICKNESS 2

static rt_device_t lcd;
static struct rt_device_graphic_info lcd_info;
static int lcd_state; /* 0 = not tried, 1 = ready, -1 = failed (reported once) */

static int display_open(void)
{
    if (lcd_state != 0)
        return lcd_state > 0 ? 0 : -1;
    lcd_state = -1;
    lcd = rt_device_find(DISPLAY_DEVICE);
    if (lcd == RT_NULL) {
        rt_kprintf("board: no LCD device '%s' (enable BSP_USING_LCD); detections go to the console only\n",
                   DISPLAY_DEVICE);
        return -1;
    }
    if (rt_device_open(lcd, RT_DEVICE_OFLAG_RDWR) != RT_EOK ||
        rt_device_control(lcd, RTGRAPHIC_CTRL_GET_INFO, &lcd_info) != RT_EOK) {
        rt_kprintf("board: LCD device '%s' did not open\n", DISPLAY_DEVICE);
        return -1;
    }
    if (lcd_info.framebuffer == RT_NULL || lcd_info.pixel_format != RTGRAPHIC_PIXEL_FORMAT_RGB565) {
        rt_kprintf("board: LCD device '%s' has no RGB565 framebuffer\n", DISPLAY_DEVICE);
        rt_device_close(lcd);
        return -1;
    }
    lcd_state = 1;
    return 0;
}

void k210_display_show(const uint16_t *dvp565, uint32_t width, uint32_t height, const float (*boxes)[4],
                       const uint32_t *classes, uint32_t count)
{
    uint16_t *fb;
    struct frame_offset at;
    struct rt_device_rect_info all;
    uint32_t i;
    if (dvp565 == RT_NULL || display_open() != 0)
        return;
    fb = (uint16_t *)(void *)lcd_info.framebuffer;
    at = frame_center(width, height, lcd_info.width, lcd_info.height);
    frame_dvp565_to_display(dvp565, width, height, fb, lcd_info.width, lcd_info.height, at);
    for (i = 0; i < count; i++) {
        struct frame_rect rect;
        if (frame_box_to_display(boxes[i], at, lcd_info.width, lcd_info.height, &rect))
            frame_draw_rect(fb, lcd_info.width, lcd_info.height, &rect, DISPLAY_BOX_THICKNESS,
                            frame_class_color(classes[i]));
    }
    all.x = 0;
    all.y = 0;
    all.width = lcd_info.width;
    all.height = lcd_info.height;
    rt_device_control(lcd, RTGRAPHIC_CTRL_RECT_UPDATE, &all);
}
