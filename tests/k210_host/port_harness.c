/* Host harness for firmware/port/k210's flash port and display and firmware/rt_ai/backend_k210_kpu.c over test
 * doubles of the SDK (SPI3 NOR flash chip, KPU, bsp/k210's dmalock and lcd device). Prints one JSON line;
 * argv[1] picks the case: "flash", "noflash", "kpu", "lcd", "nolcd", "nor", "nor_protected", "nor_stuck". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_k210_kpu.h"
#include "dmalock.h"
#include "fake_state.h"
#include "k210_port.h"
#include "rtdevice.h"
#include "spi.h"

#define FLASH_BYTES (16u << 20)
#define KMODEL_OFFSET 0x300000u
#define KMODEL_BYTES 70001u

static const char *mode;

/* --- SPI3 NOR flash chip: JEDEC id EF 40 18 (16 MiB), READ 0x03 serves flash_image; WRITE ENABLE 0x06, STATUS
 * 0x05 (WIP, WEL), SECTOR ERASE 0x20 and PAGE PROGRAM 0x02 (bits only cleared, the address wrapping inside its
 * 256-byte page as on the chip) change it. Each erase or program keeps the chip busy for a few status polls; the
 * chip ignores commands while busy and erase/program without WEL, as a real one does, and counts them. --- */
static uint8_t *flash_image;
static int reads_with_irq_on, longest_read;
static int chip_wel, chip_busy, chip_write_protected, chip_stuck;
static int sends_with_irq_on, commands_while_busy, without_wel, page_crossings, erases, programs;

void spi_init(spi_device_num_t spi_num, spi_work_mode_t work_mode, spi_frame_format_t frame_format,
              size_t data_bit_length, uint32_t endian)
{
    (void)spi_num, (void)work_mode, (void)frame_format, (void)data_bit_length, (void)endian;
}

uint32_t spi_set_clk_rate(spi_device_num_t spi_num, uint32_t spi_clk)
{
    (void)spi_num;
    return spi_clk;
}

static uint32_t address(const uint8_t *cmd)
{
    return (uint32_t)cmd[1] << 16 | (uint32_t)cmd[2] << 8 | cmd[3];
}

void spi_receive_data_standard(spi_device_num_t spi_num, spi_chip_select_t chip_select, const uint8_t *cmd_buff,
                               size_t cmd_len, uint8_t *rx_buff, size_t rx_len)
{
    static const uint8_t jedec[3] = {0xEF, 0x40, 0x18};
    (void)spi_num, (void)chip_select;
    if (strcmp(mode, "noflash") == 0) {
        memset(rx_buff, 0xFF, rx_len);
    } else if (cmd_len == 1 && cmd_buff[0] == 0x05) {
        rx_buff[0] = (uint8_t)((chip_busy > 0) | chip_wel << 1);
        chip_busy -= chip_busy > 0 && !chip_stuck;
    } else if (chip_busy > 0) {
        commands_while_busy++;
    } else if (cmd_len == 1 && cmd_buff[0] == 0x9F) {
        memcpy(rx_buff, jedec, rx_len < 3 ? rx_len : 3);
    } else if (cmd_len == 4 && cmd_buff[0] == 0x03) {
        reads_with_irq_on += fake_irq_off == 0;
        longest_read = (int)rx_len > longest_read ? (int)rx_len : longest_read;
        memcpy(rx_buff, flash_image + address(cmd_buff), rx_len);
    } else {
        abort();
    }
}

