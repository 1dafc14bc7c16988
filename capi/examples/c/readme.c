#include <stdio.h>
#include <stdlib.h>
#include "lstm_kernels.h"

/* Any failed call: say why and stop. */
#define CHECK(call) do { lstm_status s_ = (call); if (s_ != LSTM_STATUS_OK) { \
    fprintf(stderr, "%s: %s\n", lstm_status_name(s_), lstm_last_error()); return 1; } } while (0)

int main(void) {
    /* The seed's Penn Treebank stack: 200 -> 256 -> 128, forget_bias 0. */
    size_t hidden[] = {256, 128};
    lstm_spec_desc desc = {.input_size = 200, .num_layers = 2, .hidden_sizes = hidden,
                           .forget_bias = 0.0f, .cell_clip = 0.0f, .proj_clip = 0.0f};
    lstm_spec *spec; lstm_weights *weights; lstm *net; lstm_workspace *ws;
    CHECK(lstm_spec_create(&desc, &spec));
    /* Or lstm_weights_load_safetensors(spec, "model.safetensors", LSTM_CONVENTION_TENSORFLOW, 0, &weights). */
    CHECK(lstm_weights_random_uniform(spec, 0.1f, 42, &weights));
    CHECK(lstm_create(weights, 0, &net)); /* 0 threads: one per core */

    size_t batch = 3, steps = 5;
    float *x = calloc(batch * steps * 200, sizeof(float));
    int32_t lengths[] = {5, 2, 0};
    CHECK(lstm_workspace_create(spec, batch, steps, &ws));
    lstm_input in = {.data = x, .data_len = batch * steps * 200, .batch = batch, .steps = steps,
                     .sequence_length = lengths, .sequence_length_len = 3,
                     .initial_state = LSTM_INITIAL_ZEROS};
    CHECK(lstm_forward_inference(net, ws, &in));
    const float *out; size_t n;
    CHECK(lstm_workspace_output_data(ws, &out, &n)); /* [B, T, 128], zeros past each length */
    printf("%zu outputs, liblstm_kernels %s\n", n, lstm_version());

    in.sequence_length = NULL; in.sequence_length_len = 0;
    in.initial_state = LSTM_INITIAL_CARRY; /* the next chunk starts where this one ended */
    CHECK(lstm_forward_inference(net, ws, &in));

    lstm_workspace_destroy(ws); lstm_destroy(net); lstm_weights_destroy(weights);
    lstm_spec_destroy(spec); free(x);
    return 0;
}
