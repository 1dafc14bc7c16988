#!/usr/bin/env python3
"""Trains the seed's PTB language model in TensorFlow, the way the seed documents do.

The reference run for the crate's `examples/ptb.rs`: the same data, reader, model, loss,
schedule and evaluation, in TensorFlow's own graph (`tf.compat.v1`), so that the crate's
final perplexities can be compared with TensorFlow's over several seeds.

- Reader as TF's tutorial `reader.py`: words split on whitespace, `<eos>` per line,
  vocabulary by descending count then word; `ptb_producer`'s windows
  (`epoch_size = ((len // batch_size) - 1) // num_steps`).
- Model: embedding, `MultiRNNCell` of `BasicLSTMCell(forget_bias=0)` 256 then 128,
  `dynamic_rnn`, softmax 128 -> 10000, cost = sum over time of the batch-mean cross
  entropy, `clip_by_global_norm(5)`, `GradientDescentOptimizer`, learning rate
  `1.0 * 0.5 ** max(epoch - 4, 0)`; every variable uniform in [-0.1, 0.1] except the
  LSTM biases (zero, as `BasicLSTMCell` makes them); state carried from window to window
  and reset at each epoch's start.
- Validation with the training batch and window, the test with batch 1 and window 1
  (the tutorial's `eval_config`).

Prints the seed's lines (`Epoch N : Train Perplexity: X`, ... `Test Perplexity: Z`) and a
last JSON line with the seed, the perplexities and the wall time.

    TF_USE_LEGACY_KERAS=1 python3 benches/peers/tf_ptb.py --data-dir ../shared/data/ptb \
        --seed 1 --threads 2
"""
import argparse
import collections
import json
import math
import os
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CONFIG = dict(init_scale=0.1, learning_rate=1.0, max_grad_norm=5.0, hidden=(256, 128),
              num_steps=20, batch_size=60, embed=200, vocab=10000, max_epoch=4,
              max_max_epoch=15, lr_decay=0.5)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=2, help="intra- and inter-op threads")
    p.add_argument("--max-max-epoch", type=int, default=CONFIG["max_max_epoch"])
    p.add_argument("--limit", type=int, default=0,
                   help="at most this many windows per epoch and test tokens (0: all); for smoke tests")
    return p.parse_args()


def read_words(path):
    with open(path, encoding="utf-8") as f:
        return f.read().replace("\n", "<eos>").split()


def load(data_dir):
    names = ["ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"]
    for n in names:
        if not os.path.isfile(os.path.join(data_dir, n)):
            sys.exit(f"tf_ptb: {os.path.join(data_dir, n)} is missing")
    train_words = read_words(os.path.join(data_dir, names[0]))
    counts = collections.Counter(train_words)
    vocab = sorted(counts.items(), key=lambda x: (-x[1], x[0]))
    ids = {w: i for i, (w, _) in enumerate(vocab)}
    return [[ids[w] for w in read_words(os.path.join(data_dir, n)) if w in ids] for n in names], len(ids)


def windows(raw, batch_size, num_steps, np):
    data = np.array(raw, dtype=np.int32)
    batch_len = len(data) // batch_size
    data = data[: batch_size * batch_len].reshape(batch_size, batch_len)
    epoch_size = (batch_len - 1) // num_steps
    for i in range(epoch_size):
        s = i * num_steps
        yield data[:, s:s + num_steps], data[:, s + 1:s + num_steps + 1]


