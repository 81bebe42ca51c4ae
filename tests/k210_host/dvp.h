/* Test double of the SDK's DVP calls (the bit values are the harness's own). */
#include <stdint.h>
#define DVP_CFG_START_INT_ENABLE 0x1u
#define DVP_CFG_FINISH_INT_ENABLE 0x2u
#define DVP_CFG_RGB_FORMAT 0u
#define DVP_STS_FRAME_START 0x1u
#define DVP_STS_FRAME_FINISH 0x100u
typedef enum { DVP_OUTPUT_AI, DVP_OUTPUT_DISPLAY } dvp_output_mode_t;
void dvp_init(uint8_t reg_len);
uint32_t dvp_set_xclk_rate(uint32_t xclk_rate);
void dvp_enable_burst(void);
void dvp_set_output_enable(dvp_output_mode_t index, int enable);
void dvp_set_image_format(uint32_t format);
void dvp_set_image_size(uint32_t width, uint32_t height);
void dvp_set_ai_addr(uint32_t r_addr, uint32_t g_addr, uint32_t b_addr);
void dvp_set_display_addr(uint32_t addr);
void dvp_start_convert(void);
void dvp_config_interrupt(uint32_t interrupt, uint8_t enable);
int dvp_get_interrupt(uint32_t interrupt);
void dvp_clear_interrupt(uint32_t interrupt);
void dvp_disable_auto(void);
void dvp_sccb_send_data(uint8_t dev_addr, uint16_t reg_addr, uint8_t reg_data);
uint8_t dvp_sccb_receive_data(uint8_t dev_addr, uint16_t reg_addr);
