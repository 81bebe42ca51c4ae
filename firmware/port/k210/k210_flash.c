/* rt_port_flash_map and rt_port_storage_* on the board: the SPI NOR flash the K210 boots from (SPI3, chip select 0,
 * fixed pins) through the SDK's SPI driver. A mapped region is read into a 256-byte aligned RAM copy that lives as
 * long as the program; an erased (all 0xFF) region counts as "nothing stored there". The JEDEC id gives the chip's
 * size. Storage erases 4 KiB sectors (0x20) and programs pages (0x02, never across a page boundary), each after a
 * WRITE ENABLE (0x06) and followed by polling the status register (0x05) until the chip is no longer busy; what
 * they change is copied into the mapped RAM copies that overlap, so those never go stale. One thread at a time
 * may use the flash (nothing here locks SPI3 between threads or cores). */
#include <stdint.h>
#include <string.h>

#include <rthw.h>
#include <rtthread.h>

#include <spi.h>

#include "k210_port.h"

#define FLASH_SPI SPI_DEVICE_3
#define FLASH_CS SPI_CHIP_SELECT_0
#define FLASH_CMD_READ 0x03
#define FLASH_CMD_JEDEC_ID 0x9F
#define FLASH_CMD_WRITE_ENABLE 0x06
#define FLASH_CMD_READ_STATUS 0x05
#define FLASH_CMD_SECTOR_ERASE 0x20
#define FLASH_CMD_PAGE_PROGRAM 0x02
#define FLASH_STATUS_BUSY 0x01         /* WIP: an erase or program is running */
#define FLASH_STATUS_WRITE_ENABLED 0x02 /* WEL */
#define FLASH_ADDRESS_LIMIT (1u << 24) /* the 3-byte addresses of these commands */
#define FLASH_ALIGN 256
/* Bytes per READ command. Interrupts are off during each one: in EEPROM mode the SPI keeps clocking and its
 * 32-entry receive FIFO overflows if the CPU is called away, so chunks stay short (about 0.1 ms at 20 MHz). The
 * same holds for every command sent: in transmit mode the controller ends the command (chip select high) when its
 * FIFO runs empty, which in a PAGE PROGRAM would cut the page short. (spi_send_data_standard allocates its
 * command + data buffer from the heap inside that section; RT-Thread's heap lock may switch threads there, before
 * the first byte is sent, which leaves the transfer itself uninterrupted.) */
#define FLASH_CHUNK 256u

struct flash_map {
    uint32_t offset, size;
    uint8_t *data;
};

static struct flash_map flash_maps[K210_FLASH_MAPS];
static uint32_t flash_bytes; /* chip size from the JEDEC id */
static int flash_probed;

/* Probe the chip once; its size in bytes, 0 (after one message) when nothing answers. */
static uint32_t flash_probe(void)
{
    static const uint8_t cmd[1] = {FLASH_CMD_JEDEC_ID};
    uint8_t id[3];
    if (flash_probed)
        return flash_bytes;
    flash_probed = 1;
    spi_init(FLASH_SPI, SPI_WORK_MODE_0, SPI_FF_STANDARD, 8, 0);
    spi_set_clk_rate(FLASH_SPI, K210_FLASH_SPI_HZ);
    spi_receive_data_standard(FLASH_SPI, FLASH_CS, cmd, sizeof(cmd), id, sizeof(id));
    if (id[0] == 0x00 || id[0] == 0xFF || id[2] < 16 || id[2] > 28) {
        rt_kprintf("board: SPI3 flash not answering (JEDEC id %02x %02x %02x)\n", id[0], id[1], id[2]);
        return 0;
    }
    flash_bytes = 1u << id[2];
    return flash_bytes;
}

/* The region [offset, offset + size) is inside the chip (and reachable with 3-byte addresses); else 0 after a
 * message. */
static int flash_in_range(const char *what, uint32_t offset, uint32_t size)
{
    uint32_t chip = flash_probe(), limit = chip < FLASH_ADDRESS_LIMIT ? chip : FLASH_ADDRESS_LIMIT;
    if (chip == 0)
        return 0;
    if ((uint64_t)offset + size > limit) {
        rt_kprintf("board: flash %s 0x%x + %u bytes is past the %u bytes it can reach\n", what, (unsigned)offset,
                   (unsigned)size, (unsigned)limit);
        return 0;
    }
    return 1;
}