def main():
    args = parse_args()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import numpy as np
    import tensorflow as tf

    tf1 = tf.compat.v1
    tf1.disable_eager_execution()
    rc = tf1.nn.rnn_cell
    c = CONFIG
    (train, valid, test), vocab = load(args.data_dir)
    if vocab != c["vocab"]:
        sys.exit(f"tf_ptb: vocabulary of {vocab} words, expected {c['vocab']}")
    if args.limit:
        test = test[: args.limit + 1]

    class Model:
        def __init__(self, training, batch, steps):
            self.batch, self.steps = batch, steps
            self.ids = tf1.placeholder(tf.int32, [batch, steps])
            self.targets = tf1.placeholder(tf.int32, [batch, steps])
            embedding = tf1.get_variable("embedding", [c["vocab"], c["embed"]])
            inputs = tf.nn.embedding_lookup(embedding, self.ids)
            cell = rc.MultiRNNCell([rc.BasicLSTMCell(h, forget_bias=0.0) for h in c["hidden"]])
            self.initial_state = cell.zero_state(batch, tf.float32)
            out, self.final_state = tf1.nn.dynamic_rnn(cell, inputs, initial_state=self.initial_state)
            output = tf.reshape(out, [-1, c["hidden"][-1]])
            softmax_w = tf1.get_variable("softmax_w", [c["hidden"][-1], c["vocab"]])
            softmax_b = tf1.get_variable("softmax_b", [c["vocab"]])
            logits = tf.matmul(output, softmax_w) + softmax_b
            ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=tf.reshape(self.targets, [-1]), logits=logits)
            self.cost = tf.reduce_sum(tf.reduce_mean(tf.reshape(ce, [batch, steps]), axis=0))
            if not training:
                return
            self.lr = tf1.Variable(0.0, trainable=False)
            tvars = tf1.trainable_variables()
            grads, _ = tf1.clip_by_global_norm(tf1.gradients(self.cost, tvars), c["max_grad_norm"])
            self.train_op = tf1.train.GradientDescentOptimizer(self.lr).apply_gradients(zip(grads, tvars))
            self.new_lr = tf1.placeholder(tf.float32, [])
            self.lr_update = tf1.assign(self.lr, self.new_lr)

    g = tf.Graph()
    with g.as_default():
        tf1.set_random_seed(args.seed)
        init = tf1.random_uniform_initializer(-c["init_scale"], c["init_scale"])
        with tf1.variable_scope("model", reuse=None, initializer=init):
            m = Model(True, c["batch_size"], c["num_steps"])
        with tf1.variable_scope("model", reuse=True, initializer=init):
            mvalid = Model(False, c["batch_size"], c["num_steps"])
            mtest = Model(False, 1, 1)
        cfg = tf1.ConfigProto(intra_op_parallelism_threads=args.threads,
                              inter_op_parallelism_threads=args.threads)

        def run_epoch(sess, model, data, train_op=None):
            costs, iters = 0.0, 0
            state = sess.run(model.initial_state)
            fetches = [model.cost, model.final_state] + ([train_op] if train_op is not None else [])
            for n, (x, y) in enumerate(windows(data, model.batch, model.steps, np)):
                if args.limit and n >= args.limit and model.steps > 1:
                    break
                feed = {model.ids: x, model.targets: y}
                for i, (cs, hs) in enumerate(model.initial_state):
                    feed[cs] = state[i].c
                    feed[hs] = state[i].h
                out = sess.run(fetches, feed)
                costs += out[0]
                state = out[1]
                iters += model.steps
            return math.exp(costs / iters)

        t0 = time.time()
        with tf1.Session(graph=g, config=cfg) as sess:
            sess.run(tf1.global_variables_initializer())
            epochs = []
            for i in range(args.max_max_epoch):
                lr = c["learning_rate"] * c["lr_decay"] ** max(i + 1 - c["max_epoch"], 0.0)
                sess.run(m.lr_update, {m.new_lr: lr})
                print(f"Epoch {i + 1} : Learning rate: {lr:.3f}", flush=True)
                tr = run_epoch(sess, m, train, m.train_op)
                print(f"Epoch {i + 1} : Train Perplexity: {tr:.3f}", flush=True)
                va = run_epoch(sess, mvalid, valid)
                print(f"Epoch {i + 1} : Valid Perplexity: {va:.3f}", flush=True)
                epochs.append({"epoch": i + 1, "train": tr, "valid": va})
            te = run_epoch(sess, mtest, test)
            print(f"Test Perplexity: {te:.3f}", flush=True)
    print(json.dumps({"peer": "tensorflow", "seed": args.seed, "threads": args.threads,
                      "epochs": epochs, "test": te, "wall_s": time.time() - t0,
                      "tf_version": tf.__version__}), flush=True)


if __name__ == "__main__":
    main()
