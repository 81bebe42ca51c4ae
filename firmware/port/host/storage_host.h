/* The host target's persistent flash store (rt_port_storage_* of rt_port_board.h): a flash-image file. */
#ifndef STORAGE_HOST_H
#define STORAGE_HOST_H

/* Use the K210_FLASH_BYTES flash image at `path`, created erased (0xFF) when missing; 0, or -1 after a message on
 * stderr (not a flash image, cannot be opened or created). Without it every storage call fails with -1. */
int host_storage_open(const char *path);

#endif