void spi_send_data_standard(spi_device_num_t spi_num, spi_chip_select_t chip_select, const uint8_t *cmd_buff,
                            size_t cmd_len, const uint8_t *tx_buff, size_t tx_len)
{
    size_t i;
    (void)spi_num, (void)chip_select;
    sends_with_irq_on += fake_irq_off == 0;
    if (chip_busy > 0) {
        commands_while_busy++;
    } else if (cmd_len == 1 && cmd_buff[0] == 0x06) {
        chip_wel = !chip_write_protected;
    } else if (cmd_len == 4 && (cmd_buff[0] == 0x20 || cmd_buff[0] == 0x02) && !chip_wel) {
        without_wel++;
    } else if (cmd_len == 4 && cmd_buff[0] == 0x20 && tx_len == 0) {
        memset(flash_image + (address(cmd_buff) & ~0xFFFu), 0xFF, 0x1000);
        erases++;
        chip_wel = 0;
        chip_busy = chip_stuck ? 1 : 5;
    } else if (cmd_len == 4 && cmd_buff[0] == 0x02 && tx_len <= 256) {
        uint32_t at = address(cmd_buff);
        page_crossings += at % 256 + tx_len > 256;
        for (i = 0; i < tx_len; i++)
            flash_image[(at & ~0xFFu) | ((at + i) & 0xFFu)] &= tx_buff[i];
        programs++;
        chip_wel = 0;
        chip_busy = chip_stuck ? 1 : 2;
    } else {
        abort();
    }
}

/* --- dmalock: channel 3 is the free one unless the case says all are taken --- */
static int channels_taken, channels_released, no_free_channel;
static dmac_channel_number_t last_released = DMAC_CHANNEL_MAX;

int _dmalock_sync_take(dmac_channel_number_t *chn, int timeout_ms, const char *name)
{
    (void)timeout_ms, (void)name;
    *chn = DMAC_CHANNEL_MAX;
    if (no_free_channel)
        return -RT_ETIMEOUT;
    channels_taken++;
    *chn = DMAC_CHANNEL3;
    return RT_EOK;
}

void dmalock_release(dmac_channel_number_t chn)
{
    channels_released += chn < DMAC_CHANNEL_MAX;
    last_released = chn;
}

/* --- KPU: remembers the model and the done callback; a run can be made to fail --- */
static const uint8_t *loaded_model;
static kpu_done_callback_t pending_done;
static void *pending_arg;
static dmac_channel_number_t run_channel = DMAC_CHANNEL_MAX;
static int kpu_run_fails;

int kpu_load_kmodel(kpu_model_context_t *ctx, const uint8_t *buffer)
{
    ctx->model = buffer;
    loaded_model = buffer;
    return 0;
}

int kpu_run_kmodel(kpu_model_context_t *ctx, const uint8_t *src, dmac_channel_number_t dma_ch,
                   kpu_done_callback_t done_callback, void *userdata)
{
    (void)ctx, (void)src;
    if (kpu_run_fails)
        return -1;
    run_channel = dma_ch;
    pending_done = done_callback;
    pending_arg = userdata;
    return 0;
}

int kpu_get_output(kpu_model_context_t *ctx, uint32_t index, uint8_t **data, size_t *size)
{
    (void)ctx, (void)index, (void)data, (void)size;
    return -1;
}

static const struct rt_ai_backend_ops *plugged;

void rt_ai_plug_backend(rt_ai_t ai, const struct rt_ai_backend_ops *ops)
{
    (void)ai;
    plugged = ops;
}

/* --- the "lcd" graphic device: 320 x 240 RGB565 --- */
static uint16_t lcd_fb[240][320];
static int lcd_finds, lcd_updates, lcd_update_full;

rt_device_t rt_device_find(const char *name)
{
    lcd_finds++;
    return strcmp(mode, "lcd") == 0 && strcmp(name, "lcd") == 0 ? (rt_device_t)(void *)lcd_fb : RT_NULL;
}

rt_err_t rt_device_open(rt_device_t dev, rt_uint16_t oflag)
{
    (void)dev, (void)oflag;
    return RT_EOK;
}

rt_err_t rt_device_close(rt_device_t dev)
{
    (void)dev;
    return RT_EOK;
}

