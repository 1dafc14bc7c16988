"""lstm_kernels.torch.LSTM against torch.nn.LSTM: outputs, final states and the
gradients of the input, h0, c0 and every weight, on padded and packed batches; the
inference path; training; errors."""
import copy
import itertools

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

from conftest import assert_close
import lstm_kernels.torch as lkt

torch.set_num_threads(1)

LENGTHS = [7, 3, 5, 1, 7]

CASES = [
    # layers, bidirectional, proj_size, batch_first, with (h0, c0), input: padded / packed / sorted
    (1, False, 0, True, False, "padded"),
    (2, False, 0, False, True, "padded"),
    (2, True, 0, True, True, "packed"),
    (2, True, 3, False, True, "packed"),
    (3, False, 4, True, False, "packed"),
    (1, True, 0, False, False, "sorted"),
    (2, True, 3, True, False, "padded"),
    (2, False, 0, True, True, "packed"),
]


def make(layers, bidir, proj, batch_first, bias=True, seed=0):
    torch.manual_seed(seed)
    ref = torch.nn.LSTM(5, 6, layers, bias=bias, batch_first=batch_first, bidirectional=bidir, proj_size=proj)
    return ref, lkt.LSTM.from_module(ref, threads=1)


def inputs(layers, bidir, proj, batch_first, with_state, mode, seed=1):
    g = torch.Generator().manual_seed(seed)
    b, t = len(LENGTHS), max(LENGTHS)
    x = torch.randn((b, t, 5) if batch_first else (t, b, 5), generator=g, requires_grad=True)
    d = 2 if bidir else 1
    hx = None
    if with_state:
        hx = (torch.randn(layers * d, b, proj or 6, generator=g, requires_grad=True),
              torch.randn(layers * d, b, 6, generator=g, requires_grad=True))
    return x, hx


def feed(x, mode, batch_first):
    if mode == "padded":
        return x
    lengths = torch.tensor(LENGTHS)
    if mode == "sorted":
        lengths, _ = lengths.sort(descending=True)
    return pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=(mode == "sorted"))


def outputs(module, x, hx, mode, batch_first):
    out, (h, c) = module(feed(x, mode, batch_first), hx)
    if mode != "padded":
        assert isinstance(out, torch.nn.utils.rnn.PackedSequence)
        out = out.data
    return out, h, c


@pytest.mark.parametrize("layers,bidir,proj,batch_first,with_state,mode", CASES)
def test_forward_and_gradients_match_nn_lstm(layers, bidir, proj, batch_first, with_state, mode):
    ref, mine = make(layers, bidir, proj, batch_first)
    x, hx = inputs(layers, bidir, proj, batch_first, with_state, mode)
    want = outputs(ref, x, hx, mode, batch_first)
    got = outputs(mine, x, hx, mode, batch_first)
    for name, a, b in zip(("output", "h_n", "c_n"), got, want):
        assert_close(a, b, what=name)
    g = torch.Generator().manual_seed(2)
    ups = [torch.randn(t.shape, generator=g) for t in want]
    leaves = [x] + (list(hx) if hx else [])
    grads_want = torch.autograd.grad(want, leaves + list(ref.parameters()), ups)
    grads_got = torch.autograd.grad(got, leaves + list(mine.parameters()), ups)
    names = ["input"] + (["h0", "c0"] if hx else []) + [n for n, _ in ref.named_parameters()]
    assert names[len(leaves):] == [n for n, _ in mine.named_parameters()]
    for name, a, b in zip(names, grads_got, grads_want):
        assert_close(a, b, what=f"grad {name}")


@pytest.mark.parametrize("layers,bidir,proj,batch_first,with_state,mode", CASES[:4])
def test_no_grad_uses_inference_with_the_same_results(layers, bidir, proj, batch_first, with_state, mode):
    ref, mine = make(layers, bidir, proj, batch_first)
    x, hx = inputs(layers, bidir, proj, batch_first, with_state, mode)
    trained = outputs(mine, x, hx, mode, batch_first)
    assert trained[0].grad_fn is not None
    with torch.no_grad():
        inferred = outputs(mine.eval(), x, hx, mode, batch_first)
        want = outputs(ref, x, hx, mode, batch_first)
    assert inferred[0].grad_fn is None
    for a, b, w in zip(inferred, trained, want):
        # Inference and training run the same kernels in the same order: the same bits.
        assert torch.equal(a, b.detach())
        assert_close(a, w)


