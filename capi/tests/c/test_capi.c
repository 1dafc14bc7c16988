/* The C ABI from C: every entry point, every error path, and the numbers.
 *
 * Usage: test_capi FIXTURE SAFETENSORS
 *   FIXTURE      written by capi/tests/common/fixture.rs (the Rust API's outputs, final
 *                states and gradients for weights in the four conventions);
 *   SAFETENSORS  the last fixture case's weights in TensorFlow's names.
 * Every output, state and gradient must be the Rust API's bits. Prints
 * "N passed, M failed" and exits non-zero on any failure. */

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lstm_kernels.h"

static int passed, failed;

#define CHECK(cond, ...)                                                          \
  do {                                                                            \
    if (cond) {                                                                   \
      passed++;                                                                   \
    } else {                                                                      \
      failed++;                                                                   \
      fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                        \
      fprintf(stderr, __VA_ARGS__);                                               \
      fprintf(stderr, "\n  last error: %s\n", lstm_last_error());                 \
    }                                                                             \
  } while (0)

#define EXPECT_OK(call)                                                           \
  do {                                                                            \
    lstm_status s_ = (call);                                                      \
    CHECK(s_ == LSTM_STATUS_OK, "%s -> %s", #call, lstm_status_name(s_));          \
  } while (0)

/* The call fails with `want`, and its message contains `part`. */
#define EXPECT_ERR(want, part, call)                                              \
  do {                                                                            \
    lstm_status s_ = (call);                                                      \
    CHECK(s_ == (want) && strstr(lstm_last_error(), (part)) != NULL,               \
          "%s -> %s, expected %s with \"%s\"", #call, lstm_status_name(s_), #want, \
          (part));                                                                \
  } while (0)

/* ---- every allocation of the test, freed at the end (valgrind checks for leaks) ---- */

static void **allocations;
static size_t n_allocations;

static void *alloc(size_t bytes) {
  void *p = calloc(1, bytes ? bytes : 1);
  void **grown = realloc(allocations, (n_allocations + 1) * sizeof *grown);
  if (!p || !grown) {
    fprintf(stderr, "out of memory\n");
    exit(2);
  }
  allocations = grown;
  allocations[n_allocations++] = p;
  return p;
}

static void free_all(void) {
  for (size_t i = 0; i < n_allocations; i++) free(allocations[i]);
  free(allocations);
}

/* ---- the fixture reader ---- */

typedef struct {
  const unsigned char *at, *end;
} reader;

static void take(reader *r, void *dst, size_t n) {
  if ((size_t)(r->end - r->at) < n) {
    fprintf(stderr, "the fixture is truncated\n");
    exit(2);
  }
  memcpy(dst, r->at, n);
  r->at += n;
}

static size_t rd_u64(reader *r) {
  uint64_t v;
  take(r, &v, 8);
  return (size_t)v;
}
static uint32_t rd_u32(reader *r) {
  uint32_t v;
  take(r, &v, 4);
  return v;
}
static int32_t rd_i32(reader *r) {
  int32_t v;
  take(r, &v, 4);
  return v;
}
static float rd_f32(reader *r) {
  float v;
  take(r, &v, 4);
  return v;
}
static char *rd_str(reader *r) {
  size_t n = rd_u64(r);
  char *s = alloc(n + 1);
  take(r, s, n);
  return s;
}

typedef struct {
  float *data;
  size_t len;
} floats;

static floats rd_floats(reader *r) {
  floats f;
  f.len = rd_u64(r);
  f.data = alloc(f.len * sizeof(float));
  take(r, f.data, f.len * sizeof(float));
  return f;
}

typedef struct {
  char *name;
  floats data;
} named;

typedef struct {
  char *name;
  lstm_spec_desc desc;
  int32_t convention;
  size_t n_tensors;
  lstm_tensor *tensors;
  size_t batch, steps;
  int32_t *lengths;
  size_t n_lengths;
  floats state, input, output, final_state, carry_output, carry_final_state;
  int training;
  int32_t grad_convention;
  floats grad_output, grad_final_state, grad_input, grad_initial_state;
  size_t n_grads;
  named *grads;
} fixture_case;

static void read_case(reader *r, fixture_case *c) {
  c->name = rd_str(r);
  c->desc.input_size = rd_u64(r);
  c->desc.num_layers = rd_u64(r);
  size_t *hidden = alloc(c->desc.num_layers * sizeof(size_t));
  size_t *proj = alloc(c->desc.num_layers * sizeof(size_t));
  for (size_t l = 0; l < c->desc.num_layers; l++) hidden[l] = rd_u64(r);
  for (size_t l = 0; l < c->desc.num_layers; l++) proj[l] = rd_u64(r);
  c->desc.hidden_sizes = hidden;
  c->desc.proj_sizes = proj;
  c->desc.forget_bias = rd_f32(r);
  c->desc.peepholes = (int32_t)rd_u32(r);
  c->desc.cell_clip = rd_f32(r);
  c->desc.proj_clip = rd_f32(r);
  c->desc.bidirectional = (int32_t)rd_u32(r);
  c->desc.time_major = (int32_t)rd_u32(r);
  c->convention = rd_i32(r);
  c->n_tensors = rd_u64(r);
  c->tensors = alloc(c->n_tensors * sizeof(lstm_tensor));
  for (size_t i = 0; i < c->n_tensors; i++) {
    lstm_tensor *t = &c->tensors[i];
    t->name = rd_str(r);
    t->ndim = rd_u64(r);
    size_t *shape = alloc(t->ndim * sizeof(size_t));
    for (size_t d = 0; d < t->ndim; d++) shape[d] = rd_u64(r);
    t->shape = shape;
    floats data = rd_floats(r);
    t->data = data.data;
    t->len = data.len;
  }
  c->batch = rd_u64(r);
  c->steps = rd_u64(r);
  c->n_lengths = rd_u64(r);
  c->lengths = alloc(c->n_lengths * sizeof(int32_t));
  for (size_t i = 0; i < c->n_lengths; i++) c->lengths[i] = rd_i32(r);
  c->state = rd_floats(r);
  c->input = rd_floats(r);
  c->output = rd_floats(r);
  c->final_state = rd_floats(r);
  c->carry_output = rd_floats(r);
  c->carry_final_state = rd_floats(r);
  c->training = (int)rd_u32(r);
  if (!c->training) return;
  c->grad_convention = rd_i32(r);
  c->grad_output = rd_floats(r);
  c->grad_final_state = rd_floats(r);
  c->grad_input = rd_floats(r);
  c->grad_initial_state = rd_floats(r);
  c->n_grads = rd_u64(r);
  c->grads = alloc(c->n_grads * sizeof(named));
  for (size_t i = 0; i < c->n_grads; i++) {
    c->grads[i].name = rd_str(r);
    c->grads[i].data = rd_floats(r);
  }
}

static unsigned char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "cannot open %s\n", path);
    exit(2);
  }
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *bytes = alloc((size_t)n);
  if (fread(bytes, 1, (size_t)n, f) != (size_t)n) {
    fprintf(stderr, "cannot read %s\n", path);
    exit(2);
  }
  fclose(f);
  *len = (size_t)n;
  return bytes;
}