rt_err_t rt_device_control(rt_device_t dev, int cmd, void *arg)
{
    (void)dev;
    if (cmd == RTGRAPHIC_CTRL_GET_INFO) {
        struct rt_device_graphic_info *info = arg;
        memset(info, 0, sizeof(*info));
        info->pixel_format = RTGRAPHIC_PIXEL_FORMAT_RGB565;
        info->width = 320;
        info->height = 240;
        info->framebuffer = (rt_uint8_t *)lcd_fb;
    } else if (cmd == RTGRAPHIC_CTRL_RECT_UPDATE) {
        const struct rt_device_rect_info *r = arg;
        lcd_updates++;
        lcd_update_full += r->x == 0 && r->y == 0 && r->width == 320 && r->height == 240;
    }
    return RT_EOK;
}

/* --- the cases --- */
static void flash_case(void)
{
    const uint8_t *a = rt_port_flash_map(KMODEL_OFFSET, KMODEL_BYTES);
    const uint8_t *again = rt_port_flash_map(KMODEL_OFFSET, KMODEL_BYTES);
    const uint8_t *erased = rt_port_flash_map(0x800000u, 4096);
    const uint8_t *past = rt_port_flash_map(FLASH_BYTES - 16, 32);
    int extra = 0, i;
    for (i = 0; i < 5; i++) /* four slots: one is taken, three more fit, the fifth region does not */
        extra += rt_port_flash_map(0x10000u * (uint32_t)(i + 1), 64) != RT_NULL;
    printf("{\"mapped\":%d,\"aligned\":%d,\"equal\":%d,\"same_again\":%d,\"erased_null\":%d,\"past_null\":%d,"
           "\"extra_maps\":%d,\"reads_with_irq_on\":%d,\"longest_read\":%d}\n",
           a != RT_NULL, a != RT_NULL && (uintptr_t)a % 256 == 0,
           a != RT_NULL && memcmp(a, flash_image + KMODEL_OFFSET, KMODEL_BYTES) == 0, again == a, erased == RT_NULL,
           past == RT_NULL, extra, reads_with_irq_on, longest_read);
}

static int done_calls;

static void user_done(void *arg)
{
    done_calls += arg == (void *)&done_calls;
}

static void kpu_case(void)
{
    static struct k210_kpu k = {.model = RT_NULL, .flash_offset = KMODEL_OFFSET, .model_size = KMODEL_BYTES};
    static uint8_t input[16];
    int init, run_ok, released_before_done, run_fail, no_channel, config;
    strcpy(k.parent.name, "face");
    backend_k210_kpu(&k);
    init = plugged->init(&k.parent, input);
    run_ok = plugged->run(&k.parent, user_done, &done_calls);
    released_before_done = channels_released;
    pending_done(pending_arg); /* the KPU finishes (interrupt context on the board) */
    kpu_run_fails = 1;
    run_fail = plugged->run(&k.parent, user_done, &done_calls);
    kpu_run_fails = 0;
    no_free_channel = 1;
    no_channel = plugged->run(&k.parent, user_done, &done_calls);
    config = plugged->config(&k.parent, 1, input);
    printf("{\"init\":%d,\"model_from_flash\":%d,\"run\":%d,\"run_channel\":%d,\"released_before_done\":%d,"
           "\"done_calls\":%d,\"failed_run\":%d,\"no_channel\":%d,\"taken\":%d,\"released\":%d,"
           "\"last_released\":%d,\"config\":%d}\n",
           init, loaded_model != RT_NULL && memcmp(loaded_model, flash_image + KMODEL_OFFSET, KMODEL_BYTES) == 0,
           run_ok, (int)run_channel, released_before_done, done_calls, run_fail, no_channel, channels_taken,
           channels_released, (int)last_released, config);
}

static void display_case(void)
{
    static uint16_t camera[240][320];
    static const float boxes[1][4] = {{10.0f, 20.0f, 100.0f, 200.0f}};
    static const uint32_t classes[1] = {0};
    int x, y;
    for (y = 0; y < 240; y++)
        for (x = 0; x < 320; x++)
            camera[y][x] = (uint16_t)(y * 320 + x);
    k210_display_show(&camera[0][0], 320, 240, boxes, classes, 1);
    k210_display_show(&camera[0][0], 320, 240, boxes, classes, 1);
    printf("{\"finds\":%d,\"updates\":%d,\"full_updates\":%d,\"pixel_0_0\":%d,\"pixel_1_0\":%d,\"box_corner\":%d,"
           "\"inside_box\":%d}\n", lcd_finds, lcd_updates, lcd_update_full, lcd_fb[0][0], lcd_fb[0][1],
           lcd_fb[20][10], lcd_fb[100][50]);
}