static void flash_read(uint32_t offset, uint8_t *dst, uint32_t size)
{
    while (size > 0) {
        uint32_t n = size < FLASH_CHUNK ? size : FLASH_CHUNK;
        const uint8_t cmd[4] = {FLASH_CMD_READ, (uint8_t)(offset >> 16), (uint8_t)(offset >> 8), (uint8_t)offset};
        rt_base_t level = rt_hw_interrupt_disable();
        spi_receive_data_standard(FLASH_SPI, FLASH_CS, cmd, sizeof(cmd), dst, n);
        rt_hw_interrupt_enable(level);
        offset += n;
        dst += n;
        size -= n;
    }
}

static int flash_erased(const uint8_t *data, uint32_t size)
{
    uint32_t i;
    for (i = 0; i < size; i++)
        if (data[i] != 0xFF)
            return 0;
    return 1;
}

const uint8_t *rt_port_flash_map(uint32_t offset, uint32_t size)
{
    struct flash_map *slot = RT_NULL;
    uint32_t chip, i;
    for (i = 0; i < K210_FLASH_MAPS; i++) {
        if (flash_maps[i].data != RT_NULL && flash_maps[i].offset == offset && flash_maps[i].size >= size)
            return flash_maps[i].data;
        if (flash_maps[i].data == RT_NULL && slot == RT_NULL)
            slot = &flash_maps[i];
    }
    chip = flash_probe();
    if (chip == 0 || size == 0)
        return RT_NULL;
    if (offset >= chip || size > chip - offset) {
        rt_kprintf("board: flash 0x%x + %u bytes is past the %u-byte chip\n", (unsigned)offset, (unsigned)size,
                   (unsigned)chip);
        return RT_NULL;
    }
    if (slot == RT_NULL) {
        rt_kprintf("board: more than %d flash regions mapped\n", K210_FLASH_MAPS);
        return RT_NULL;
    }
    slot->data = rt_malloc_align(size, FLASH_ALIGN);
    if (slot->data == RT_NULL) {
        rt_kprintf("board: no RAM for a %u-byte copy of flash 0x%x\n", (unsigned)size, (unsigned)offset);
        return RT_NULL;
    }
    flash_read(offset, slot->data, size);
    if (flash_erased(slot->data, size)) {
        rt_kprintf("board: flash 0x%x is erased (write the kmodel there first)\n", (unsigned)offset);
        rt_free_align(slot->data);
        slot->data = RT_NULL;
        return RT_NULL;
    }
    slot->offset = offset;
    slot->size = size;
    return slot->data;
}

/* --- the persistent store: erase and program, mirrored into the mapped RAM copies --- */

static uint8_t flash_status(void)
{
    static const uint8_t cmd[1] = {FLASH_CMD_READ_STATUS};
    uint8_t status;
    rt_base_t level = rt_hw_interrupt_disable();
    spi_receive_data_standard(FLASH_SPI, FLASH_CS, cmd, sizeof(cmd), &status, 1);
    rt_hw_interrupt_enable(level);
    return status;
}

static void flash_send(const uint8_t *cmd, uint32_t cmd_len, const uint8_t *data, uint32_t size)
{
    rt_base_t level = rt_hw_interrupt_disable();
    spi_send_data_standard(FLASH_SPI, FLASH_CS, cmd, cmd_len, data, size);
    rt_hw_interrupt_enable(level);
}

/* WRITE ENABLE, checked: 0, or -1 after a message when the chip does not take it (write-protected). */
static int flash_write_enable(void)
{
    static const uint8_t cmd[1] = {FLASH_CMD_WRITE_ENABLE};
    uint8_t status;
    flash_send(cmd, sizeof(cmd), RT_NULL, 0);
    status = flash_status();
    if ((status & FLASH_STATUS_WRITE_ENABLED) == 0) {
        rt_kprintf("board: SPI3 flash refuses writes (status %02x after WRITE ENABLE: write-protected?)\n", status);
        return -1;
    }
    return 0;
}

