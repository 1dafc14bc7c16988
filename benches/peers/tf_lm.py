#!/usr/bin/env python3
"""One training step of the seed's PTB language model in TensorFlow (graph mode).

The seed's own graph, built with the same `tf.compat.v1` calls as the seed documents:
embedding lookup, `MultiRNNCell` of `BasicLSTMCell`s (forget_bias 0), `dynamic_rnn`, the
softmax layer, the cost (sum over time of the batch-mean cross-entropy),
`clip_by_global_norm(5)` and `GradientDescentOptimizer`: one `session.run(train_op)` per
step, inputs and targets fed as the seed feeds them. Weights uniform in [-0.1, 0.1], ids
random, the state zero at every step (as the PyTorch peer).

Run by `peers.py --peer tensorflow` in its own process, so that TensorFlow's oneDNN and
thread pools never share a process with PyTorch's. Prints one JSON line:

  {"peer": "tensorflow", "shape": "seed-ptb-lm", "work": "train", "threads": 2,
   "median_s": 0.135, "words_per_s": 8890.0}

Needs `tensorflow` and `tf_keras` (TF 2.21's `tf.compat.v1.nn.rnn_cell` lives in
tf_keras; `TF_USE_LEGACY_KERAS=1` is set here).
"""
import argparse
import gc
import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shapes as suite  # noqa: E402

SEED = 20240611


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1, help="intra- and inter-op threads")
    p.add_argument("--reps", type=int, default=20, help="timed steps (median reported)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps before timing")
    a = p.parse_args()
    if a.threads < 1 or a.reps < 1 or a.warmup < 0:
        p.error("--threads and --reps must be >= 1, --warmup >= 0")
    return a


def main():
    args = parse_args()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import numpy as np
    import tensorflow as tf

    tf1 = tf.compat.v1
    rc = tf1.nn.rnn_cell
    shape = suite.SHAPES["seed-ptb-lm"]
    B, T, V, E = shape.batch, shape.steps, shape.vocab, shape.embed
    hidden = [h for _, h in shape.layers]
    g = tf.Graph()
    with g.as_default():
        tf1.set_random_seed(SEED)
        init = tf1.random_uniform_initializer(-0.1, 0.1)
        with tf1.variable_scope("model", initializer=init):
            ids = tf1.placeholder(tf.int32, [B, T])
            targets = tf1.placeholder(tf.int32, [B, T])
            embedding = tf1.get_variable("embedding", [V, E])
            inputs = tf.nn.embedding_lookup(embedding, ids)
            cell = rc.MultiRNNCell([rc.BasicLSTMCell(h, forget_bias=0.0) for h in hidden])
            out, _ = tf1.nn.dynamic_rnn(cell, inputs, initial_state=cell.zero_state(B, tf.float32))
            output = tf.reshape(out, [-1, hidden[-1]])
            softmax_w = tf1.get_variable("softmax_w", [hidden[-1], V])
            softmax_b = tf1.get_variable("softmax_b", [V])
            logits = tf.matmul(output, softmax_w) + softmax_b
            ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=tf.reshape(targets, [-1]), logits=logits)
            cost = tf.reduce_sum(tf.reduce_mean(tf.reshape(ce, [B, T]), axis=0))
            tvars = tf1.trainable_variables()
            grads, _ = tf1.clip_by_global_norm(tf1.gradients(cost, tvars), 5.0)
            train_op = tf1.train.GradientDescentOptimizer(1.0).apply_gradients(zip(grads, tvars))
        # Both pools at the thread count, as TF's defaults are on a machine with that many
        # cores (measured: inter-op 1 is 25% slower here).
        cfg = tf1.ConfigProto(intra_op_parallelism_threads=args.threads,
                              inter_op_parallelism_threads=args.threads)
        rng = np.random.default_rng(SEED)
        feed = {ids: rng.integers(0, V, (B, T)).astype(np.int32),
                targets: rng.integers(0, V, (B, T)).astype(np.int32)}
        with tf1.Session(graph=g, config=cfg) as sess:
            sess.run(tf1.global_variables_initializer())
            for _ in range(args.warmup):
                sess.run([cost, train_op], feed)
            gc.collect()
            gc.disable()
            ts = []
            for _ in range(args.reps):
                t0 = time.perf_counter()
                c, _ = sess.run([cost, train_op], feed)
                ts.append(time.perf_counter() - t0)
            gc.enable()
            if not np.isfinite(c):
                sys.exit(f"tf_lm: the cost is not finite ({c})")
    med = statistics.median(ts)
    print(json.dumps({"peer": "tensorflow", "shape": shape.name, "work": "train",
                      "threads": args.threads, "median_s": med,
                      "gflops": shape.flops("train") / med / 1e9,
                      "words_per_s": B * T / med,
                      "tf_version": tf.__version__}), flush=True)


if __name__ == "__main__":
    main()
