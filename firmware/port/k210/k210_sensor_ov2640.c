/* OV2640 (8-bit SCCB registers, two banks selected by register 0xFF): reset, SVGA sensor window, the DSP scaled
 * down to K210_CAMERA_WIDTH x K210_CAMERA_HEIGHT RGB565. Written from the register descriptions of the OV2640
 * datasheet (only documented registers; no vendor tuning table), so colour and exposure are the sensor defaults. */
#include "k210_port.h"

#ifdef K210_CAMERA_OV2640
#include <stddef.h>

#include <rtthread.h>

#include <dvp.h>

#define OV2640_SCCB_ADDR 0x60 /* 8-bit write address */
#define OV2640_PIDH_VALUE 0x26

/* Registers by bank (0xFF = RA_DLMT: 0x00 DSP, 0x01 sensor). */
#define REG_BANK 0xFF
#define BANK_DSP 0x00
#define BANK_SENSOR 0x01
#define SENSOR_COM7 0x12 /* bit 7 system reset, bits 6:4 resolution (100 = SVGA 800x600) */
#define SENSOR_PIDH 0x0A
#define SENSOR_PIDL 0x0B

/* The SVGA window the DSP halves (CTRLI) and then zooms to the camera frame size. */
#define OV2640_IN_W 800
#define OV2640_IN_H 600

struct ov2640_reg {
    uint8_t reg, value;
};

static const struct ov2640_reg ov2640_setup_regs[] = {
    {REG_BANK, BANK_SENSOR},
    {SENSOR_COM7, 0x40},  /* SVGA */
    {0x11, 0x01},         /* CLKRC: internal clock = XCLK / 2 */
    {0x03, 0x0A},         /* COM1: SVGA vertical window low bits */
    {0x17, 0x11},         /* HREFST */
    {0x18, 0x43},         /* HREFEND */
    {0x19, 0x00},         /* VSTRT */
    {0x1A, 0x4B},         /* VEND */
    {0x32, 0x09},         /* REG32: horizontal window low bits */
    {0x13, 0xE5},         /* COM8: banding filter, automatic gain and exposure */
    {0x14, 0x48},         /* COM9: gain ceiling 8x */
    {REG_BANK, BANK_DSP},
    {0xE0, 0x04},                          /* RESET: hold the DVP interface in reset while configuring */
    {0x05, 0x00},                          /* R_BYPASS: use the DSP */
    {0xC0, OV2640_IN_W >> 3},              /* HSIZE8 */
    {0xC1, OV2640_IN_H >> 3},              /* VSIZE8 */
    {0x8C, 0x00},                          /* SIZEL: low bits of the sizes are 0 */
    {0x86, 0x3D},                          /* CTRL2: DCW, SDE, UV_ADJ, UV_AVG, CMX */
    {0x50, 0x89},                          /* CTRLI: LP_DP, horizontal and vertical divider 2 */
    {0x51, (OV2640_IN_W >> 2) & 0xFF},     /* HSIZE (in 4-pixel units, low 8 bits) */
    {0x52, (OV2640_IN_H >> 2) & 0xFF},     /* VSIZE */
    {0x53, 0x00},                          /* XOFFL */
    {0x54, 0x00},                          /* YOFFL */
    {0x55, 0x00},                          /* VHYX: high bits of sizes and offsets */
    {0x57, 0x00},                          /* TEST: HSIZE bit 9 */
    {0x5A, (K210_CAMERA_WIDTH >> 2) & 0xFF},  /* ZMOW: output width / 4 */
    {0x5B, (K210_CAMERA_HEIGHT >> 2) & 0xFF}, /* ZMOH: output height / 4 */
    {0x5C, ((K210_CAMERA_WIDTH >> 10) & 0x03) | (((K210_CAMERA_HEIGHT >> 10) & 0x01) << 2)}, /* ZMHH */
    {0xD3, 0x04},                          /* R_DVP_SP: PCLK divider */
    {0xDA, 0x08},                          /* IMAGE_MODE: RGB565 */
    {0xE0, 0x00},                          /* RESET: release */
};

static void ov2640_write(uint8_t reg, uint8_t value)
{
    dvp_sccb_send_data(OV2640_SCCB_ADDR, reg, value);
}

static uint8_t ov2640_read(uint8_t reg)
{
    return dvp_sccb_receive_data(OV2640_SCCB_ADDR, reg);
}

static int ov2640_setup(void)
{
    uint8_t pidh, pidl;
    size_t i;
    ov2640_write(REG_BANK, BANK_SENSOR);
    pidh = ov2640_read(SENSOR_PIDH);
    pidl = ov2640_read(SENSOR_PIDL);
    if (pidh != OV2640_PIDH_VALUE) {
        rt_kprintf("board: no OV2640 on SCCB (0x%02x): id 0x%02x%02x, expected 0x%02x.. (check ribbon, "
                   "firmware.camera)\n", OV2640_SCCB_ADDR, pidh, pidl, OV2640_PIDH_VALUE);
        return -1;
    }
    ov2640_write(SENSOR_COM7, 0x80); /* system reset: every register back to its default */
    rt_thread_mdelay(10);
    for (i = 0; i < sizeof(ov2640_setup_regs) / sizeof(ov2640_setup_regs[0]); i++)
        ov2640_write(ov2640_setup_regs[i].reg, ov2640_setup_regs[i].value);
    rt_thread_mdelay(100); /* let exposure settle before the first frame */
    return 0;
}

const struct k210_sensor k210_board_sensor = {"ov2640", 8, ov2640_setup};
#endif
