/* The recognizer application: per camera frame, the face box (the one given to the msh command, else the whole
 * frame) cropped with the recognizer's policy as the model input, the model run (twice with the flip policy: the
 * crop, then its mirror image), the embedding dequantized and L2-normalised and printed as one JSON line
 * (embedding.c); the msh command `<name>_embed [N] | <name>_embed x1 y1 x2 y2 [N]`, and `<name>_embed_box` for other applications (the attendance app). The generated
 * <name>_app.c holds one struct embed_app filled from its headers and exports both. */
#ifndef EMBED_APP_H
#define EMBED_APP_H

#include "app_model.h"
#include "rt_port_board.h"

struct embed_app {
    struct app_model model;
    const char *command;      /* its msh command, for the usage line */
    int input_size;           /* the square crop's side */
    int crop_margin_permille; /* margin around the box, in permille of its longer side */
    rt_uint32_t embedding_size;
    /* A uint8 output: its dequantization (a float32 output holds it already applied). */
    int out_quantized;
    float out_scale;
    int out_zero_point;
    const float *centre; /* embedding_size values subtracted between two L2 norms, or RT_NULL (plain L2 norm) */
    float *mirror;       /* the flip policy: embedding_size values for the mirrored crop's output, or RT_NULL (one
                          * run per face) */
    float *embedding;    /* embedding_size values: the last frame's embedding */
};

/* The L2-normalised embedding of the face in `box` (frame pixels, x2/y2 exclusive) of a frame into `embedding`:
 * 0, or -1 when the crop is refused or the model is missing or could not run. */
int embed_app_box(struct embed_app *app, const struct rt_port_frame *frame, const int box[4], float *embedding);
/* The msh command: every frame of the board (or the first N), one JSON line each; 0, or -1 at the first failure
 * or for arguments it does not take (with its usage line). */
int embed_app_command(struct embed_app *app, int argc, char **argv);

#endif
