"""DistributedDataParallel (gloo, 2 processes on localhost) over a small language model
whose LSTM is lstm_kernels.torch.LSTM: the synchronised gradients equal the
single-process gradient of the whole batch, for two SGD steps (the second on weights the
optimizer changed, so the crate's copy of them was repacked in every process)."""
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from conftest import assert_close
import lstm_kernels.torch as lkt

VOCAB, EMBED, HIDDEN, BATCH, STEPS, SGD_STEPS = 40, 12, 16, 8, 10, 2


class TinyLM(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)  # the same initial weights in every process
        self.embed = nn.Embedding(VOCAB, EMBED)
        self.lstm = lkt.LSTM(EMBED, HIDDEN, num_layers=2, batch_first=True, threads=1)
        self.head = nn.Linear(HIDDEN, VOCAB)

    def forward(self, tokens):
        out, _ = self.lstm(self.embed(tokens))
        return self.head(out)


def corpus():
    """Synthetic token batches: each step's inputs and next-token targets, [BATCH, STEPS]."""
    g = torch.Generator().manual_seed(1)
    data = torch.randint(0, VOCAB, (SGD_STEPS, BATCH, STEPS + 1), generator=g)
    return [(d[:, :-1], d[:, 1:]) for d in data]


def mean_loss(model, x, y):
    # Mean over the batch's tokens: with equal halves, DDP's average of the two ranks'
    # gradients is the gradient of the whole batch's mean.
    logits = model(x)
    return nn.functional.cross_entropy(logits.reshape(-1, VOCAB), y.reshape(-1))


def train(model, batches, rows):
    """Gradients of each SGD step on `rows` of every batch."""
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    grads = []
    for x, y in batches:
        opt.zero_grad()
        mean_loss(model, x[rows], y[rows]).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
        opt.step()
    return grads


def worker(rank, world, port, out_dir):
    torch.set_num_threads(1)  # 2 processes on 2 cores; the crate's LSTM has threads=1 too
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # loopback, whatever the hostname resolves to
    dist.init_process_group("gloo", init_method="env://", rank=rank, world_size=world)
    try:
        model = DDP(TinyLM())
        half = BATCH // world
        grads = train(model, corpus(), slice(rank * half, (rank + 1) * half))
        # DDP's names carry a `module.` prefix.
        grads = [{n.removeprefix("module."): g for n, g in step.items()} for step in grads]
        torch.save(grads, os.path.join(out_dir, f"rank{rank}.pt"))
        # No rank tears its connections down while the other still uses them.
        dist.barrier()
    finally:
        dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_gradients_equal_the_full_batch_gradient(tmp_path):
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    world = 2
    mp.spawn(worker, args=(world, free_port(), str(tmp_path)), nprocs=world, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(world)]
    torch.set_num_threads(1)
    want = train(TinyLM(), corpus(), slice(None))
    assert len(want) == SGD_STEPS
    for step, expected in enumerate(want):
        assert set(ranks[0][step]) == set(expected)
        for name, g in expected.items():
            # Every rank holds the same all-reduced gradient, bit for bit.
            assert torch.equal(ranks[0][step][name], ranks[1][step][name]), name
            # Half-batch sums in another order than the full batch's: float32 rounding
            # only, far inside the golden tolerance (conftest.ATOL / RTOL).
            assert_close(ranks[0][step][name], g, what=f"step {step} {name}")
        assert any(g.abs().max() > 1e-3 for g in expected.values())
