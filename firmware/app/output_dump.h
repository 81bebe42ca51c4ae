/* The test harness's view of a model's raw output tensors: one JSON line per output,
 * {"frame":F,"output":O,"bytes":N,"hex":"..."}, for byte comparison with the simulator. */
#ifndef OUTPUT_DUMP_H
#define OUTPUT_DUMP_H

#include "rt_ai_port.h"

void output_dump(rt_ai_t model, rt_uint32_t outputs, int frame);

#endif
