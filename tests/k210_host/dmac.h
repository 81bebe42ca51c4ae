/* Test double of the SDK's DMA channel numbers. */
#ifndef K210_HOST_DMAC_H
#define K210_HOST_DMAC_H
typedef enum { DMAC_CHANNEL0, DMAC_CHANNEL1, DMAC_CHANNEL2, DMAC_CHANNEL3, DMAC_CHANNEL4, DMAC_CHANNEL5,
               DMAC_CHANNEL_MAX } dmac_channel_number_t;
#endif
