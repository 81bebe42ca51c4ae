/* What a board provides to the generated application besides the RT-Thread API: model storage in flash, a
 * persistent flash store, the KPU RAM, camera frames, and the console switches of the test harness. */
#ifndef RT_PORT_BOARD_H
#define RT_PORT_BOARD_H

#include <stdint.h>

#include "k210_kpu.h" /* K210_FLASH_SECTOR_BYTES, generated from hardware/k210.py */

#define RT_PORT_STORAGE_SECTOR K210_FLASH_SECTOR_BYTES

/* A camera frame: RGB888, either interleaved HWC (planar = 0) or CHW planes as the K210 DVP writes them. */
struct rt_port_frame {
    const uint8_t *data;
    uint32_t width, height;
    int planar;
};

/* Pointer to `size` bytes of flash content at `offset`, readable for the program's lifetime and aligned to
 * 256 bytes; NULL when nothing is stored there. */
const uint8_t *rt_port_flash_map(uint32_t offset, uint32_t size);
/* The 2 MiB RAM of the software KPU (the K210's AI SRAM). */
uint8_t *rt_port_kpu_ram(void);
/* Number of frames available and frame i (0 on success). */
int rt_port_frame_count(void);
int rt_port_frame_get(int index, struct rt_port_frame *frame);
/* Print raw output tensors after each frame (test harness switch). */
int rt_port_dump_outputs(void);
/* Show a frame and its detections (boxes in frame pixels) on the board's display, when it has one. */
void rt_port_show(const struct rt_port_frame *frame, const float (*boxes)[4], const uint32_t *classes, uint32_t count);
/* The board's persistent flash store, by flash byte offset (the same offsets as rt_port_flash_map): 0 on success,
 * -1 on error. Erase sets whole RT_PORT_STORAGE_SECTOR-byte sectors to 0xFF (offset and size sector-aligned);
 * write programs bytes of erased sectors. */
int rt_port_storage_read(uint32_t offset, void *buf, uint32_t size);
int rt_port_storage_erase(uint32_t offset, uint32_t size);
int rt_port_storage_write(uint32_t offset, const void *buf, uint32_t size);
/* Instructions retired so far, when the target can count them exactly (QEMU with -icount); 0 = not available. */
int rt_port_instructions(uint64_t *count);

#endif
