/* QEMU (RISC-V virt, -bios none) target of the RT-Thread port: 16550 UART console, CLINT mtime ticks,
 * exit through the sifive_test device, kmodel and frames placed in memory by QEMU's loader device. */
#include <stdio.h>
#include <string.h>

#include "boot_info.h"
#include "memory_map.h"
#include "ppm_frame.h"
#include "rt_port_board.h"
#include "rtthread.h"

#define UART_THR 0
#define UART_LSR 5
#define UART_LSR_THRE 0x20
#define TEST_PASS 0x5555u
#define TEST_FAIL 0x3333u

#define BOOT ((const struct boot_info *)(uintptr_t)FW_BOOT_INFO_ADDR)

static void uart_putc(char c)
{
    volatile uint8_t *uart = (volatile uint8_t *)(uintptr_t)FW_UART_BASE;
    while ((uart[UART_LSR] & UART_LSR_THRE) == 0)
        ;
    uart[UART_THR] = (uint8_t)c;
}

static int stdout_put(char c, FILE *file)
{
    (void)file;
    if (c == '\n')
        uart_putc('\r');
    uart_putc(c);
    return (unsigned char)c;
}

static FILE uart_stdout = FDEV_SETUP_STREAM(stdout_put, NULL, NULL, _FDEV_SETUP_WRITE);
FILE *const stdout = &uart_stdout;
FILE *const stderr = &uart_stdout;

/* End the emulation with the program's status (0 = pass). */
void _exit(int status)
{
    volatile uint32_t *test = (volatile uint32_t *)(uintptr_t)FW_TEST_DEVICE;
    *test = status == 0 ? TEST_PASS : (((uint32_t)status & 0xffffu) << 16) | TEST_FAIL;
    for (;;)
        __asm__ volatile("wfi");
}

void port_trap(uint64_t cause, uint64_t pc, uint64_t value);
void port_trap(uint64_t cause, uint64_t pc, uint64_t value)
{
    rt_kprintf("trap: mcause=0x%lx mepc=0x%lx mtval=0x%lx\n", (unsigned long)cause, (unsigned long)pc,
               (unsigned long)value);
    _exit(3);
}

rt_tick_t rt_tick_get(void)
{
    volatile uint64_t *mtime = (volatile uint64_t *)(uintptr_t)FW_MTIME_ADDR;
    return (rt_tick_t)(*mtime / (FW_MTIME_HZ / RT_TICK_PER_SECOND));
}

const uint8_t *rt_port_flash_map(uint32_t offset, uint32_t size)
{
    uint32_t i;
    for (i = 0; i < BOOT->flash_region_count && i < FW_MAX_FLASH_REGIONS; i++) {
        const struct boot_region *r = &BOOT->flash[i];
        if (offset >= r->start && (uint64_t)offset + size <= (uint64_t)r->start + r->size)
            return (const uint8_t *)(uintptr_t)(FW_FLASH_BASE + offset);
    }
    return NULL;
}

uint8_t *rt_port_kpu_ram(void)
{
    return (uint8_t *)(uintptr_t)FW_AI_RAM_BASE;
}

int rt_port_frame_count(void)
{
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
    return (BOOT->flags & FW_BOOT_FLAG_DUMP) != 0;
}

void rt_port_show(const struct rt_port_frame *frame, const float (*boxes)[4], const uint32_t *classes, uint32_t count)
{
    /* The virt machine has no display here: the JSON line on the UART is the result. */
    (void)frame, (void)boxes, (void)classes, (void)count;
}

int rt_port_instructions(uint64_t *count)
{
    uint64_t n;
    if ((BOOT->flags & FW_BOOT_FLAG_COUNT_INSTRUCTIONS) == 0)
        return 0;
    __asm__ volatile("csrr %0, minstret" : "=r"(n));
    *count = n;
    return 1;
}

int port_main(void);
int port_main(void)
{
    char command[FW_COMMAND_BYTES];
    if (BOOT->magic != FW_BOOT_INFO_MAGIC || BOOT->version != FW_BOOT_INFO_VERSION) {
        rt_kprintf("boot: no boot info block at 0x%lx (magic 0x%lx, version %lu); load it with QEMU's loader "
                   "device\n", (unsigned long)FW_BOOT_INFO_ADDR, (unsigned long)BOOT->magic,
                   (unsigned long)BOOT->version);
        return 4;
    }
    memcpy(command, BOOT->command, sizeof(command));
    command[sizeof(command) - 1] = '\0';
    if (rt_components_init() != 0)
        return 1;
    return msh_exec(command, (rt_size_t)strlen(command)) == 0 ? 0 : 1;
}
