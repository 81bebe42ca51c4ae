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

/* The persistent store: the 16 MiB flash image the run script attaches as the BSP's virtio block device
 * (components/drivers/virtio/virtio_blk.c registers it as "virtio-blk0", 512-byte sectors), so flash offset =
 * byte offset in the file and what is written stays in the file after QEMU stops. Partial sectors are read,
 * changed and written back. */
#define STORAGE_DEVICE "virtio-blk0"
#define STORAGE_BLOCK 512u

static rt_device_t storage_device(void)
{
    static rt_device_t device;
    static int tried;
    if (!tried) {
        tried = 1;
        device = rt_device_find(STORAGE_DEVICE);
        if (device == RT_NULL || rt_device_open(device, RT_DEVICE_OFLAG_RDWR) != RT_EOK) {
            rt_kprintf("board: no %s block device: nothing can be saved (attach the flash image with -drive)\n",
                       STORAGE_DEVICE);
            device = RT_NULL;
        }
    }
    return device;
}

/* Read (data == RT_NULL: into out) or write `size` bytes at `offset`, a block at a time. */
static int storage_transfer(uint32_t offset, uint8_t *out, const uint8_t *data, uint8_t fill, uint32_t size)
{
    static uint8_t block[STORAGE_BLOCK];
    rt_device_t device = storage_device();
    if (device == RT_NULL || (uint64_t)offset + size > FW_FLASH_SIZE)
        return -1;
    while (size > 0) {
        uint32_t sector = offset / STORAGE_BLOCK, at = offset % STORAGE_BLOCK;
        uint32_t n = size < STORAGE_BLOCK - at ? size : STORAGE_BLOCK - at;
        int whole = at == 0 && n == STORAGE_BLOCK;
        if (!(whole && out == RT_NULL) && rt_device_read(device, sector, block, 1) != 1)
            return -1;
        if (out != RT_NULL) {
            rt_memcpy(out, block + at, n);
            out += n;
        } else {
            if (data != RT_NULL) {
                rt_memcpy(block + at, data, n);
                data += n;
            } else {
                rt_memset(block + at, fill, n);
            }
            if (rt_device_write(device, sector, block, 1) != 1)
                return -1;
        }
        offset += n;
        size -= n;
    }
    return 0;
}

int rt_port_storage_read(uint32_t offset, void *buf, uint32_t size)
{
    return storage_transfer(offset, (uint8_t *)buf, RT_NULL, 0, size);
}

int rt_port_storage_erase(uint32_t offset, uint32_t size)
{
    if (offset % RT_PORT_STORAGE_SECTOR != 0 || size % RT_PORT_STORAGE_SECTOR != 0)
        return -1;
    return storage_transfer(offset, RT_NULL, RT_NULL, 0xFF, size);
}

int rt_port_storage_write(uint32_t offset, const void *buf, uint32_t size)
{
    return storage_transfer(offset, RT_NULL, (const uint8_t *)buf, 0, size);
}
