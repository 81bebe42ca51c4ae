/* CRC-32 of IEEE 802.3 (reflected polynomial 0xEDB88320), the one Python's zlib.crc32 computes. */
#ifndef CRC32_IEEE_H
#define CRC32_IEEE_H

#include <stdint.h>

/* The CRC of `size` more bytes after the bytes whose CRC is `crc` (0 to start): chaining calls over the pieces of a
 * message gives the CRC of the whole, as zlib.crc32(data, crc) does. */
uint32_t crc32_ieee(uint32_t crc, const void *data, uint32_t size);

#endif
