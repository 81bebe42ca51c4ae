/* K210 board port for RT-Thread bsp/k210 (implements rt_port_board.h): camera through the SDK's DVP driver, LCD through
 * the BSP's "lcd" graphic device, kmodel from the SPI3 flash. Board facts come from the generated k210_board.h
 * (deploy/firmware/k210_board.py), pins from bsp/k210's rtconfig.h (BSP_CAMERA_*, BSP_LCD_*). */
#ifndef K210_PORT_H
#define K210_PORT_H

#include <stdint.h>

#include "k210_board.h"
#include "../rt_port_board.h" /* not on the include path: firmware/port/rtthread.h is the host shim */

#if defined(K210_CAMERA_OV2640) + defined(K210_CAMERA_OV5640) != 1
#error "k210_board.h must select exactly one sensor (K210_CAMERA_OV2640 or K210_CAMERA_OV5640)"
#endif

#define K210_DISPLAY_BYTES ((uint32_t)K210_CAMERA_WIDTH * K210_CAMERA_HEIGHT * 2u) /* RGB565 */
#define K210_AI_PLANE_BYTES ((uint32_t)K210_CAMERA_WIDTH * K210_CAMERA_HEIGHT)   /* one of R, G, B */

/* A camera sensor on the DVP's SCCB bus. */
struct k210_sensor {
    const char *name;
    uint8_t sccb_reg_bits; /* register address width: 8 (OV2640) or 16 (OV5640) */
    /* Check the chip id and write the QVGA RGB565 set-up; 0 on success, else -1 after a console message. */
    int (*init)(void);
};

/* The sensor k210_board.h selects (K210_CAMERA_<NAME>). */
extern const struct k210_sensor k210_board_sensor;

/* Start continuous double-buffered capture (once); 0 on success, else -1 after a console message. */
int k210_camera_open(void);
/* Hand back the previous frame and wait for the newest complete one (planar RGB888); 0 on success. */
int k210_camera_next(struct rt_port_frame *frame);
/* The RGB565 display output of the frame k210_camera_next returned last; NULL before the first. */
const uint16_t *k210_camera_display(void);

/* Draw the camera's display frame and the boxes (frame pixels) on the LCD; reports a missing LCD once. */
void k210_display_show(const uint16_t *dvp565, uint32_t width, uint32_t height, const float (*boxes)[4],
                       const uint32_t *classes, uint32_t count);

/* Switch the raw output dump of rt_port_dump_outputs (the models' <name>_dump msh commands). */
void k210_port_set_dump(int on);

#endif