/* ---- helpers ---- */

/* The same bits, element for element. */
static void expect_bits(const char *what, const char *case_name, const float *got,
                        size_t got_len, const floats *want) {
  int same = got_len == want->len && memcmp(got, want->data, got_len * sizeof(float)) == 0;
  if (!same && got_len == want->len) {
    for (size_t i = 0; i < got_len; i++) {
      if (memcmp(&got[i], &want->data[i], sizeof(float)) != 0) {
        fprintf(stderr, "  %s/%s: first difference at %zu: %.9g, expected %.9g\n", case_name,
                what, i, got[i], want->data[i]);
        break;
      }
    }
  }
  CHECK(same, "%s/%s: %zu elements, expected the Rust API's %zu, bit for bit", case_name, what,
        got_len, want->len);
}

static lstm_input input_of(const fixture_case *c) {
  lstm_input in;
  memset(&in, 0, sizeof in);
  in.data = c->input.data;
  in.data_len = c->input.len;
  in.batch = c->batch;
  in.steps = c->steps;
  in.sequence_length = c->n_lengths ? c->lengths : NULL;
  in.sequence_length_len = c->n_lengths;
  in.initial_state = c->state.len ? LSTM_INITIAL_GIVEN : LSTM_INITIAL_ZEROS;
  in.state = c->state.len ? c->state.data : NULL;
  in.state_len = c->state.len;
  return in;
}

/* The workspace's output and final state against the expected ones. */
static void expect_workspace(const char *case_name, const char *pass, lstm_workspace *ws,
                             const floats *output, const floats *final_state) {
  size_t len = 0;
  char what[128];
  EXPECT_OK(lstm_workspace_output_len(ws, &len));
  float *out = alloc(len * sizeof(float));
  EXPECT_OK(lstm_workspace_output(ws, out, len));
  snprintf(what, sizeof what, "%s output", pass);
  expect_bits(what, case_name, out, len, output);
  const float *data = NULL;
  size_t data_len = 0;
  EXPECT_OK(lstm_workspace_output_data(ws, &data, &data_len));
  snprintf(what, sizeof what, "%s output (no copy)", pass);
  expect_bits(what, case_name, data, data_len, output);
  EXPECT_OK(lstm_workspace_final_state_len(ws, &len));
  float *state = alloc(len * sizeof(float));
  EXPECT_OK(lstm_workspace_final_state(ws, state, len));
  snprintf(what, sizeof what, "%s final state", pass);
  expect_bits(what, case_name, state, len, final_state);
}

/* ---- one case: weights from its tensors, inference, carry, training, backward ---- */

