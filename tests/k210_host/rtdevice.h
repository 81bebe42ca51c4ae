/* Test double of the graphic-device part of <rtdevice.h> the display uses. */
#include "rtthread.h"
#define RT_DEVICE_OFLAG_RDWR 0x003
#define RTGRAPHIC_CTRL_RECT_UPDATE 0
#define RTGRAPHIC_CTRL_GET_INFO 3
#define RTGRAPHIC_PIXEL_FORMAT_RGB565 6
struct rt_device;
typedef struct rt_device *rt_device_t;
struct rt_device_graphic_info {
    rt_uint8_t pixel_format, bits_per_pixel;
    rt_uint16_t pitch, width, height;
    rt_uint8_t *framebuffer;
    rt_uint32_t smem_len;
};
struct rt_device_rect_info {
    rt_uint16_t x, y, width, height;
};
rt_device_t rt_device_find(const char *name);
rt_err_t rt_device_open(rt_device_t dev, rt_uint16_t oflag);
rt_err_t rt_device_close(rt_device_t dev);
rt_err_t rt_device_control(rt_device_t dev, int cmd, void *arg);
