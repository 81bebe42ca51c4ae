/* Test double of the SDK's SPI calls the flash port makes. */
#include <stddef.h>
#include <stdint.h>
typedef enum { SPI_DEVICE_0, SPI_DEVICE_1, SPI_DEVICE_2, SPI_DEVICE_3 } spi_device_num_t;
typedef enum { SPI_CHIP_SELECT_0 } spi_chip_select_t;
typedef enum { SPI_WORK_MODE_0 } spi_work_mode_t;
typedef enum { SPI_FF_STANDARD } spi_frame_format_t;
void spi_init(spi_device_num_t spi_num, spi_work_mode_t work_mode, spi_frame_format_t frame_format,
              size_t data_bit_length, uint32_t endian);
uint32_t spi_set_clk_rate(spi_device_num_t spi_num, uint32_t spi_clk);
void spi_receive_data_standard(spi_device_num_t spi_num, spi_chip_select_t chip_select, const uint8_t *cmd_buff,
                               size_t cmd_len, uint8_t *rx_buff, size_t rx_len);
void spi_send_data_standard(spi_device_num_t spi_num, spi_chip_select_t chip_select, const uint8_t *cmd_buff,
                            size_t cmd_len, const uint8_t *tx_buff, size_t tx_len);