def test_bias_false_and_unbatched():
    ref, mine = make(2, True, 0, False, bias=False)
    assert [n for n, _ in mine.named_parameters()] == [n for n, _ in ref.named_parameters()]
    x = torch.randn(4, 5, requires_grad=True)  # unbatched: [T, I]
    h0 = (torch.randn(4, 6), torch.randn(4, 6))
    (o1, (h1, c1)), (o2, (h2, c2)) = ref(x, h0), mine(x, h0)
    assert o2.shape == o1.shape == (4, 12) and h2.shape == (4, 6)
    for a, b in ((o2, o1), (h2, h1), (c2, c1)):
        assert_close(a, b)
    g1 = torch.autograd.grad(o1.sum(), [x, *ref.parameters()])
    g2 = torch.autograd.grad(o2.sum(), [x, *mine.parameters()])
    for a, b in zip(g2, g1):
        assert_close(a, b)


def test_state_dict_both_ways_and_deepcopy():
    ref, mine = make(2, True, 3, True)
    back = torch.nn.LSTM(5, 6, 2, batch_first=True, bidirectional=True, proj_size=3)
    back.load_state_dict(mine.state_dict())
    x = torch.randn(2, 4, 5)
    with torch.no_grad():
        assert_close(back(x)[0], ref(x)[0])
        clone = copy.deepcopy(mine)
        assert torch.equal(clone(x)[0], mine(x)[0])


def test_training_matches_nn_lstm_over_sgd_steps():
    """A tiny regression model trained 6 SGD steps from the same initialisation: the
    losses agree within the golden tolerance at every step (differences compound over
    steps, but stay near float32 rounding at this size), and they decrease."""
    def model(lstm_cls):
        torch.manual_seed(3)
        lstm = torch.nn.LSTM(4, 8, 2, batch_first=True)
        head = torch.nn.Linear(8, 1)
        if lstm_cls is not torch.nn.LSTM:
            lstm = lstm_cls.from_module(lstm, threads=1)
        return lstm, head

    g = torch.Generator().manual_seed(4)
    xs = torch.randn(6, 8, 10, 4, generator=g)
    ys = xs.sum(-1).cumsum(-1).tanh()

    def train(lstm, head):
        opt = torch.optim.SGD(itertools.chain(lstm.parameters(), head.parameters()), lr=0.5)
        losses = []
        for x, y in zip(xs, ys):
            out, _ = lstm(x)
            loss = torch.nn.functional.mse_loss(head(out).squeeze(-1), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return losses

    want, got = train(*model(torch.nn.LSTM)), train(*model(lkt.LSTM))
    assert_close(got, want, what="losses")
    assert got[-1] < got[0]


def test_weights_changed_in_place_before_backward_is_an_error():
    _, mine = make(1, False, 0, True)
    out, _ = mine(torch.randn(2, 3, 5))
    with torch.no_grad():
        mine.weight_hh_l0.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()


def test_bad_arguments():
    _, mine = make(2, False, 0, True)
    with pytest.raises(NotImplementedError, match="dropout"):
        lkt.LSTM(5, 6, 2, dropout=0.2)
    with pytest.raises(TypeError, match="float32"):
        mine(torch.randn(2, 3, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"tensor `input`: expected shape \[2, 3, 5\] \(30 elements\), got 42 elements"):
        mine(torch.randn(2, 3, 7))
    with pytest.raises(ValueError, match=r"tensor `h_0`: expected shape \[2, 2, 6\], got \[1, 2, 6\]"):
        mine(torch.randn(2, 3, 5), (torch.zeros(1, 2, 6), torch.zeros(2, 2, 6)))
    with pytest.raises(ValueError, match="2-D \\(unbatched\\) or 3-D"):
        mine(torch.randn(2, 3, 5, 1))
    with pytest.raises(ValueError, match="proj_size"):
        lkt.LSTM(5, 6, proj_size=6)
    with pytest.raises(TypeError, match="from_module expects"):
        lkt.LSTM.from_module(torch.nn.GRU(5, 6))