static void run_case(const fixture_case *c, size_t threads) {
  lstm_spec *spec = NULL;
  lstm_weights *weights = NULL;
  lstm *net = NULL;
  lstm_workspace *ws = NULL;
  EXPECT_OK(lstm_spec_create(&c->desc, &spec));
  EXPECT_OK(lstm_weights_from_tensors(spec, c->convention, c->tensors, c->n_tensors, 0, &weights));
  EXPECT_OK(lstm_create(weights, threads, &net));
  /* Handles keep their own copies: the spec and weights may go now. */
  EXPECT_OK(lstm_weights_destroy(weights));
  EXPECT_OK(lstm_workspace_create(spec, c->batch, c->steps, &ws));

  size_t state_len = 0, cells = 0, out_size = 0;
  EXPECT_OK(lstm_spec_state_len(spec, c->batch, &state_len));
  CHECK(state_len == c->final_state.len, "%s: lstm_spec_state_len %zu, expected %zu", c->name,
        state_len, c->final_state.len);
  EXPECT_OK(lstm_spec_num_cells(spec, &cells));
  CHECK(cells == c->desc.num_layers * (c->desc.bidirectional ? 2 : 1), "%s: %zu cells", c->name,
        cells);
  EXPECT_OK(lstm_spec_output_size(spec, &out_size));
  CHECK(out_size * c->batch * c->steps == c->output.len, "%s: output size %zu", c->name,
        out_size);

  lstm_input in = input_of(c);
  EXPECT_OK(lstm_forward_inference(net, ws, &in));
  expect_workspace(c->name, "inference", ws, &c->output, &c->final_state);

  lstm_input carry = in;
  carry.initial_state = LSTM_INITIAL_CARRY;
  carry.state = NULL;
  carry.state_len = 0;
  EXPECT_OK(lstm_forward_inference(net, ws, &carry));
  expect_workspace(c->name, "carry", ws, &c->carry_output, &c->carry_final_state);

  if (c->training) {
    lstm_reserve *reserve = NULL;
    lstm_gradients *grads = NULL;
    EXPECT_OK(lstm_reserve_create(net, c->batch, c->steps, &reserve));
    EXPECT_OK(lstm_gradients_create(spec, c->batch, c->steps, &grads));
    EXPECT_OK(lstm_forward_training(net, ws, reserve, &in));
    /* Training's forward computes inference's bits. */
    expect_workspace(c->name, "training", ws, &c->output, &c->final_state);
    EXPECT_OK(lstm_backward(net, &in, reserve, c->grad_output.len ? c->grad_output.data : NULL,
                            c->grad_output.len,
                            c->grad_final_state.len ? c->grad_final_state.data : NULL,
                            c->grad_final_state.len, ws, grads));
    size_t len = 0;
    EXPECT_OK(lstm_gradients_input_len(grads, &len));
    float *g = alloc(len * sizeof(float));
    EXPECT_OK(lstm_gradients_input(grads, g, len));
    expect_bits("grad input", c->name, g, len, &c->grad_input);
    EXPECT_OK(lstm_gradients_initial_state_len(grads, &len));
    g = alloc(len * sizeof(float));
    EXPECT_OK(lstm_gradients_initial_state(grads, g, len));
    expect_bits("grad initial state", c->name, g, len, &c->grad_initial_state);
    for (size_t i = 0; i < c->n_grads; i++) {
      EXPECT_OK(lstm_gradients_tensor_len(grads, c->grad_convention, c->grads[i].name, &len));
      g = alloc(len * sizeof(float));
      EXPECT_OK(lstm_gradients_tensor(grads, c->grad_convention, c->grads[i].name, g, len));
      expect_bits(c->grads[i].name, c->name, g, len, &c->grads[i].data);
    }
    EXPECT_OK(lstm_reserve_destroy(reserve));
    EXPECT_OK(lstm_gradients_destroy(grads));
  }
  EXPECT_OK(lstm_workspace_destroy(ws));
  EXPECT_OK(lstm_destroy(net));
  EXPECT_OK(lstm_spec_destroy(spec));
}

/* ---- one lstm shared by two threads, each with its own workspace ---- */

typedef struct {
  const lstm *net;
  const lstm_spec *spec;
  const fixture_case *c;
  lstm_status status;
  int same;
} thread_job;

static void *thread_main(void *arg) {
  thread_job *job = arg;
  lstm_workspace *ws = NULL;
  job->status = lstm_workspace_create(job->spec, job->c->batch, job->c->steps, &ws);
  lstm_input in = input_of(job->c);
  for (int rep = 0; rep < 3 && job->status == LSTM_STATUS_OK; rep++) {
    job->status = lstm_forward_inference(job->net, ws, &in);
  }
  const float *out = NULL;
  size_t len = 0;
  if (job->status == LSTM_STATUS_OK) job->status = lstm_workspace_output_data(ws, &out, &len);
  job->same = job->status == LSTM_STATUS_OK && len == job->c->output.len &&
              memcmp(out, job->c->output.data, len * sizeof(float)) == 0;
  lstm_workspace_destroy(ws);
  return NULL;
}

static void shared_between_threads(const fixture_case *c) {
  lstm_spec *spec = NULL;
  lstm_weights *weights = NULL;
  lstm *net = NULL;
  EXPECT_OK(lstm_spec_create(&c->desc, &spec));
  EXPECT_OK(lstm_weights_from_tensors(spec, c->convention, c->tensors, c->n_tensors, 0, &weights));
  EXPECT_OK(lstm_create(weights, 2, &net));
  thread_job jobs[2];
  pthread_t threads[2];
  for (int i = 0; i < 2; i++) {
    jobs[i] = (thread_job){net, spec, c, LSTM_STATUS_INTERNAL_ERROR, 0};
    CHECK(pthread_create(&threads[i], NULL, thread_main, &jobs[i]) == 0, "pthread_create");
  }
  for (int i = 0; i < 2; i++) {
    pthread_join(threads[i], NULL);
    CHECK(jobs[i].status == LSTM_STATUS_OK && jobs[i].same,
          "thread %d: %s, output %s the Rust API's", i, lstm_status_name(jobs[i].status),
          jobs[i].same ? "is" : "is not");
  }
  lstm_destroy(net);
  lstm_weights_destroy(weights);
  lstm_spec_destroy(spec);
}

/* ---- every error path, on the seed stack's case ---- */

/* A pointer one byte past `p`: misaligned for anything wider than a byte. */
#define MISALIGN(type, p) ((type)(void *)((char *)(p) + 1))

