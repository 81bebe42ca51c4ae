/* Binary PPM (P6, maxval 255) frames: the camera stand-in format of the host and QEMU targets. */
#ifndef PPM_FRAME_H
#define PPM_FRAME_H

#include <stddef.h>

#include "rt_port_board.h"

/* Parse a P6 image held in memory into an interleaved RGB888 frame; 0 on success, -1 when malformed. */
int ppm_frame_parse(const uint8_t *buf, size_t size, struct rt_port_frame *frame);

#endif
