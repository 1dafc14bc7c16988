// lstm-kernels from C++: a small RAII layer over the C ABI (each handle owned by a
// std::unique_ptr with its destroy function; a failed call throws lstm::Error with the
// status and lstm_last_error()), then a stack run on a stream of two chunks that carry
// their state, checked against one pass over the whole sequence.
//
// Build (capi/ci.sh does): g++ -std=c++17 -I capi/include example.cpp -L<dir> -llstm_kernels
// Exits non-zero when a check fails.

#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "lstm_kernels.h"

namespace lstmk {

// A failed call: its status and the library's message.
class Error : public std::runtime_error {
 public:
  Error(lstm_status status, const std::string& where)
      : std::runtime_error(where + ": " + lstm_status_name(status) + ": " + lstm_last_error()),
        status_(status) {}
  lstm_status status() const { return status_; }

 private:
  lstm_status status_;
};

inline void check(lstm_status status, const char* where) {
  if (status != LSTM_STATUS_OK) throw Error(status, where);
}

// unique_ptr with the handle's destroy function as deleter. Destroy cannot fail on a
// handle the library made, so its status is dropped (a destructor must not throw).
template <typename T, lstm_status (*Destroy)(T*)>
struct Deleter {
  void operator()(T* p) const noexcept { (void)Destroy(p); }
};
template <typename T, lstm_status (*Destroy)(T*)>
using Handle = std::unique_ptr<T, Deleter<T, Destroy>>;

class Spec {
 public:
  Spec(size_t input_size, std::vector<size_t> hidden, float forget_bias) {
    lstm_spec_desc desc{};
    desc.input_size = input_size;
    desc.num_layers = hidden.size();
    desc.hidden_sizes = hidden.data();
    desc.forget_bias = forget_bias;
    lstm_spec* raw = nullptr;
    check(lstm_spec_create(&desc, &raw), "lstm_spec_create");
    handle_.reset(raw);
  }
  const lstm_spec* get() const { return handle_.get(); }
  size_t output_size() const {
    size_t n = 0;
    check(lstm_spec_output_size(get(), &n), "lstm_spec_output_size");
    return n;
  }

 private:
  Handle<lstm_spec, lstm_spec_destroy> handle_;
};

class Weights {
 public:
  static Weights random(const Spec& spec, float scale, uint64_t seed) {
    lstm_weights* raw = nullptr;
    check(lstm_weights_random_uniform(spec.get(), scale, seed, &raw),
          "lstm_weights_random_uniform");
    return Weights(raw);
  }
  static Weights load(const Spec& spec, const std::string& path, lstm_convention convention) {
    lstm_weights* raw = nullptr;
    check(lstm_weights_load_safetensors(spec.get(), path.c_str(), convention, 0, &raw),
          "lstm_weights_load_safetensors");
    return Weights(raw);
  }
  const lstm_weights* get() const { return handle_.get(); }

 private:
  explicit Weights(lstm_weights* raw) : handle_(raw) {}
  Handle<lstm_weights, lstm_weights_destroy> handle_;
};

class Workspace;

// The packed LSTM: const methods, so one object may serve several threads (each with
// its own Workspace).
class Lstm {
 public:
  explicit Lstm(const Weights& weights, size_t threads = 0) {
    lstm* raw = nullptr;
    check(lstm_create(weights.get(), threads, &raw), "lstm_create");
    handle_.reset(raw);
  }
  void forward(Workspace& ws, const std::vector<float>& input, size_t batch, size_t steps,
               const std::vector<int32_t>* lengths, lstm_initial_state initial) const;

 private:
  Handle<lstm, lstm_destroy> handle_;
};

class Workspace {
 public:
  Workspace(const Spec& spec, size_t batch, size_t steps) {
    lstm_workspace* raw = nullptr;
    check(lstm_workspace_create(spec.get(), batch, steps, &raw), "lstm_workspace_create");
    handle_.reset(raw);
  }
  std::vector<float> output() const {
    size_t n = 0;
    check(lstm_workspace_output_len(get(), &n), "lstm_workspace_output_len");
    std::vector<float> out(n);
    check(lstm_workspace_output(get(), out.data(), out.size()), "lstm_workspace_output");
    return out;
  }
  std::vector<float> final_state() const {
    size_t n = 0;
    check(lstm_workspace_final_state_len(get(), &n), "lstm_workspace_final_state_len");
    std::vector<float> out(n);
    check(lstm_workspace_final_state(get(), out.data(), out.size()),
          "lstm_workspace_final_state");
    return out;
  }
  lstm_workspace* get() const { return handle_.get(); }

