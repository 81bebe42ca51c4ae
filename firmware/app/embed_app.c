/* The recognizer application: see embed_app.h. */
#include "embed_app.h"

#include <string.h>

#include "embedding.h"
#include "face_crop.h"

/* The model's output dequantized and L2-normalised into `values`: 0, or -1 when there is none. */
static int embed_app_unit_output(struct embed_app *app, float *values)
{
    const rt_uint8_t *out = app_model_output(&app->model, 0);
    if (out == RT_NULL)
        return -1;
    if (app->out_quantized)
        embedding_dequantize(out, app->embedding_size, app->out_scale, app->out_zero_point, values);
    else
        memcpy(values, out, app->embedding_size * sizeof(float));
    embedding_normalise(values, app->embedding_size);
    return 0;
}

/* Crop `box` of the frame with the policy, run the model and normalise its output into app->embedding (with the
 * flip policy: mirror the crop in the input buffer, run again, add the two unit embeddings and normalise; then the
 * centre): 0, -1 when the crop is refused, -2 when the model could not run. */
static int embed_app_embed(struct embed_app *app, const struct rt_port_frame *frame, const int box[4])
{
    if (embedding_crop(frame, box, app->crop_margin_permille, app->input_size, app->model.input) != 0)
        return -1;
    if (app_model_run(&app->model) != 0 || embed_app_unit_output(app, app->embedding) != 0)
        return -2;
    if (app->mirror != RT_NULL) {
        face_crop_mirror(app->model.input, 3, app->input_size);
        if (app_model_run(&app->model) != 0 || embed_app_unit_output(app, app->mirror) != 0)
            return -2;
        embedding_add(app->embedding, app->mirror, app->embedding_size);
    }
    embedding_centre(app->embedding, app->centre, app->embedding_size);
    return 0;
}

int embed_app_box(struct embed_app *app, const struct rt_port_frame *frame, const int box[4], float *embedding)
{
    if (app_model_setup(&app->model) != 0 || embed_app_embed(app, frame, box) != 0)
        return -1;
    memcpy(embedding, app->embedding, app->embedding_size * sizeof(float));
    return 0;
}

static int embed_app_run_frame(struct embed_app *app, int index, const struct embedding_request *request)
{
    const char *name = app->model.name;
    struct rt_port_frame frame;
    struct app_cost cost;
    int box[4], status;
    if (rt_port_frame_get(index, &frame) != 0) {
        rt_kprintf("%s: frame %d is not a readable RGB888 image\n", name, index);
        return -1;
    }
    embedding_frame_box(request, &frame, box);
    app_cost_start(&cost);
    status = embed_app_embed(app, &frame, box);
    if (status == -1) {
        rt_kprintf("%s: cannot crop box %d %d %d %d of frame %d\n", name, box[0], box[1], box[2], box[3], index);
        return -1;
    }
    if (status != 0) {
        rt_kprintf("%s: inference failed on frame %d\n", name, index);
        return -1;
    }
    app_cost_stop(&cost);
    embedding_print(index, box, app->embedding, app->embedding_size, (unsigned long)app_cost_ms(&cost), cost.counted,
                    cost.instructions);
    app_model_dump(&app->model, index);
    return 0;
}

int embed_app_command(struct embed_app *app, int argc, char **argv)
{
    struct embedding_request request;
    int count, i;
    if (embedding_parse_args(argc, argv, &request) != 0) {
        rt_kprintf("usage: %s [N] | %s x1 y1 x2 y2 [N]\n", app->command, app->command);
        return -1;
    }
    if (app_model_setup(&app->model) != 0)
        return -1;
    count = rt_port_frame_count();
    if (request.count > 0 && request.count < count)
        count = request.count;
    if (count == 0) {
        rt_kprintf("%s: no frames to process\n", app->model.name);
        return -1;
    }
    for (i = 0; i < count; i++)
        if (embed_app_run_frame(app, i, &request) != 0)
            return -1;
    return 0;
}
