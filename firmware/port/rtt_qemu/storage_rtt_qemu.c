/* rt_port_storage_* on the QEMU board: the 16 MiB flash image attached to QEMU as the virtio block device
 * "virtio-blk0" (-drive if=none,file=FLASH,format=raw,id=flash0 -device virtio-blk-device,drive=flash0), so a flash
 * offset is the byte offset on the device. Whole blocks go straight between the caller's buffer and the device;
 * a partial block is read, patched and written back. Erase writes 0xFF; a write replaces bytes, erased or not (a
 * disk is not NOR flash; the host port's storage is the one that refuses programming over programmed bytes). What
 * changes is copied into the flash window at FW_FLASH_BASE too, so rt_port_flash_map keeps seeing the flash's
 * bytes. One thread at a time may use the store (the block buffer is shared). */
#include <string.h>

#include <rtdevice.h>
#include <rtthread.h>

#include "memory_map.h"
#include "rt_port_board.h"

#define STORAGE_DEVICE "virtio-blk0"
#define STORAGE_MAX_BLOCKS 128u /* blocks per device request */

static rt_device_t storage_device;
static uint32_t block_bytes;
static uint64_t device_bytes;
static uint8_t block_buffer[RT_PORT_STORAGE_SECTOR] __attribute__((aligned(64)));

/* Find and open the block device once; 0, or -1 after a message. */
static int storage_open(void)
{
    struct rt_device_blk_geometry geometry;
    rt_device_t device;
    if (storage_device != RT_NULL)
        return 0;
    device = rt_device_find(STORAGE_DEVICE);
    if (device == RT_NULL) {
        rt_kprintf("board: no block device %s for the flash store (attach the flash image as a "
                   "virtio-blk-device)\n", STORAGE_DEVICE);
        return -1;
    }
    if (rt_device_open(device, RT_DEVICE_OFLAG_RDWR) != RT_EOK ||
        rt_device_control(device, RT_DEVICE_CTRL_BLK_GETGEOME, &geometry) != RT_EOK || geometry.block_size == 0 ||
        RT_PORT_STORAGE_SECTOR % geometry.block_size != 0) {
        rt_kprintf("board: %s cannot serve as the flash store (open, geometry or block size)\n", STORAGE_DEVICE);
        return -1;
    }
    block_bytes = geometry.block_size;
    device_bytes = geometry.sector_count * geometry.bytes_per_sector;
    storage_device = device;
    return 0;
}

/* The store is there and [offset, offset + size) is inside the flash and the device; else 0 after a message. */
static int storage_ready(const char *what, uint32_t offset, uint32_t size)
{
    uint64_t end = (uint64_t)offset + size;
    if (storage_open() != 0)
        return 0;
    if (end > FW_FLASH_SIZE || end > device_bytes) {
        rt_kprintf("board: storage %s of %lu bytes at 0x%lx is past the flash image\n", what, (unsigned long)size,
                   (unsigned long)offset);
        return 0;
    }
    return 1;
}

static int blocks_io(int write, uint32_t block, void *buf, uint32_t count)
{
    rt_size_t done = write ? rt_device_write(storage_device, block, buf, count)
                           : rt_device_read(storage_device, block, buf, count);
    if (done != count) {
        rt_kprintf("board: %s %s of block %lu failed\n", STORAGE_DEVICE, write ? "write" : "read",
                   (unsigned long)block);
        return -1;
    }
    return 0;
}

/* Read (data NULL: into `out`) or write (from `data`) bytes at `offset`, whole blocks directly, partial ones through
 * block_buffer. */
static int storage_io(uint32_t offset, uint8_t *out, const uint8_t *data, uint32_t size)
{
    while (size > 0) {
        uint32_t block = offset / block_bytes, skip = offset % block_bytes, n;
        if (skip == 0 && size >= block_bytes) {
            uint32_t count = size / block_bytes < STORAGE_MAX_BLOCKS ? size / block_bytes : STORAGE_MAX_BLOCKS;
            n = count * block_bytes;
            if (blocks_io(data != RT_NULL, block, data != RT_NULL ? (void *)(uintptr_t)data : out, count) != 0)
                return -1;
        } else {
            n = block_bytes - skip < size ? block_bytes - skip : size;
            if (blocks_io(0, block, block_buffer, 1) != 0)
                return -1;
            if (data == RT_NULL) {
                memcpy(out, block_buffer + skip, n);
            } else {
                memcpy(block_buffer + skip, data, n);
                if (blocks_io(1, block, block_buffer, 1) != 0)
                    return -1;
            }
        }
        offset += n;
        size -= n;
        if (data != RT_NULL)
            data += n;
        else
            out += n;
    }
    return 0;
}

int rt_port_storage_read(uint32_t offset, void *buf, uint32_t size)
{
    if (!storage_ready("read", offset, size))
        return -1;
    return storage_io(offset, buf, RT_NULL, size);
}

int rt_port_storage_erase(uint32_t offset, uint32_t size)
{
    uint32_t at;
    if (!storage_ready("erase", offset, size))
        return -1;
    if (offset % RT_PORT_STORAGE_SECTOR != 0 || size % RT_PORT_STORAGE_SECTOR != 0) {
        rt_kprintf("board: storage erase 0x%lx + %lu is not whole %u-byte sectors\n", (unsigned long)offset,
                   (unsigned long)size, (unsigned)RT_PORT_STORAGE_SECTOR);
        return -1;
    }
    for (at = offset; at - offset < size; at += RT_PORT_STORAGE_SECTOR) {
        memset(block_buffer, 0xFF, sizeof(block_buffer));
        if (blocks_io(1, at / block_bytes, block_buffer, RT_PORT_STORAGE_SECTOR / block_bytes) != 0)
            return -1;
        memset((uint8_t *)(uintptr_t)(FW_FLASH_BASE + at), 0xFF, RT_PORT_STORAGE_SECTOR);
    }
    return 0;
}

int rt_port_storage_write(uint32_t offset, const void *buf, uint32_t size)
{
    if (!storage_ready("write", offset, size) || storage_io(offset, RT_NULL, buf, size) != 0)
        return -1;
    memcpy((uint8_t *)(uintptr_t)(FW_FLASH_BASE + offset), buf, size);
    return 0;
}