 private:
  Handle<lstm_workspace, lstm_workspace_destroy> handle_;
};

void Lstm::forward(Workspace& ws, const std::vector<float>& input, size_t batch, size_t steps,
                   const std::vector<int32_t>* lengths, lstm_initial_state initial) const {
  lstm_input in{};
  in.data = input.data();
  in.data_len = input.size();
  in.batch = batch;
  in.steps = steps;
  in.sequence_length = lengths ? lengths->data() : nullptr;
  in.sequence_length_len = lengths ? lengths->size() : 0;
  in.initial_state = initial;
  check(lstm_forward_inference(handle_.get(), ws.get(), &in), "lstm_forward_inference");
}

}  // namespace lstmk

static int failures = 0;

static void expect(bool ok, const char* what) {
  std::printf("%s: %s\n", ok ? "ok" : "FAILED", what);
  if (!ok) failures++;
}

int main() {
  try {
    std::printf("lstm-kernels %s\n", lstm_version());
    const size_t input_size = 20, batch = 2, steps = 6, half = 3;
    lstmk::Spec spec(input_size, {32, 16}, 0.0f);
    lstmk::Weights weights = lstmk::Weights::random(spec, 0.1f, 7);
    const lstmk::Lstm net(weights);
    const size_t out_size = spec.output_size();

    // Batch-major [B, T, I] input; the two chunks are its steps 0..3 and 3..6.
    std::vector<float> whole(batch * steps * input_size), first, second;
    for (size_t i = 0; i < whole.size(); i++) whole[i] = std::sin(0.1f * float(i));
    for (size_t b = 0; b < batch; b++) {
      const float* row = &whole[b * steps * input_size];
      first.insert(first.end(), row, row + half * input_size);
      second.insert(second.end(), row + half * input_size, row + steps * input_size);
    }

    lstmk::Workspace ws_whole(spec, batch, steps), ws_chunks(spec, batch, half);
    net.forward(ws_whole, whole, batch, steps, nullptr, LSTM_INITIAL_ZEROS);
    net.forward(ws_chunks, first, batch, half, nullptr, LSTM_INITIAL_ZEROS);
    net.forward(ws_chunks, second, batch, half, nullptr, LSTM_INITIAL_CARRY);

    // The second chunk's outputs are the whole pass's last steps, bit for bit.
    std::vector<float> a = ws_whole.output(), b = ws_chunks.output();
    bool same = true;
    for (size_t s = 0; s < batch; s++) {
      same &= std::memcmp(&a[(s * steps + half) * out_size], &b[s * half * out_size],
                          half * out_size * sizeof(float)) == 0;
    }
    expect(same, "a stream of two chunks carrying the state gives one pass's bits");
    expect(ws_whole.final_state() == ws_chunks.final_state(), "and its final state");

    // Sequence lengths: outputs past a length are zero.
    std::vector<int32_t> lengths{6, 2};
    net.forward(ws_whole, whole, batch, steps, &lengths, LSTM_INITIAL_ZEROS);
    std::vector<float> padded = ws_whole.output();
    bool zeros = true;
    for (size_t i = (steps + 2) * out_size; i < 2 * steps * out_size; i++) zeros &= padded[i] == 0;
    expect(zeros, "outputs past a sequence's length are zero");

    // Errors arrive as exceptions that carry the status and the library's message.
    try {
      lstmk::Spec bad(input_size, {32, 0}, 0.0f);
      expect(false, "a zero hidden size throws");
    } catch (const lstmk::Error& e) {
      expect(e.status() == LSTM_STATUS_INVALID_ARGUMENT &&
                 std::strstr(e.what(), "hidden_sizes[1]") != nullptr,
             "a zero hidden size throws INVALID_ARGUMENT naming hidden_sizes[1]");
      std::printf("  (%s)\n", e.what());
    }
    try {
      lstmk::Weights::load(spec, "/nonexistent/model.safetensors", LSTM_CONVENTION_TENSORFLOW);
      expect(false, "a missing file throws");
    } catch (const lstmk::Error& e) {
      expect(e.status() == LSTM_STATUS_IO_ERROR, "a missing file throws IO_ERROR");
    }
    try {
      std::vector<float> short_input(whole.size() - 1);
      net.forward(ws_whole, short_input, batch, steps, nullptr, LSTM_INITIAL_ZEROS);
      expect(false, "a short input throws");
    } catch (const lstmk::Error& e) {
      expect(e.status() == LSTM_STATUS_SHAPE_MISMATCH &&
                 std::strstr(e.what(), "input") != nullptr,
             "a short input throws SHAPE_MISMATCH naming the input");
    }
  } catch (const std::exception& e) {
    std::printf("FAILED: unexpected exception: %s\n", e.what());
    return 1;
  }
  std::printf("%d failed\n", failures);
  return failures ? 1 : 0;
}