static void error_paths(const fixture_case *c, const char *safetensors, const char *not_safetensors) {
  /* Version, names, the last error of a success. */
  CHECK(strcmp(lstm_version(), LSTM_KERNELS_VERSION_STRING) == 0, "lstm_version %s",
        lstm_version());
  char version[32];
  snprintf(version, sizeof version, "%d.%d.%d", LSTM_KERNELS_VERSION_MAJOR,
           LSTM_KERNELS_VERSION_MINOR, LSTM_KERNELS_VERSION_PATCH);
  CHECK(strcmp(version, LSTM_KERNELS_VERSION_STRING) == 0, "version macros %s", version);
  CHECK(strcmp(lstm_status_name(LSTM_STATUS_MISALIGNED_POINTER), "LSTM_STATUS_MISALIGNED_POINTER") == 0,
        "lstm_status_name");
  CHECK(strcmp(lstm_status_name(1234), "LSTM_STATUS_UNKNOWN") == 0, "lstm_status_name(1234)");

  /* The spec. */
  lstm_spec *spec = NULL, *other_spec = NULL;
  lstm_spec_desc d = c->desc;
  lstm_spec *stale = (lstm_spec *)&d; /* any non-NULL value: a failed create sets NULL */
  EXPECT_ERR(LSTM_STATUS_NULL_POINTER, "`desc`", lstm_spec_create(NULL, &stale));
  CHECK(stale == NULL, "a failed create leaves *out NULL");
  EXPECT_ERR(LSTM_STATUS_NULL_POINTER, "`out`", lstm_spec_create(&d, NULL));
  EXPECT_ERR(LSTM_STATUS_MISALIGNED_POINTER, "`desc`",
             lstm_spec_create(MISALIGN(const lstm_spec_desc *, &d), &spec));
  d.hidden_sizes = NULL;
  EXPECT_ERR(LSTM_STATUS_NULL_POINTER, "desc.hidden_sizes", lstm_spec_create(&d, &spec));
  d.hidden_sizes = MISALIGN(const size_t *, c->desc.hidden_sizes);
  EXPECT_ERR(LSTM_STATUS_MISALIGNED_POINTER, "desc.hidden_sizes", lstm_spec_create(&d, &spec));
  d = c->desc;
  d.num_layers = 0;
  EXPECT_ERR(LSTM_STATUS_INVALID_ARGUMENT, "at least one layer", lstm_spec_create(&d, &spec));
  d = c->desc;
  d.input_size = 0;
  EXPECT_ERR(LSTM_STATUS_INVALID_ARGUMENT, "input_size", lstm_spec_create(&d, &spec));
  d = c->desc;
  d.forget_bias = NAN;
  EXPECT_ERR(LSTM_STATUS_INVALID_ARGUMENT, "forget_bias", lstm_spec_create(&d, &spec));
  d = c->desc;
  d.cell_clip = INFINITY;
  EXPECT_ERR(LSTM_STATUS_INVALID_ARGUMENT, "cell_clip", lstm_spec_create(&d, &spec));
  size_t zero_hidden[2] = {256, 0};
  d = c->desc;
  d.hidden_sizes = zero_hidden;
  EXPECT_ERR(LSTM_STATUS_INVALID_ARGUMENT, "hidden_sizes[1]", lstm_spec_create(&d, &spec));
  size_t huge[2] = {SIZE_MAX, 4};
  d.hidden_sizes = huge;
  EXPECT_ERR(LSTM_STATUS_INVALID_ARGUMENT, "would not fit", lstm_spec_create(&d, &spec));
  d = c->desc;
  EXPECT_OK(lstm_spec_create(&d, &spec));
  CHECK(strcmp(lstm_last_error(), "") == 0, "a success clears the last error");
  size_t n = 0;
  EXPECT_ERR(LSTM_STATUS_SHAPE_MISMATCH, "overflows", lstm_spec_state_len(spec, SIZE_MAX / 2, &n));
  EXPECT_ERR(LSTM_STATUS_NULL_POINTER, "`out`", lstm_spec_state_len(spec, 1, NULL));
  EXPECT_ERR(LSTM_STATUS_NULL_POINTER, "`spec`", lstm_spec_num_cells(NULL, &n));
  EXPECT_ERR(LSTM_STATUS_MISALIGNED_POINTER, "`out`",
             lstm_spec_output_size(spec, MISALIGN(size_t *, &n)));
  size_t small_hidden[1] = {3};
  lstm_spec_desc small = {0};
  small.input_size = 2;
  small.num_layers = 1;
  small.hidden_sizes = small_hidden;
  EXPECT_OK(lstm_spec_create(&small, &other_spec));

  /* Weights from tensors. */
  lstm_weights *w = NULL, *w2 = NULL;
  lstm_tensor *ts = alloc(c->n_tensors * sizeof(lstm_tensor));
  memcpy(ts, c->tensors, c->n_tensors * sizeof(lstm_tensor));
  size_t nt = c->n_tensors;
  EXPECT_ERR(LSTM_STATUS_INVALID_ARGUMENT, "convention", lstm_weights_from_tensors(spec, 9, ts, nt, 0, &w));
  EXPECT_ERR(LSTM_STATUS_INVALID_ARGUMENT, "flags", lstm_weights_from_tensors(spec, LSTM_CONVENTION_TENSORFLOW, ts, nt, 4, &w));
  EXPECT_ERR(LSTM_STATUS_NULL_POINTER, "`tensors`", lstm_weights_from_tensors(spec, LSTM_CONVENTION_TENSORFLOW, NULL, nt, 0, &w));
  EXPECT_ERR(LSTM_STATUS_NULL_POINTER, "`spec`", lstm_weights_from_tensors(NULL, LSTM_CONVENTION_TENSORFLOW, ts, nt, 0, &w));
  EXPECT_ERR(LSTM_STATUS_SHAPE_MISMATCH, "`tensors`", lstm_weights_from_tensors(spec, LSTM_CONVENTION_TENSORFLOW, ts, SIZE_MAX / 4, 0, &w));
  /* The tensors are layers/0/bias, layers/0/kernel, layers/1/bias, layers/1/kernel. */
  CHECK(strcmp(ts[1].name, "layers/0/kernel") == 0, "tensor order: %s", ts[1].name);
  EXPECT_ERR(LSTM_STATUS_INVALID_ARGUMENT, "layers/1/kernel", lstm_weights_from_tensors(spec, LSTM_CONVENTION_TENSORFLOW, ts, nt - 1, 0, &w));
  EXPECT_ERR(LSTM_STATUS_INVALID_ARGUMENT, "weight_ih_l0", lstm_weights_from_tensors(spec, LSTM_CONVENTION_PYTORCH, ts, nt, 0, &w));
  lstm_tensor saved = ts[1];
  size_t swapped[2] = {saved.shape[1], saved.shape[0]};
  ts[1].shape = swapped; /* same length, wrong shape */
  EXPECT_ERR(LSTM_STATUS_SHAPE_MISMATCH, "layers/0/kernel", lstm_weights_from_tensors(spec, LSTM_CONVENTION_TENSORFLOW, ts, nt, 0, &w));
  ts[1] = saved;
  ts[1].len = saved.len - 1;
  EXPECT_ERR(LSTM_STATUS_SHAPE_MISMATCH, "needs", lstm_weights_from_tensors(spec, LSTM_CONVENTION_TENSORFLOW, ts, nt, 0, &w));
  size_t overflowing[2] = {SIZE_MAX, 2};
  ts[1] = saved;
  ts[1].shape = overflowing;
  EXPECT_ERR(LSTM_STATUS_SHAPE_MISMATCH, "more elements", lstm_weights_from_tensors(spec, LSTM_CONVENTION_TENSORFLOW, ts, nt, 0, &w));
  ts[1] = saved;
  ts[1].data = MISALIGN(const float *, saved.data);
  EXPECT_ERR(LSTM_STATUS_MISALIGNED_POINTER, "layers/0/kernel", lstm_weights_from_tensors(spec, LSTM_CONVENTION_TENSORFLOW, ts, nt, 0, &w));
  ts[1] = saved;
  ts[1].data = NULL;
  EXPECT_ERR(LSTM_STATUS_NULL_POINTER, "layers/0/kernel", lstm_weights_from_tensors(spec, LSTM_CONVENTION_TENSORFLOW, ts, nt, 0, &w));
  ts[1] = saved;
  ts[1].name = NULL;
  EXPECT_ERR(LSTM_STATUS_NULL_POINTER, "tensors[1].name", lstm_weights_from_tensors(spec, LSTM_CONVENTION_TENSORFLOW, ts, nt, 0, &w));
  ts[1] = saved;
  ts[1].name = ts[0].name;
  EXPECT_ERR(LSTM_STATUS_INVALID_ARGUMENT, "twice", lstm_weights_from_tensors(spec, LSTM_CONVENTION_TENSORFLOW, ts, nt, 0, &w));
  ts[1] = saved;
  /* Without the biases: an error, unless the flag says the model has none. */
  lstm_tensor kernels_only[2] = {ts[1], ts[3]};
  EXPECT_ERR(LSTM_STATUS_INVALID_ARGUMENT, "layers/0/bias", lstm_weights_from_tensors(spec, LSTM_CONVENTION_TENSORFLOW, kernels_only, 2, 0, &w));
  EXPECT_OK(lstm_weights_from_tensors(spec, LSTM_CONVENTION_TENSORFLOW, kernels_only, 2, LSTM_LOAD_ALLOW_MISSING_BIAS, &w2));
  EXPECT_OK(lstm_weights_destroy(w2));
  w2 = NULL;
  /* Layer 0's tensors for a spec of other sizes; all of them for a spec of fewer cells. */
  EXPECT_ERR(LSTM_STATUS_SHAPE_MISMATCH, "layers/0/kernel", lstm_weights_from_tensors(other_spec, LSTM_CONVENTION_TENSORFLOW, ts, 2, 0, &w));
  EXPECT_ERR(LSTM_STATUS_INVALID_ARGUMENT, "layers/1/kernel", lstm_weights_from_tensors(other_spec, LSTM_CONVENTION_TENSORFLOW, ts, nt, 0, &w));
  EXPECT_OK(lstm_weights_from_tensors(spec, LSTM_CONVENTION_TENSORFLOW, ts, nt, 0, &w));

  /* Export: the tensors come back as they went in. */
  EXPECT_OK(lstm_weights_tensor_len(w, LSTM_CONVENTION_TENSORFLOW, "layers/0/kernel", &n));
  CHECK(n == saved.len, "layers/0/kernel exports %zu elements", n);
  float *kernel = alloc(n * sizeof(float));
  EXPECT_OK(lstm_weights_tensor(w, LSTM_CONVENTION_TENSORFLOW, "layers/0/kernel", kernel, n));
  CHECK(memcmp(kernel, saved.data, n * sizeof(float)) == 0, "layers/0/kernel round trip");
  EXPECT_OK(lstm_weights_tensor_len(w, LSTM_CONVENTION_PYTORCH, "weight_ih_l0", &n));
  CHECK(n == 4 * 256 * c->desc.input_size, "weight_ih_l0 has %zu elements", n);
  EXPECT_ERR(LSTM_STATUS_SHAPE_MISMATCH, "expected", lstm_weights_tensor(w, LSTM_CONVENTION_PYTORCH, "weight_ih_l0", kernel, n - 1));
  EXPECT_ERR(LSTM_STATUS_INVALID_ARGUMENT, "no_such_tensor", lstm_weights_tensor_len(w, LSTM_CONVENTION_TENSORFLOW, "no_such_tensor", &n));
  EXPECT_ERR(LSTM_STATUS_INVALID_ARGUMENT, "no export", lstm_weights_tensor_len(w, LSTM_CONVENTION_ONNX, "layers/0/W", &n));
  EXPECT_ERR(LSTM_STATUS_NULL_POINTER, "`name`", lstm_weights_tensor_len(w, LSTM_CONVENTION_TENSORFLOW, NULL, &n));
  EXPECT_ERR(LSTM_STATUS_NULL_POINTER, "`out`", lstm_weights_tensor(w, LSTM_CONVENTION_TENSORFLOW, "layers/0/bias", NULL, 1024));
  EXPECT_ERR(LSTM_STATUS_MISALIGNED_POINTER, "`out`", lstm_weights_tensor(w, LSTM_CONVENTION_TENSORFLOW, "layers/0/bias", MISALIGN(float *, kernel), 1024));

  /* .safetensors files; random weights. */
  lstm_weights *from_file = NULL, *random = NULL;
  EXPECT_ERR(LSTM_STATUS_IO_ERROR, "/nonexistent/weights.safetensors", lstm_weights_load_safetensors(spec, "/nonexistent/weights.safetensors", LSTM_CONVENTION_TENSORFLOW, 0, &w2));
  EXPECT_ERR(LSTM_STATUS_IO_ERROR, "invalid file", lstm_weights_load_safetensors(spec, not_safetensors, LSTM_CONVENTION_TENSORFLOW, 0, &w2));
  EXPECT_ERR(LSTM_STATUS_NULL_POINTER, "`path`", lstm_weights_load_safetensors(spec, NULL, LSTM_CONVENTION_TENSORFLOW, 0, &w2));
  EXPECT_ERR(LSTM_STATUS_INVALID_ARGUMENT, "weight_ih_l0", lstm_weights_load_safetensors(spec, safetensors, LSTM_CONVENTION_PYTORCH, 0, &w2));
  EXPECT_ERR(LSTM_STATUS_INVALID_ARGUMENT, "layers/1/kernel", lstm_weights_load_safetensors(other_spec, safetensors, LSTM_CONVENTION_TENSORFLOW, 0, &w2));
  CHECK(w2 == NULL, "failed loads leave *out NULL");
  EXPECT_OK(lstm_weights_load_safetensors(spec, safetensors, LSTM_CONVENTION_TENSORFLOW, 0, &from_file));
  EXPECT_ERR(LSTM_STATUS_INVALID_ARGUMENT, "scale", lstm_weights_random_uniform(spec, NAN, 1, &random));
  EXPECT_OK(lstm_weights_random_uniform(spec, 0.1f, 1, &random));

  /* The lstm and its workspace. */
  lstm *net = NULL, *file_net = NULL, *other = NULL;
  lstm_workspace *ws = NULL, *other_ws = NULL;
  EXPECT_ERR(LSTM_STATUS_NULL_POINTER, "`weights`", lstm_create(NULL, 0, &net));
  EXPECT_ERR(LSTM_STATUS_NULL_POINTER, "`out`", lstm_create(w, 0, NULL));
  EXPECT_OK(lstm_create(w, 1, &net));
  EXPECT_OK(lstm_create(from_file, 0, &file_net));
  EXPECT_OK(lstm_create(random, 0, &other));
  EXPECT_ERR(LSTM_STATUS_NULL_POINTER, "`spec`", lstm_workspace_create(NULL, 1, 1, &ws));
  EXPECT_OK(lstm_workspace_create(spec, SIZE_MAX, SIZE_MAX, &ws)); /* a hint that cannot exist */
  EXPECT_OK(lstm_workspace_destroy(ws));
  EXPECT_OK(lstm_workspace_create(spec, c->batch, c->steps, &ws));
  EXPECT_OK(lstm_workspace_create(other_spec, 1, 1, &other_ws));

  /* Forward: every argument. */
  lstm_input in = input_of(c), bad;
  EXPECT_ERR(LSTM_STATUS_SHAPE_MISMATCH, "no previous pass", (bad = in, bad.initial_state = LSTM_INITIAL_CARRY, lstm_forward_inference(net, ws, &bad)));
  EXPECT_ERR(LSTM_STATUS_NULL_POINTER, "`lstm`", lstm_forward_inference(NULL, ws, &in));
  EXPECT_ERR(LSTM_STATUS_NULL_POINTER, "`ws`", lstm_forward_inference(net, NULL, &in));
  EXPECT_ERR(LSTM_STATUS_NULL_POINTER, "`input`", lstm_forward_inference(net, ws, NULL));
  EXPECT_ERR(LSTM_STATUS_MISALIGNED_POINTER, "`input`", lstm_forward_inference(net, ws, MISALIGN(const lstm_input *, &in)));
  EXPECT_ERR(LSTM_STATUS_NULL_POINTER, "input.data", (bad = in, bad.data = NULL, lstm_forward_inference(net, ws, &bad)));
  EXPECT_ERR(LSTM_STATUS_MISALIGNED_POINTER, "input.data", (bad = in, bad.data = MISALIGN(const float *, in.data), bad.data_len = in.data_len - 1, lstm_forward_inference(net, ws, &bad)));
  EXPECT_ERR(LSTM_STATUS_SHAPE_MISMATCH, "`input`", (bad = in, bad.data_len = in.data_len - 1, lstm_forward_inference(net, ws, &bad)));
  EXPECT_ERR(LSTM_STATUS_SHAPE_MISMATCH, "B >= 1", (bad = in, bad.batch = 0, lstm_forward_inference(net, ws, &bad)));
  EXPECT_ERR(LSTM_STATUS_SHAPE_MISMATCH, "within memory", (bad = in, bad.batch = SIZE_MAX / 2, bad.steps = 4, lstm_forward_inference(net, ws, &bad)));
  EXPECT_ERR(LSTM_STATUS_SHAPE_MISMATCH, "sequence_length", (bad = in, bad.sequence_length_len = 2, lstm_forward_inference(net, ws, &bad)));
  EXPECT_ERR(LSTM_STATUS_NULL_POINTER, "input.sequence_length", (bad = in, bad.sequence_length = NULL, lstm_forward_inference(net, ws, &bad)));
  EXPECT_ERR(LSTM_STATUS_MISALIGNED_POINTER, "input.sequence_length", (bad = in, bad.sequence_length = MISALIGN(const int32_t *, in.sequence_length), bad.sequence_length_len = 2, lstm_forward_inference(net, ws, &bad)));
  int32_t too_long[3] = {1, 99, 0};
  EXPECT_ERR(LSTM_STATUS_INVALID_ARGUMENT, "entry 1 is 99", (bad = in, bad.sequence_length = too_long, lstm_forward_inference(net, ws, &bad)));
  EXPECT_ERR(LSTM_STATUS_INVALID_ARGUMENT, "initial_state", (bad = in, bad.initial_state = 7, lstm_forward_inference(net, ws, &bad)));
  EXPECT_ERR(LSTM_STATUS_INVALID_ARGUMENT, "not LSTM_INITIAL_GIVEN", (bad = in, bad.state = c->final_state.data, bad.state_len = c->final_state.len, lstm_forward_inference(net, ws, &bad)));
  EXPECT_ERR(LSTM_STATUS_SHAPE_MISMATCH, "input.state", (bad = in, bad.initial_state = LSTM_INITIAL_GIVEN, bad.state = c->final_state.data, bad.state_len = c->final_state.len - 1, lstm_forward_inference(net, ws, &bad)));
  EXPECT_ERR(LSTM_STATUS_NULL_POINTER, "input.state", (bad = in, bad.initial_state = LSTM_INITIAL_GIVEN, bad.state = NULL, bad.state_len = c->final_state.len, lstm_forward_inference(net, ws, &bad)));
  EXPECT_ERR(LSTM_STATUS_INVALID_ARGUMENT, "different LstmSpec", lstm_forward_inference(net, other_ws, &in));
  EXPECT_OK(lstm_forward_inference(file_net, ws, &in));
  expect_workspace(c->name, "weights from .safetensors", ws, &c->output, &c->final_state);
  EXPECT_OK(lstm_forward_inference(net, ws, &in));
  expect_workspace(c->name, "one thread", ws, &c->output, &c->final_state);
  /* A given state equal to zeros computes the zero state's bits. */
  float *zeros = alloc(c->final_state.len * sizeof(float));
  EXPECT_OK((bad = in, bad.initial_state = LSTM_INITIAL_GIVEN, bad.state = zeros, bad.state_len = c->final_state.len, lstm_forward_inference(net, ws, &bad)));
  expect_workspace(c->name, "given zero state", ws, &c->output, &c->final_state);

  /* Getters. */
  float *buf = alloc((c->output.len + 1) * sizeof(float));
  EXPECT_ERR(LSTM_STATUS_SHAPE_MISMATCH, "expected", lstm_workspace_output(ws, buf, c->output.len + 1));
  EXPECT_ERR(LSTM_STATUS_NULL_POINTER, "`out`", lstm_workspace_output(ws, NULL, c->output.len));
  EXPECT_ERR(LSTM_STATUS_MISALIGNED_POINTER, "`out`", lstm_workspace_output(ws, MISALIGN(float *, buf), c->output.len));
  EXPECT_ERR(LSTM_STATUS_SHAPE_MISMATCH, "final state", lstm_workspace_final_state(ws, buf, c->final_state.len - 1));
  EXPECT_ERR(LSTM_STATUS_NULL_POINTER, "`len`", lstm_workspace_output_len(ws, NULL));
  EXPECT_ERR(LSTM_STATUS_NULL_POINTER, "`data`", lstm_workspace_output_data(ws, NULL, &n));
  EXPECT_ERR(LSTM_STATUS_NULL_POINTER, "`ws`", lstm_workspace_final_state_len(NULL, &n));

  /* Training and backward. */
  lstm_reserve *reserve = NULL;
  lstm_gradients *grads = NULL, *other_grads = NULL;
  EXPECT_ERR(LSTM_STATUS_NULL_POINTER, "`lstm`", lstm_reserve_create(NULL, 1, 1, &reserve));
  EXPECT_OK(lstm_reserve_create(net, c->batch, c->steps, &reserve));
  EXPECT_ERR(LSTM_STATUS_NULL_POINTER, "`spec`", lstm_gradients_create(NULL, 1, 1, &grads));
  EXPECT_OK(lstm_gradients_create(spec, c->batch, c->steps, &grads));
  EXPECT_OK(lstm_gradients_create(other_spec, 1, 1, &other_grads));
  const float *go = c->grad_output.data, *gs = c->grad_final_state.data;
  size_t go_len = c->grad_output.len, gs_len = c->grad_final_state.len;
  EXPECT_ERR(LSTM_STATUS_INVALID_ARGUMENT, "forward_training", lstm_backward(net, &in, reserve, go, go_len, gs, gs_len, ws, grads));
  EXPECT_ERR(LSTM_STATUS_NULL_POINTER, "`reserve`", lstm_forward_training(net, ws, NULL, &in));
  EXPECT_ERR(LSTM_STATUS_SHAPE_MISMATCH, "`input`", (bad = in, bad.data_len = 1, lstm_forward_training(net, ws, reserve, &bad)));
  EXPECT_OK(lstm_forward_training(net, ws, reserve, &in));
  EXPECT_ERR(LSTM_STATUS_SHAPE_MISMATCH, "grad_output", lstm_backward(net, &in, reserve, go, go_len - 1, gs, gs_len, ws, grads));
  EXPECT_ERR(LSTM_STATUS_NULL_POINTER, "grad_output", lstm_backward(net, &in, reserve, NULL, go_len, gs, gs_len, ws, grads));
  EXPECT_ERR(LSTM_STATUS_MISALIGNED_POINTER, "grad_output", lstm_backward(net, &in, reserve, MISALIGN(const float *, go), go_len - 1, gs, gs_len, ws, grads));
  EXPECT_ERR(LSTM_STATUS_SHAPE_MISMATCH, "grad_final_state", lstm_backward(net, &in, reserve, go, go_len, gs, gs_len + 1, ws, grads));
  EXPECT_ERR(LSTM_STATUS_INVALID_ARGUMENT, "another spec", lstm_backward(net, &in, reserve, go, go_len, gs, gs_len, ws, other_grads));
  EXPECT_ERR(LSTM_STATUS_INVALID_ARGUMENT, "sequence_length differs", (bad = in, bad.sequence_length = NULL, bad.sequence_length_len = 0, lstm_backward(net, &bad, reserve, go, go_len, gs, gs_len, ws, grads)));
  EXPECT_ERR(LSTM_STATUS_NULL_POINTER, "`grads`", lstm_backward(net, &in, reserve, go, go_len, gs, gs_len, ws, NULL));
  EXPECT_OK(lstm_backward(net, &in, reserve, go, go_len, gs, gs_len, ws, grads));
  EXPECT_OK(lstm_gradients_input_len(grads, &n));
  float *g = alloc(n * sizeof(float));
  EXPECT_OK(lstm_gradients_input(grads, g, n));
  expect_bits("grad input (error-path run)", c->name, g, n, &c->grad_input);
  EXPECT_ERR(LSTM_STATUS_SHAPE_MISMATCH, "input's gradient", lstm_gradients_input(grads, g, n - 1));
  EXPECT_ERR(LSTM_STATUS_SHAPE_MISMATCH, "initial state's gradient", lstm_gradients_initial_state(grads, g, 1));
  EXPECT_ERR(LSTM_STATUS_INVALID_ARGUMENT, "no export", lstm_gradients_tensor_len(grads, LSTM_CONVENTION_KERAS, "layers/0/kernel", &n));
  EXPECT_ERR(LSTM_STATUS_INVALID_ARGUMENT, "layers/9/kernel", lstm_gradients_tensor_len(grads, LSTM_CONVENTION_TENSORFLOW, "layers/9/kernel", &n));
  EXPECT_OK(lstm_gradients_tensor_len(grads, LSTM_CONVENTION_PYTORCH, "bias_hh_l1", &n));
  CHECK(n == 4 * 128, "bias_hh_l1 has %zu elements", n);
  EXPECT_ERR(LSTM_STATUS_SHAPE_MISMATCH, "bias_hh_l1", lstm_gradients_tensor(grads, LSTM_CONVENTION_PYTORCH, "bias_hh_l1", g, n + 1));
  EXPECT_ERR(LSTM_STATUS_NULL_POINTER, "`len`", lstm_gradients_initial_state_len(grads, NULL));

  /* Destroy: NULL is a no-op for every handle; a misaligned pointer is refused. */
  EXPECT_OK(lstm_spec_destroy(NULL));
  EXPECT_OK(lstm_weights_destroy(NULL));
  EXPECT_OK(lstm_destroy(NULL));
  EXPECT_OK(lstm_workspace_destroy(NULL));
  EXPECT_OK(lstm_reserve_destroy(NULL));
  EXPECT_OK(lstm_gradients_destroy(NULL));
  EXPECT_ERR(LSTM_STATUS_MISALIGNED_POINTER, "`spec`", lstm_spec_destroy(MISALIGN(lstm_spec *, spec)));

  EXPECT_OK(lstm_gradients_destroy(grads));
  EXPECT_OK(lstm_gradients_destroy(other_grads));
  EXPECT_OK(lstm_reserve_destroy(reserve));
  EXPECT_OK(lstm_workspace_destroy(ws));
  EXPECT_OK(lstm_workspace_destroy(other_ws));
  EXPECT_OK(lstm_destroy(net));
  EXPECT_OK(lstm_destroy(file_net));
  EXPECT_OK(lstm_destroy(other));
  EXPECT_OK(lstm_weights_destroy(w));
  EXPECT_OK(lstm_weights_destroy(from_file));
  EXPECT_OK(lstm_weights_destroy(random));
  EXPECT_OK(lstm_spec_destroy(spec));
  EXPECT_OK(lstm_spec_destroy(other_spec));
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s FIXTURE SAFETENSORS\n", argv[0]);
    return 2;
  }
  size_t len = 0;
  unsigned char *bytes = read_file(argv[1], &len);
  reader r = {bytes, bytes + len};
  char magic[8];
  take(&r, magic, 8);
  if (memcmp(magic, "LSTMFIX1", 8) != 0) {
    fprintf(stderr, "%s is not a fixture\n", argv[1]);
    return 2;
  }
  size_t n_cases = rd_u64(&r);
  fixture_case *cases = alloc(n_cases * sizeof(fixture_case));
  for (size_t i = 0; i < n_cases; i++) read_case(&r, &cases[i]);
  CHECK(r.at == r.end && n_cases >= 4, "the fixture has %zu cases and nothing after them", n_cases);

  for (size_t i = 0; i < n_cases; i++) {
    run_case(&cases[i], 0);
    printf("case %s: checked\n", cases[i].name);
  }
  /* The last case is the seed's stack in TensorFlow's names, with training. */
  const fixture_case *seed = &cases[n_cases - 1];
  run_case(seed, 1);
  shared_between_threads(seed);
  error_paths(seed, argv[2], argv[1]);

  free_all();
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
