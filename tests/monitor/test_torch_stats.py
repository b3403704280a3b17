"""The adapter's statistics kernels against the numpy reference (core.stats), on tensors the test makes.

Every path a layer output or a parameter can take: finite values on the CPU (NumPy) and the
NaN-excluding torch path, dead units on either unit axis, every float dtype, values near the
float limits, many parameters at once.
"""

from __future__ import annotations

import pytest
import torch

from core.stats import activation_stats, param_stats
from monitor import _torch as adapter
from tests.monitor._torch_helpers import as_list, assert_acts_match, close


@pytest.mark.parametrize("exact", [None, True, False])
@pytest.mark.parametrize("kind", ["relu", "tanh", "sigmoid", "linear"])
def test_activation_vector_matches_reference_on_finite_values(kind, exact):
    g = torch.Generator().manual_seed(4)
    x = torch.randn(50, 7, 3, generator=g) * 3
    x[:, 2] = -1.0  # a dead channel
    x[0, 0, 0] = 0.0
    if kind == "sigmoid":
        x = torch.sigmoid(x)
    got = adapter.decode_activation(as_list(adapter.activation_vector(x, kind, exact=exact)), kind, x.numel(), x.shape[1])
    assert_acts_match(got, activation_stats(x.numpy(), kind), where=kind)


@pytest.mark.parametrize("exact", [None, True])
@pytest.mark.parametrize("unit_axis", [1, -1])
def test_dead_units_of_non_negative_outputs_match_the_reference(unit_axis, exact):
    """ReLU outputs (no negative value): a unit is dead only if it is 0 for every example."""
    g = torch.Generator().manual_seed(8)
    x = torch.relu(torch.randn(50, 7, 6, generator=g))
    x[:, 2] = 0.0
    x[:, 4] = 0.0
    x[31, 4, 1] = 1e-30  # one tiny positive value: not dead
    x[:, :, 3] = 0.0
    x[17, 5, 3] = 1e-38
    if unit_axis == -1:
        x = x.transpose(1, 2).contiguous()  # the same units on the last axis
    vec = adapter.activation_vector(x, "relu", exact=exact, unit_axis=unit_axis)
    got = adapter.decode_activation(as_list(vec), "relu", x.numel(), 7)
    ref = activation_stats(x.reshape(-1, 7).numpy() if unit_axis == -1 else x.numpy(), "relu")
    assert got["dead_frac"] == pytest.approx(1 / 7) == ref["dead_frac"]
    assert_acts_match(got, ref, where=f"relu, unit axis {unit_axis}")


@pytest.mark.parametrize("exact", [None, True])
@pytest.mark.parametrize("kind", ["relu", "tanh", "linear"])
def test_activation_vector_excludes_nan_and_inf_like_the_reference(kind, exact):
    g = torch.Generator().manual_seed(5)
    x = torch.randn(40, 9, generator=g)
    x[3, 1] = float("nan")
    x[5, 2] = float("inf")
    x[7, 2] = float("-inf")
    x[:, 4] = -2.0
    x[9, 4] = float("nan")  # a unit with a NaN output is never dead
    x[:, 6] = -1.0
    got = adapter.decode_activation(as_list(adapter.activation_vector(x, kind, exact=exact)), kind, x.numel(), 9)
    ref = activation_stats(x.numpy(), kind)
    assert (got["nan"], got["inf"]) == (2, 2)
    assert_acts_match(got, ref, where=kind)
    every_bad = torch.full((4, 3), float("nan"))
    got = adapter.decode_activation(as_list(adapter.activation_vector(every_bad, kind, exact=exact)), kind, 12, 3)
    ref = activation_stats(every_bad.numpy(), kind)
    assert {k: got[k] for k in ref} == ref


def test_param_vector_matches_reference_with_nan_and_inf():
    g = torch.Generator().manual_seed(6)
    w = torch.randn(20, 10, generator=g)
    before = w + 0.01 * torch.randn(20, 10, generator=g)
    grad = torch.randn(20, 10, generator=g)
    for case in ("finite", "bad"):
        if case == "bad":
            w[0, 0], grad[1, 1], grad[2, 2] = float("inf"), float("nan"), float("-inf")
        for exact in (None, True):
            vec = (adapter.param_vector(w, before.clone(), exact=exact).tolist()
                   + adapter.grad_vector(grad, exact=exact).tolist())
            got = adapter.decode_param(vec, w.numel(), True, True)
            ref = param_stats(w.numpy(), update=(w - before).numpy(), grad=grad.numpy(), before=before.numpy())
            for k, v in ref.items():
                assert close(got[k], v, rtol=1e-5), (case, exact, k, got[k], v)


