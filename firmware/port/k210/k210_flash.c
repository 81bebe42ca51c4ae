/* rt_port_flash_map on the board: the SPI NOR flash the K210 boots from (SPI3, chip select 0, fixed pins) read
 * with the SDK's SPI driver into a 256-byte aligned RAM copy that lives as long as the program. The JEDEC id gives
 * the chip's size; an erased (all 0xFF) region counts as "nothing stored there". */
#include <stdint.h>

#include <rthw.h>
#include <rtthread.h>

#include <spi.h>

#include "k210_port.h"

#define FLASH_SPI SPI_DEVICE_3
#define FLASH_CS SPI_CHIP_SELECT_0
#define FLASH_CMD_READ 0x03
#define FLASH_CMD_JEDEC_ID 0x9F
#define FLASH_ALIGN 256
/* Bytes per READ command. Interrupts are off during each one: in EEPROM mode the SPI keeps clocking and its
 * 32-entry receive FIFO overflows if the CPU is called away, so chunks stay short (about 0.1 ms at 20 MHz). */
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
