/* The detector application: per camera frame, its input letterboxed into the model, the model run, and the
 * detections in frame pixels, printed as one JSON line (detection.c) and shown on the board's display; the msh
 * command `<name>_detect [N]` over the board's frames, and `<name>_detect_frame` for other applications (the
 * attendance app). The generated <name>_app.c holds one struct detect_app filled from its headers and exports
 * both. */
#ifndef DETECT_APP_H
#define DETECT_APP_H

#include "app_model.h"
#include "detection.h"

struct detect_app {
    struct app_model model;
    struct detection detection;
};

/* Detect in one frame: at most `max` detections, highest score first, boxes in frame pixels; how many, or -1 when
 * the model is missing or could not run. */
int detect_app_frame(struct detect_app *app, const struct rt_port_frame *frame, struct region_detection *out,
                     rt_uint32_t max);
/* The msh command: every frame of the board (or the first N), one JSON line each; 0, or -1 at the first failure. */
int detect_app_command(struct detect_app *app, int argc, char **argv);

#endif
