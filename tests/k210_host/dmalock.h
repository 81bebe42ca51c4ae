/* Test double of bsp/k210's dmalock API (same names and macro as drivers/dmalock.h). */
#include "dmac.h"
#define dmalock_sync_take(x, y) _dmalock_sync_take(x, y, __func__)
int _dmalock_sync_take(dmac_channel_number_t *chn, int timeout_ms, const char *name);
void dmalock_release(dmac_channel_number_t chn);
