"""Train a word-level language model on Penn Treebank with DistributedDataParallel, its
LSTM on the crate's kernels (lstm_kernels.torch.LSTM).

    # 2 processes on this machine (gloo, 127.0.0.1, a free port), one crate thread each:
    python python/examples/ddp_lm.py --data-dir /work/shared/data/ptb --world-size 2

    # the same script under torchrun, on one node or several (it reads RANK, WORLD_SIZE,
    # MASTER_ADDR, MASTER_PORT from the environment):
    torchrun --nnodes 2 --nproc-per-node 2 --rdzv-endpoint host0:29500 \
        python/examples/ddp_lm.py --data-dir /data/ptb

Model: embedding -> lstm_kernels.torch.LSTM -> linear over the vocabulary; truncated
backpropagation through time with the state carried between windows; SGD with gradient
clipping. Each rank trains on its own share of the batch's streams; DDP averages the
gradients. With --check, the first step also compares the synchronised gradient with the
gradient of the whole batch computed in one process (rank 0), and fails if they differ.
"""
import argparse
import math
import os
import socket
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

import lstm_kernels.torch as lkt


class LanguageModel(nn.Module):
    def __init__(self, vocab, embed, hidden, layers, seed):
        super().__init__()
        torch.manual_seed(seed)  # every rank starts from the same weights
        self.embed = nn.Embedding(vocab, embed)
        self.lstm = lkt.LSTM(embed, hidden, num_layers=layers, batch_first=True, threads=1)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, tokens, state=None):
        out, state = self.lstm(self.embed(tokens), state)
        return self.head(out), state


def read_corpus(data_dir):
    """Token ids of the train and valid files (an `<eos>` ends each line)."""
    words = {}
    def ids(name):
        out = []
        with open(os.path.join(data_dir, name)) as f:
            for line in f:
                for w in line.split() + ["<eos>"]:
                    out.append(words.setdefault(w, len(words)))
        return torch.tensor(out, dtype=torch.long)
    train = ids("ptb.train.txt")
    valid = ids("ptb.valid.txt")
    return train, valid, len(words)


def streams(tokens, batch):
    """`[batch, n]`: the corpus cut into `batch` contiguous streams."""
    n = tokens.numel() // batch
    return tokens[: n * batch].view(batch, n)


def loss_of(model, x, y, state, vocab):
    logits, state = model(x, state)
    return nn.functional.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1)), state


def check_gradients(ddp_model, args, vocab, x_full, y_full, rank, world):
    """Rank 0 computes the whole batch's mean-loss gradient in one process (a fresh
    model from the same seed) and compares it with DDP's synchronised one."""
    if rank != 0:
        return
    single = LanguageModel(vocab, args.embed, args.hidden, args.layers, args.seed)
    loss, _ = loss_of(single, x_full, y_full, None, vocab)
    loss.backward()
    worst = 0.0
    for (name, p), q in zip(single.named_parameters(), ddp_model.module.parameters()):
        diff = (p.grad - q.grad).abs()
        # The crate's golden tolerance: abs 1e-5 + rel 1e-4 (fixtures/README.md).
        bound = 1e-5 + 1e-4 * p.grad.abs()
        if (diff > bound).any():
            raise SystemExit(f"gradient check failed for {name}: max diff {diff.max():.3e}")
        worst = max(worst, diff.max().item())
    print(f"[rank 0] DDP gradient of {world} x {args.batch_size // world} rows == "
          f"single-process gradient of {args.batch_size} rows (max abs diff {worst:.2e})", flush=True)


def evaluate(model, valid, args, vocab):
    data = streams(valid, 10)
    total, count, state = 0.0, 0, None
    with torch.no_grad():  # the crate's inference pass
        for i in range(0, data.size(1) - 1, args.bptt):
            x = data[:, i:i + args.bptt]
            y = data[:, i + 1:i + 1 + args.bptt]
            x = x[:, : y.size(1)]
            loss, state = loss_of(model, x, y, state, vocab)
            total += loss.item() * y.numel()
            count += y.numel()
    return math.exp(total / count)


def run(rank, world, init_method, args):
    torch.set_num_threads(1)  # one core per process: the crate's LSTM has 1 thread too
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world)
    try:
        train, valid, vocab = read_corpus(args.data_dir)
        if args.batch_size % world:
            raise SystemExit(f"--batch-size {args.batch_size} must divide by the world size {world}")
        per = args.batch_size // world
        data = streams(train, args.batch_size)
        mine = data[rank * per:(rank + 1) * per]
        model = DDP(LanguageModel(vocab, args.embed, args.hidden, args.layers, args.seed))
        opt = torch.optim.SGD(model.parameters(), lr=args.lr)
        state, step, t0 = None, 0, time.perf_counter()
        windows = (data.size(1) - 1) // args.bptt
        for epoch in range(args.epochs):
            for w in range(windows):
                if args.max_steps and step >= args.max_steps:
                    break
                i = w * args.bptt
                x, y = mine[:, i:i + args.bptt], mine[:, i + 1:i + 1 + args.bptt]
                if state is not None:
                    state = tuple(s.detach() for s in state)
                loss, state = loss_of(model, x, y, state, vocab)
                opt.zero_grad()
                loss.backward()
                if args.check and step == 0:
                    check_gradients(model, args, vocab, data[:, i:i + args.bptt],
                                    data[:, i + 1:i + 1 + args.bptt], rank, world)
                nn.utils.clip_grad_norm_(model.parameters(), args.clip)
                opt.step()
                step += 1
                if rank == 0 and step % args.log_every == 0:
                    words = step * args.bptt * args.batch_size
                    print(f"[rank 0] epoch {epoch} step {step}/{windows} loss {loss.item():.3f} "
                          f"ppl {math.exp(loss.item()):.1f} {words / (time.perf_counter() - t0):.0f} words/s",
                          flush=True)
            if rank == 0:
                print(f"[rank 0] epoch {epoch}: valid perplexity {evaluate(model.module, valid, args, vocab):.1f}",
                      flush=True)
        # No rank tears its connections down while another still uses them.
        dist.barrier()
    finally:
        dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default="/work/shared/data/ptb")
    p.add_argument("--world-size", type=int, default=2, help="processes to spawn (ignored under torchrun)")
    p.add_argument("--batch-size", type=int, default=20, help="streams in all ranks together")
    p.add_argument("--bptt", type=int, default=20)
    p.add_argument("--embed", type=int, default=200)
    p.add_argument("--hidden", type=int, default=200)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--lr", type=float, default=1.0)
    p.add_argument("--clip", type=float, default=5.0)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-steps", type=int, default=0, help="stop each epoch after this many steps (0: all)")
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-check", dest="check", action="store_false",
                   help="skip the first step's comparison with the single-process gradient")
    args = p.parse_args()
    if "RANK" in os.environ:  # torchrun (or any launcher that sets the env:// variables)
        run(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), "env://", args)
    else:  # this machine: MASTER_ADDR 127.0.0.1, a free port, the loopback interface
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
        mp.spawn(run, args=(args.world_size, "env://", args), nprocs=args.world_size, join=True)


if __name__ == "__main__":
    main()