def test_cpu_parameter_path_matches_reference_for_many_tensors():
    """The batched CPU path (_foreach kernels, host arithmetic) against param_stats, including a
    tensor whose mean dominates its spread (BatchNorm's weight near 1: the two-pass branch) and
    tensors with NaN/Inf (the exact per-tensor branch)."""
    g = torch.Generator().manual_seed(18)
    ws = [torch.randn(30, 20, generator=g), 1 + 1e-4 * torch.randn(64, generator=g),
          torch.randn(10, generator=g), torch.randn(5, 5, generator=g), torch.zeros(7)]
    ws[3][1, 1] = float("nan")
    befores = [w + 0.01 * torch.randn(w.shape, generator=g) for w in ws]
    befores[2] = None  # no update known (frozen)
    updates = [None if b is None else (w - b).numpy() for w, b in zip(ws, befores)]
    grads = [torch.randn(w.shape, generator=g) for w in ws]
    grads[0][0, 0] = float("inf")
    vecs = adapter.cpu_param_lists(ws, [None if b is None else b.clone() for b in befores])
    gvecs = adapter.cpu_grad_lists(grads)
    for i, (w, upd, gr) in enumerate(zip(ws, updates, grads)):
        got = adapter.decode_param(vecs[i] + gvecs[i], w.numel(), upd is not None, True)
        ref = param_stats(w.numpy(), update=upd, grad=gr.numpy())
        for k, v in ref.items():
            assert close(got[k], v, rtol=1e-5, atol=1e-9), (i, k, got[k], v)
    assert param_stats(ws[1].numpy())["w_std"] == pytest.approx(1e-4, rel=0.3)


def test_cpu_activation_path_keeps_precision_when_the_mean_dominates():
    g = torch.Generator().manual_seed(19)
    x = 100 + 0.01 * torch.randn(128, 16, generator=g)
    got = adapter.decode_activation(as_list(adapter.activation_vector(x, "linear")), "linear", x.numel(), 16)
    assert got["std"] == pytest.approx(activation_stats(x.numpy(), "linear")["std"], rel=1e-4)
    const = torch.full((32, 4), 3.0)
    got = adapter.decode_activation(as_list(adapter.activation_vector(const, "linear")), "linear", 128, 4)
    assert got["std"] == 0.0 and got["unit_std"] == 0.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_statistics_of_every_dtype_match_the_float64_reference(dtype):
    g = torch.Generator().manual_seed(31)
    x = torch.randn(16, 6, 5, generator=g).to(dtype)
    ref = x.double()
    got = adapter.decode_activation(as_list(adapter.activation_vector(x, "relu", unit_axis=-1)), "relu", x.numel(), 5)
    assert got["mean"] == pytest.approx(float(ref.mean()), rel=1e-5, abs=1e-7)
    assert got["std"] == pytest.approx(float(ref.std(correction=0)), rel=1e-5)
    w = torch.randn(30, 20, generator=g).to(dtype)
    vec = adapter.param_vector(w, (w.double() + 0.01).to(dtype)).tolist() + adapter.grad_vector(w).tolist()
    st = adapter.decode_param(vec, w.numel(), True, True)
    assert st["w_norm"] == pytest.approx(float(w.double().norm()), rel=1e-6)
    assert st["grad_norm"] == pytest.approx(float(w.double().norm()), rel=1e-6)


def test_huge_finite_values_stay_finite():
    x = torch.full((64, 8), 1e21)
    x[::2] = -1e21
    for exact in (None, True):
        got = adapter.decode_activation(as_list(adapter.activation_vector(x, "linear", exact=exact)), "linear",
                                        x.numel(), 8)
        assert got["std"] == pytest.approx(1e21, rel=1e-6) and got["mean"] == pytest.approx(0.0, abs=1e15)
    w = torch.full((100,), 1e21)
    for vec in (adapter.cpu_param_lists([w], [w * 1.001])[0], adapter.param_vector(w, w * 1.001).tolist()):
        st = adapter.decode_param(vec + adapter.cpu_grad_lists([w])[0], w.numel(), True, True)
        assert st["w_norm"] == pytest.approx(1e22, rel=1e-6) and st["grad_norm"] == pytest.approx(1e22, rel=1e-6)
        assert st["upd_ratio"] == pytest.approx(0.001 / 1.001, rel=1e-3)
