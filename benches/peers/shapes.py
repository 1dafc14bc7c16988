"""The benchmark suite of /work/shared/BENCH_SHAPES.md, shared by peers.py and compare.py.

Names, shapes and the FLOP count must stay identical to the crate's runner
(`examples/bench.rs`, `src/bench.rs`) and criterion benches: a multiply-add counts 2, a
layer's forward costs 2 * 4H * (I + R) per real sequence step and direction (R = P with
a projection, which adds 2 * H * P; gate math left out), training counts 3x its
forward, `varlen-b64-h512` counts only sum(len), and a streaming shape's repetition is
all its calls (each of T steps, from the state the previous call left).
"""
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

WORKS = ("forward", "train")


@dataclass(frozen=True)
class Shape:
    name: str
    layers: Tuple[Tuple[int, int], ...]  # (input, hidden) per layer, bottom first
    batch: int
    steps: int  # T (the max length for varlen)
    works: Tuple[str, ...]
    lengths: Optional[Tuple[int, ...]] = None  # None = every sequence has length T
    vocab: Optional[int] = None  # language-model shapes only
    embed: Optional[int] = None
    bidirectional: bool = False
    proj: Optional[int] = None  # every layer's proj_size
    stream_calls: int = 0  # > 0: a repetition is this many calls of T steps, state carried

    @property
    def dirs(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def input_size(self) -> int:
        return self.layers[0][0]

    @property
    def hidden_out(self) -> int:
        """Width of the stack's output (2x with both directions; P with a projection)."""
        return self.dirs * (self.proj or self.layers[-1][1])

    @property
    def calls(self) -> int:
        return max(self.stream_calls, 1)

    @property
    def is_lm(self) -> bool:
        return self.vocab is not None

    def seq_lengths(self) -> List[int]:
        if self.lengths is None:
            return [self.steps] * self.batch
        return list(self.lengths)

    def real_steps(self) -> int:
        """Sequence steps that do real work in a repetition: B*T (times the calls of a
        streaming shape), or sum(len) for varlen."""
        return sum(self.seq_lengths()) * self.calls

    def forward_flops(self) -> int:
        def layer(i, h):
            r = self.proj or h
            return self.dirs * (2 * 4 * h * (i + r) + (2 * h * self.proj if self.proj else 0))
        return sum(layer(i, h) for i, h in self.layers) * self.real_steps()

    def flops(self, work: str) -> int:
        """FLOPs of one repetition of `work`; for `seed-ptb-lm` only the LSTM stack's
        training FLOPs (3x forward) are counted, embedding and softmax are not."""
        if work not in self.works:
            raise ValueError(f"shape {self.name} has no work {work!r}")
        f = self.forward_flops()
        return 3 * f if work == "train" else f


VARLEN_LENGTHS = tuple(1 + (i * 37 + 11) % 100 for i in range(64))  # varlen(64, 100)
assert sum(VARLEN_LENGTHS) == 3260

SEED_PTB_LAYERS = ((200, 256), (256, 128))

SHAPES = {
    s.name: s
    for s in [
        Shape("seed-ptb", SEED_PTB_LAYERS, 60, 20, ("forward", "train")),
        Shape("infer-b1-h512", ((512, 512),), 1, 25, ("forward",)),
        Shape("infer-b8-h256-t100", ((256, 256),), 8, 100, ("forward",)),
        Shape("infer-b64-h1024", ((1024, 1024),), 64, 25, ("forward",)),
        Shape("train-b32-h512", ((512, 512),), 32, 25, ("train",)),
        Shape("varlen-b64-h512", ((512, 512),), 64, 100, ("forward",), lengths=VARLEN_LENGTHS),
        Shape("seed-ptb-lm", SEED_PTB_LAYERS, 60, 20, ("train",), vocab=10000, embed=200),
        Shape("stream-b1-h512-t1", ((128, 512),), 1, 1, ("forward",), stream_calls=50),
        Shape("small-b4-h128-t100", ((64, 128), (128, 128)), 4, 100, ("forward",)),
        Shape("bidir-b16-h384-t60", ((160, 384),), 16, 60, ("forward",), bidirectional=True),
        Shape("lstmp-b8-h768p192-t80", ((80, 768), (192, 768)), 8, 80, ("forward",), proj=192),
    ]
}


def varlen(batch: int, steps: int) -> Tuple[int, ...]:
    """The varlen lengths: len[i] = 1 + (i * 37 + 11) % T (the crate's `BenchShape::lengths`)."""
    return tuple(1 + (i * 37 + 11) % steps for i in range(batch))


# Shapes outside the suite, so that no change is tuned to the suite's list alone (the
# crate's `bench::OFF_SUITE`, the same names and shapes): other batch sizes, widths,
# depths, directions, lengths and streaming patterns. `--shape off-suite`.
OFF_SUITE = {
    s.name: s
    for s in [
        Shape("x-b2-h64-t50", ((32, 64),), 2, 50, ("forward",)),
        Shape("x-b32-h256x3-t35", ((128, 256), (256, 256), (256, 256)), 32, 35, ("forward", "train")),
        Shape("x-b128-h128-t20", ((128, 128),), 128, 20, ("forward",)),
        Shape("x-b4-h1024-t10", ((256, 1024),), 4, 10, ("forward",)),
        Shape("x-varlen-b24-h200-t64", ((100, 200),), 24, 64, ("forward",), lengths=varlen(24, 64)),
        Shape("x-stream-b16-h256x2-t1", ((128, 256), (256, 256)), 16, 1, ("forward",), stream_calls=20),
        Shape("x-bidir-b4-h128x2-t100", ((64, 128), (256, 128)), 4, 100, ("forward",), bidirectional=True),
        Shape("x-lstmp-b1-h512p128-t30", ((64, 512),), 1, 30, ("forward",), proj=128),
        Shape("x-train-b16-h384-t50", ((192, 384),), 16, 50, ("train",)),
    ]
}
ALL = {**SHAPES, **OFF_SUITE}


def select(shape_arg: str, work_arg: str):
    """[(Shape, work)] for --shape NAME[,NAME]|all|off-suite and --work forward|train|all,
    in list order (`all` is the suite; `off-suite` the shapes outside it)."""
    if shape_arg == "all":
        names = list(SHAPES)
    elif shape_arg == "off-suite":
        names = list(OFF_SUITE)
    else:
        names = [n.strip() for n in shape_arg.split(",") if n.strip()]
        unknown = [n for n in names if n not in ALL]
        if unknown:
            raise SystemExit(f"unknown shape(s) {unknown}; known: {', '.join(ALL)}, all, off-suite")
    if work_arg == "all":
        works = WORKS
    elif work_arg in WORKS:
        works = (work_arg,)
    else:
        raise SystemExit(f"unknown work {work_arg!r}; known: forward, train, all")
    out = [(ALL[n], w) for n in names for w in ALL[n].works if w in works]
    if not out:
        raise SystemExit(f"no benchmark matches --shape {shape_arg} --work {work_arg}")
    return out


# The counts BENCH_SHAPES.md gives, checked on import so the two languages cannot drift.
assert SHAPES["stream-b1-h512-t1"].forward_flops() == 50 * 2 * 2048 * 640
assert SHAPES["bidir-b16-h384-t60"].forward_flops() == 960 * 2 * 2 * 1536 * 544
assert SHAPES["lstmp-b8-h768p192-t80"].forward_flops() == 640 * sum(
    2 * 3072 * (i + 192) + 2 * 768 * 192 for i in (80, 192))
