"""The benchmark suite of /work/shared/BENCH_SHAPES.md, shared by peers.py and compare.py.

Names, shapes and the FLOP count must stay identical to the crate's runner
(`examples/bench.rs`) and criterion benches: a multiply-add counts 2, a layer's
forward costs 2 * 4H * (I + H) per real sequence step (gate math left out),
training counts 3x its forward, and `varlen-b64-h512` counts only sum(len).
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

    @property
    def input_size(self) -> int:
        return self.layers[0][0]

    @property
    def hidden_out(self) -> int:
        return self.layers[-1][1]

    @property
    def is_lm(self) -> bool:
        return self.vocab is not None

    def seq_lengths(self) -> List[int]:
        if self.lengths is None:
            return [self.steps] * self.batch
        return list(self.lengths)

    def real_steps(self) -> int:
        """Sequence steps that do real work: B*T, or sum(len) for varlen."""
        return sum(self.seq_lengths())

    def forward_flops(self) -> int:
        per_step = sum(2 * 4 * h * (i + h) for i, h in self.layers)
        return per_step * self.real_steps()

    def flops(self, work: str) -> int:
        """FLOPs of one repetition of `work`; for `seed-ptb-lm` only the LSTM stack's
        training FLOPs (3x forward) are counted, embedding and softmax are not."""
        if work not in self.works:
            raise ValueError(f"shape {self.name} has no work {work!r}")
        f = self.forward_flops()
        return 3 * f if work == "train" else f


VARLEN_LENGTHS = tuple(1 + (i * 37 + 11) % 100 for i in range(64))
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
    ]
}


def select(shape_arg: str, work_arg: str):
    """[(Shape, work)] for --shape NAME[,NAME]|all and --work forward|train|all, in suite order."""
    if shape_arg == "all":
        names = list(SHAPES)
    else:
        names = [n.strip() for n in shape_arg.split(",") if n.strip()]
        unknown = [n for n in names if n not in SHAPES]
        if unknown:
            raise SystemExit(f"unknown shape(s) {unknown}; known: {', '.join(SHAPES)}, all")
    if work_arg == "all":
        works = WORKS
    elif work_arg in WORKS:
        works = (work_arg,)
    else:
        raise SystemExit(f"unknown work {work_arg!r}; known: forward, train, all")
    out = [(SHAPES[n], w) for n in names for w in SHAPES[n].works if w in works]
    if not out:
        raise SystemExit(f"no benchmark matches --shape {shape_arg} --work {work_arg}")
    return out
