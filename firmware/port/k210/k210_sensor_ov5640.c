/* OV5640 (16-bit SCCB registers): chip id checked here so a silent bus gets a clear message, the QVGA RGB565
 * register set-up done by bsp/k210's own driver (drivers/camera/drv_ov5640.c, built with BSP_USING_CAMERA). */
#include "k210_port.h"

#ifdef K210_CAMERA_OV5640
#include <rtthread.h>

#include <dvp.h>

#include "drv_ov5640.h"

static int ov5640_setup(void)
{
    uint16_t id = (uint16_t)((dvp_sccb_receive_data(OV5640_ADDR, OV5640_CHIPIDH) << 8) |
                             dvp_sccb_receive_data(OV5640_ADDR, OV5640_CHIPIDL));
    if (id != OV5640_ID) {
        rt_kprintf("board: no OV5640 on SCCB (0x%02x): id 0x%04x, expected 0x%04x (check ribbon, "
                   "firmware.camera)\n", OV5640_ADDR, id, OV5640_ID);
        return -1;
    }
#ifdef BSP_USING_CAMERA
    if (ov5640_init() != 0) {
        rt_kprintf("board: bsp/k210's ov5640_init refused the sensor\n");
        return -1;
    }
    return 0;
#else
    return -1; /* drv_ov5640.c is only built with BSP_USING_CAMERA; k210_camera_open refuses before this */
#endif
}

const struct k210_sensor k210_board_sensor = {"ov5640", 16, ov5640_setup};
#endif
