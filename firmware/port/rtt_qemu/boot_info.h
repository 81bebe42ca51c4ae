/* The block the run script places at FW_BOOT_INFO_ADDR with QEMU's loader device: what is in flash, where the
 * frames are and the harness switches. Layout mirrored by deploy/firmware/memory_map.py. */
#ifndef BOOT_INFO_H
#define BOOT_INFO_H

#include <stdint.h>

#include "memory_map.h"

struct boot_region {
    uint32_t start; /* flash offset (flash regions) or absolute address (frames) */
    uint32_t size;
};

struct boot_info {
    uint32_t magic;   /* FW_BOOT_INFO_MAGIC */
    uint32_t version; /* FW_BOOT_INFO_VERSION */
    uint32_t flags;   /* FW_BOOT_FLAG_* */
    uint32_t flash_region_count;
    uint32_t frame_count;
    uint32_t reserved;
    struct boot_region flash[FW_MAX_FLASH_REGIONS];
    struct boot_region frames[FW_MAX_FRAMES];
};

#endif
