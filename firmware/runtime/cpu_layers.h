/* The CPU-side layers of a kmodel V3 (kmodel-v3-and-kpu.md section 7.4), working on the main buffer. */
#ifndef CPU_LAYERS_H
#define CPU_LAYERS_H

#include <stdint.h>

/* 0 when the body of a layer of `type` fits `body_size` and every buffer it touches lies inside `main_bytes`;
 * otherwise non-zero with *bad_field set to the byte offset (inside the body) of the offending field. */
int cpu_layer_check(uint32_t type, const uint8_t *body, uint32_t body_size, uint32_t main_bytes, uint32_t *bad_field);

/* Does the runtime implement this CPU layer type? */
int cpu_layer_known(uint32_t type);

/* Execute one checked CPU layer. kpu_ram is needed by the K210 padding/upload layers. */
void cpu_layer_run(uint32_t type, const uint8_t *body, uint8_t *main, uint8_t *kpu_ram);

#endif