/* Storage over two sectors of a mapped region: erase, a write across pages and a sector boundary, read back. */
#define NOR_MAP 0x10000u
#define NOR_ERASE 0x11000u
#define NOR_WRITE 0x11FA0u
#define NOR_BYTES 3000u

static void nor_case(void)
{
    static uint8_t data[NOR_BYTES], back[NOR_BYTES], expected[0x3000];
    const uint8_t *mapped = rt_port_flash_map(NOR_MAP, sizeof(expected));
    int erase_rc, write_rc, read_rc, unaligned, past, i;
    memcpy(expected, flash_image + NOR_MAP, sizeof(expected));
    memset(expected + (NOR_ERASE - NOR_MAP), 0xFF, 0x2000);
    for (i = 0; i < (int)NOR_BYTES; i++)
        data[i] = expected[NOR_WRITE - NOR_MAP + i] = (uint8_t)(i * 7 + 1);
    erase_rc = rt_port_storage_erase(NOR_ERASE, 0x2000);
    write_rc = rt_port_storage_write(NOR_WRITE, data, NOR_BYTES);
    read_rc = rt_port_storage_read(NOR_WRITE, back, NOR_BYTES);
    unaligned = rt_port_storage_erase(NOR_ERASE + 1, 0x1000);
    past = rt_port_storage_write(FLASH_BYTES - 10, data, 20);
    printf("{\"erase\":%d,\"write\":%d,\"read\":%d,\"read_equal\":%d,\"image_equal\":%d,\"map_equal\":%d,"
           "\"unaligned\":%d,\"past\":%d,\"erases\":%d,\"programs\":%d,\"page_crossings\":%d,"
           "\"sends_with_irq_on\":%d,\"commands_while_busy\":%d,\"without_wel\":%d}\n",
           erase_rc, write_rc, read_rc, memcmp(back, data, NOR_BYTES) == 0,
           memcmp(flash_image + NOR_MAP, expected, sizeof(expected)) == 0,
           mapped != RT_NULL && memcmp(mapped, expected, sizeof(expected)) == 0, unaligned, past, erases, programs,
           page_crossings, sends_with_irq_on, commands_while_busy, without_wel);
}

/* A chip that refuses WRITE ENABLE, or one that stays busy: the storage call fails with a message. */
static void nor_failure_case(void)
{
    uint8_t byte = 0;
    int erase_rc, write_rc;
    chip_write_protected = strcmp(mode, "nor_protected") == 0;
    chip_stuck = strcmp(mode, "nor_stuck") == 0;
    erase_rc = rt_port_storage_erase(NOR_ERASE, 0x1000);
    write_rc = rt_port_storage_write(NOR_WRITE, &byte, 1);
    printf("{\"erase\":%d,\"write\":%d,\"erases\":%d,\"programs\":%d}\n", erase_rc, write_rc, erases, programs);
}

int main(int argc, char **argv)
{
    mode = argc > 1 ? argv[1] : "flash";
    flash_image = malloc(FLASH_BYTES);
    memset(flash_image, 0xFF, FLASH_BYTES);
    for (uint32_t i = 0; i < 0x800000u; i++)
        flash_image[i] = (uint8_t)(i * 2654435761u >> 24);
    if (strcmp(mode, "kpu") == 0)
        kpu_case();
    else if (strcmp(mode, "lcd") == 0 || strcmp(mode, "nolcd") == 0)
        display_case();
    else if (strcmp(mode, "nor") == 0)
        nor_case();
    else if (strncmp(mode, "nor_", 4) == 0)
        nor_failure_case();
    else
        flash_case();
    return 0;
}
