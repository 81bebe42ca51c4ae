/* The board port (rt_port_board.h) of the QEMU board on real RT-Thread (bsp/qemu-virt64-riscv, S-mode under
 * OpenSBI): the SPI flash is a window of memory and the camera frames are PPM files, both placed by QEMU's loader
 * device and described by the boot-info block; the soft KPU gets its 2 MiB at a fixed address like the K210's
 * AI SRAM. The console is the BSP's UART, where msh runs. */
#include <rtthread.h>

#include "boot_info.h"
#include "memory_map.h"
#include "ppm_frame.h"
#include "rt_port_board.h"

#define BOOT ((const struct boot_info *)(uintptr_t)FW_BOOT_INFO_ADDR)

static int boot_info_valid(void)
{
    return BOOT->magic == FW_BOOT_INFO_MAGIC && BOOT->version == FW_BOOT_INFO_VERSION;
}

/* Say once, at boot, whether the run script described any flash contents and frames. */
static int rtt_qemu_port_init(void)
{
    if (!boot_info_valid())
        rt_kprintf("board: no boot-info block at 0x%lx; no flash contents and no frames\n",
                   (unsigned long)FW_BOOT_INFO_ADDR);
    else
        rt_kprintf("board: %lu flash region(s), %lu frame(s)\n", (unsigned long)BOOT->flash_region_count,
                   (unsigned long)BOOT->frame_count);
    return 0;
}
INIT_APP_EXPORT(rtt_qemu_port_init);

const uint8_t *rt_port_flash_map(uint32_t offset, uint32_t size)
{
    uint32_t i;
    if (!boot_info_valid())
        return RT_NULL;
    for (i = 0; i < BOOT->flash_region_count && i < FW_MAX_FLASH_REGIONS; i++) {
        const struct boot_region *r = &BOOT->flash[i];
        if (offset >= r->start && (uint64_t)offset + size <= (uint64_t)r->start + r->size)
            return (const uint8_t *)(uintptr_t)(FW_FLASH_BASE + offset);
    }
    return RT_NULL;
}

uint8_t *rt_port_kpu_ram(void)
{
    return (uint8_t *)(uintptr_t)FW_AI_RAM_BASE;
}

int rt_port_frame_count(void)
{
    if (!boot_info_valid())
        return 0;
    return (int)(BOOT->frame_count < FW_MAX_FRAMES ? BOOT->frame_count : FW_MAX_FRAMES);
}

int rt_port_frame_get(int index, struct rt_port_frame *frame)
{
    const struct boot_region *r;
    if (index < 0 || index >= rt_port_frame_count())
        return -1;
    r = &BOOT->frames[index];
    return ppm_frame_parse((const uint8_t *)(uintptr_t)r->start, r->size, frame);
}

int rt_port_dump_outputs(void)
{
    return boot_info_valid() && (BOOT->flags & FW_BOOT_FLAG_DUMP) != 0;
}

void rt_port_show(const struct rt_port_frame *frame, const float (*boxes)[4], const uint32_t *classes, uint32_t count)
{
    /* The virt machine has no display here: the JSON line on the console is the result. */
    (void)frame, (void)boxes, (void)classes, (void)count;
}

int rt_port_instructions(uint64_t *count)
{
    uint64_t n;
    if (!boot_info_valid() || (BOOT->flags & FW_BOOT_FLAG_COUNT_INSTRUCTIONS) == 0)
        return 0;
    __asm__ volatile("rdinstret %0" : "=r"(n));
    *count = n;
    return 1;
}
