/* Test double of the SDK's PLIC calls k210_camera.c makes. */
#include <stdint.h>
#define IRQN_DVP_INTERRUPT 24
typedef int (*plic_irq_callback_t)(void *ctx);
int plic_set_priority(int irq, uint32_t priority);
void plic_irq_register(int irq, plic_irq_callback_t callback, void *ctx);
int plic_irq_enable(int irq);
