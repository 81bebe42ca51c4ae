/* rt_port_storage_* on the host: a flash-image file (host_storage_open) that acts like the board's NOR flash.
 * Erase sets whole sectors to 0xFF; write programs bytes, which on NOR can only clear bits: a write that would have
 * to set a 0 bit back to 1 (a byte programmed since the last erase, to another value) is refused with -1 and a
 * console message and nothing is written, where the chip would silently store the AND of both. So a missing erase
 * shows in tests instead of corrupting data on the board. Every call reaches the file before it returns (pwrite),
 * so a process that stops at any point leaves what a board would hold after a power cut there. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rt_port_board.h"
#include "rtthread.h"
#include "storage_host.h"

#define STORAGE_BLOCK 4096u /* bytes per file access */

static int storage_fd = -1;

/* pread or pwrite all `size` bytes at `at` (short transfers continue); 0, or -1. */
static int transfer_all(int fd, uint8_t *data, const uint8_t *source, size_t size, off_t at)
{
    while (size > 0) {
        ssize_t n = source != NULL ? pwrite(fd, source, size, at) : pread(fd, data, size, at);
        if (n <= 0)
            return -1;
        if (source != NULL)
            source += n;
        else
            data += n;
        size -= (size_t)n;
        at += n;
    }
    return 0;
}

static int write_all(int fd, const uint8_t *data, size_t size, off_t at)
{
    return transfer_all(fd, NULL, data, size, at);
}

static int read_all(int fd, uint8_t *data, size_t size, off_t at)
{
    return transfer_all(fd, data, NULL, size, at);
}

/* A new erased image at `path`; the fd, or -1. */
static int create_erased(const char *path)
{
    static uint8_t erased[STORAGE_BLOCK];
    uint32_t at;
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0644);
    memset(erased, 0xFF, sizeof(erased));
    for (at = 0; fd >= 0 && at < K210_FLASH_BYTES; at += STORAGE_BLOCK)
        if (write_all(fd, erased, sizeof(erased), (off_t)at) != 0) {
            close(fd);
            unlink(path);
            fd = -1;
        }
    return fd;
}

int host_storage_open(const char *path)
{
    struct stat st;
    int fd = open(path, O_RDWR);
    if (fd < 0 && errno == ENOENT)
        fd = create_erased(path);
    if (fd < 0) {
        fprintf(stderr, "error: cannot open or create the flash image %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) != 0 || st.st_size != (off_t)K210_FLASH_BYTES) {
        fprintf(stderr, "error: %s is not a flash image (%ld bytes, expected %lu)\n", path, (long)st.st_size,
                (unsigned long)K210_FLASH_BYTES);
        close(fd);
        return -1;
    }
    storage_fd = fd;
    return 0;
}

/* The call may go ahead: an image is open and [offset, offset + size) is inside it; else -1 after a message. */
static int storage_range(const char *what, uint32_t offset, uint32_t size)
{
    if (storage_fd < 0) {
        rt_kprintf("board: no flash image for storage %s (run with --storage FILE)\n", what);
        return -1;
    }
    if ((uint64_t)offset + size > K210_FLASH_BYTES) {
        rt_kprintf("board: storage %s of %lu bytes at 0x%lx is past the flash\n", what, (unsigned long)size,
                   (unsigned long)offset);
        return -1;
    }
    return 0;
}

int rt_port_storage_read(uint32_t offset, void *buf, uint32_t size)
{
    if (storage_range("read", offset, size) != 0)
        return -1;
    return read_all(storage_fd, buf, size, (off_t)offset);
}

int rt_port_storage_erase(uint32_t offset, uint32_t size)
{
    static uint8_t erased[RT_PORT_STORAGE_SECTOR];
    uint32_t at;
    if (storage_range("erase", offset, size) != 0)
        return -1;
    if (offset % RT_PORT_STORAGE_SECTOR != 0 || size % RT_PORT_STORAGE_SECTOR != 0) {
        rt_kprintf("board: storage erase 0x%lx + %lu is not whole %u-byte sectors\n", (unsigned long)offset,
                   (unsigned long)size, (unsigned)RT_PORT_STORAGE_SECTOR);
        return -1;
    }
    memset(erased, 0xFF, sizeof(erased));
    for (at = 0; at < size; at += RT_PORT_STORAGE_SECTOR)
        if (write_all(storage_fd, erased, sizeof(erased), (off_t)(offset + at)) != 0)
            return -1;
    return 0;
}

int rt_port_storage_write(uint32_t offset, const void *buf, uint32_t size)
{
    static uint8_t old[STORAGE_BLOCK];
    const uint8_t *data = buf;
    uint32_t at, i, n;
    if (storage_range("write", offset, size) != 0)
        return -1;
    for (at = 0; at < size; at += n) { /* NOR programming only clears bits: check before writing anything */
        n = size - at < STORAGE_BLOCK ? size - at : STORAGE_BLOCK;
        if (read_all(storage_fd, old, n, (off_t)(offset + at)) != 0)
            return -1;
        for (i = 0; i < n; i++)
            if ((old[i] & data[at + i]) != data[at + i]) {
                rt_kprintf("board: storage write at 0x%lx would set bits of a programmed byte (erase first)\n",
                           (unsigned long)(offset + at + i));
                return -1;
            }
    }
    return write_all(storage_fd, data, size, (off_t)offset);
}