/* Wait until the erase or program just started is done: 0, or -1 after a message when the chip is still busy after
 * timeout_ms. `pause` lets other threads run between polls (sector erases take tens of milliseconds). */
static int flash_wait(uint32_t timeout_ms, int pause)
{
    rt_tick_t start = rt_tick_get(), limit = rt_tick_from_millisecond((rt_int32_t)timeout_ms);
    uint8_t status;
    while ((status = flash_status()) & FLASH_STATUS_BUSY) {
        if (rt_tick_get() - start > limit) {
            rt_kprintf("board: SPI3 flash still busy after %u ms (status %02x)\n", (unsigned)timeout_ms, status);
            return -1;
        }
        if (pause)
            rt_thread_mdelay(1);
    }
    return 0;
}

/* What an erase (data NULL: 0xFF) or a program wrote, copied into every mapped region it overlaps. */
static void flash_maps_update(uint32_t offset, const uint8_t *data, uint32_t size)
{
    uint32_t i;
    for (i = 0; i < K210_FLASH_MAPS; i++) {
        const struct flash_map *m = &flash_maps[i];
        uint32_t from = offset > m->offset ? offset : m->offset;
        uint64_t end = (uint64_t)offset + size, map_end = (uint64_t)m->offset + m->size;
        uint32_t to = (uint32_t)(end < map_end ? end : map_end);
        if (m->data == RT_NULL || from >= to)
            continue;
        if (data == RT_NULL)
            memset(m->data + (from - m->offset), 0xFF, to - from);
        else
            memcpy(m->data + (from - m->offset), data + (from - offset), to - from);
    }
}

int rt_port_storage_read(uint32_t offset, void *buf, uint32_t size)
{
    if (!flash_in_range("read", offset, size))
        return -1;
    flash_read(offset, buf, size);
    return 0;
}

int rt_port_storage_erase(uint32_t offset, uint32_t size)
{
    uint32_t at;
    if (!flash_in_range("erase", offset, size))
        return -1;
    if (offset % RT_PORT_STORAGE_SECTOR != 0 || size % RT_PORT_STORAGE_SECTOR != 0) {
        rt_kprintf("board: flash erase 0x%x + %u is not whole %u-byte sectors\n", (unsigned)offset, (unsigned)size,
                   (unsigned)RT_PORT_STORAGE_SECTOR);
        return -1;
    }
    for (at = offset; at - offset < size; at += RT_PORT_STORAGE_SECTOR) {
        const uint8_t cmd[4] = {FLASH_CMD_SECTOR_ERASE, (uint8_t)(at >> 16), (uint8_t)(at >> 8), (uint8_t)at};
        if (flash_write_enable() != 0)
            return -1;
        flash_send(cmd, sizeof(cmd), RT_NULL, 0);
        if (flash_wait(K210_FLASH_ERASE_TIMEOUT_MS, 1) != 0)
            return -1;
        flash_maps_update(at, RT_NULL, RT_PORT_STORAGE_SECTOR);
    }
    return 0;
}

int rt_port_storage_write(uint32_t offset, const void *buf, uint32_t size)
{
    const uint8_t *data = buf;
    uint32_t done, n;
    if (!flash_in_range("write", offset, size))
        return -1;
    for (done = 0; done < size; done += n) {
        uint32_t at = offset + done;
        const uint8_t cmd[4] = {FLASH_CMD_PAGE_PROGRAM, (uint8_t)(at >> 16), (uint8_t)(at >> 8), (uint8_t)at};
        n = K210_FLASH_PAGE_BYTES - at % K210_FLASH_PAGE_BYTES; /* to the end of the page */
        n = n < size - done ? n : size - done;
        if (flash_write_enable() != 0)
            return -1;
        flash_send(cmd, sizeof(cmd), data + done, n);
        if (flash_wait(K210_FLASH_PROGRAM_TIMEOUT_MS, 0) != 0)
            return -1;
        flash_maps_update(at, data + done, n);
    }
    return 0;
}
