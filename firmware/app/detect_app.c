/* The detector application: see detect_app.h. */
#include "detect_app.h"

#include <string.h>

/* The detections of one frame in frame pixels, into the detection's buffers; how many were kept, or -1 when the
 * model could not run. `found` gets how many scored above the threshold before NMS. */
static int detect_app_detect(struct detect_app *app, const struct rt_port_frame *frame, rt_uint32_t *found)
{
    struct letterbox box = detection_input(&app->detection, frame, app->model.input);
    const float *grid;
    if (app_model_run(&app->model) != 0 ||
        (grid = detection_grid(&app->detection, app_model_output(&app->model, 0))) == RT_NULL)
        return -1;
    return (int)detection_decode(&app->detection, grid, frame, &box, found);
}

int detect_app_frame(struct detect_app *app, const struct rt_port_frame *frame, struct region_detection *out,
                     rt_uint32_t max)
{
    const struct detection *d = &app->detection;
    rt_uint32_t found, i;
    int kept;
    if (app_model_setup(&app->model) != 0 || (kept = detect_app_detect(app, frame, &found)) < 0)
        return -1;
    for (i = 0; i < (rt_uint32_t)kept && i < max; i++) {
        memcpy(out[i].box, d->boxes[i], sizeof(out[i].box));
        out[i].score = d->dets[i].score;
        out[i].class_id = d->classes[i];
    }
    return (int)i;
}

static int detect_app_run_frame(struct detect_app *app, int index)
{
    const char *name = app->model.name;
    struct rt_port_frame frame;
    struct app_cost cost;
    rt_uint32_t found;
    int kept;
    if (rt_port_frame_get(index, &frame) != 0) {
        rt_kprintf("%s: frame %d is not a readable RGB888 image\n", name, index);
        return -1;
    }
    app_cost_start(&cost);
    kept = detect_app_detect(app, &frame, &found);
    if (kept < 0) {
        rt_kprintf("%s: inference failed on frame %d\n", name, index);
        return -1;
    }
    app_cost_stop(&cost);
    detection_print(&app->detection, index, (rt_uint32_t)kept, found, app_cost_ms(&cost), cost.counted,
                    cost.instructions);
    rt_port_show(&frame, (const float (*)[4])app->detection.boxes, app->detection.classes, (rt_uint32_t)kept);
    app_model_dump(&app->model, index);
    return 0;
}

int detect_app_command(struct detect_app *app, int argc, char **argv)
{
    int count, i;
    if (app_model_setup(&app->model) != 0)
        return -1;
    count = detection_frame_count(argc, argv, rt_port_frame_count());
    if (count == 0) {
        rt_kprintf("%s: no frames to process\n", app->model.name);
        return -1;
    }
    for (i = 0; i < count; i++)
        if (detect_app_run_frame(app, i) != 0)
            return -1;
    return 0;
}
