"""core.stats against direct numpy computations on constructed arrays."""

from __future__ import annotations

import numpy as np
import pytest

from core.schema import ACT_FIELDS, PARAM_FIELDS
from core.stats import SAT_EPS, activation_stats, histogram, input_stats, param_stats


def _direct(a: np.ndarray) -> dict[str, float]:
    f = a[np.isfinite(a)].astype(np.float64)
    return {"mean": f.mean(), "std": f.std(), "min": f.min(), "max": f.max(),
            "zero_frac": np.mean(f == 0)}


@pytest.mark.parametrize("shape", [(7,), (32, 10), (8, 3, 5, 5)])
def test_moments_match_numpy(rng, shape):
    a = rng.standard_normal(shape) * 3 + 1
    a[a < 0.5] = 0.0
    s = activation_stats(a, "linear")
    want = _direct(a)
    for k, v in want.items():
        assert s[k] == pytest.approx(v, rel=1e-12, abs=1e-15), k
    assert s["nan"] == 0 and s["inf"] == 0
    assert set(ACT_FIELDS) <= set(s) and {"hist_lo", "hist_hi", "hist"} <= set(s)


def test_float32_input_computed_in_float64(rng):
    a = (rng.standard_normal((64, 50)) * 1e3 + 1e4).astype(np.float32)
    s = activation_stats(a)
    assert s["mean"] == pytest.approx(a.astype(np.float64).mean(), rel=1e-12)
    assert s["std"] == pytest.approx(a.astype(np.float64).std(), rel=1e-12)


def test_dead_units_dense():
    # 6 units; units 0 and 3 are <= 0 for every example (unit 3 is exactly 0 everywhere).
    a = np.array([
        [-1.0, 2.0, 0.0, 0.0, 1.0, -3.0],
        [-2.0, 0.0, 0.0, 0.0, 1.0, 4.0],
        [0.0, 0.0, 5.0, 0.0, 1.0, -1.0],
    ])
    s = activation_stats(a, "relu")
    direct = np.mean(np.all(a <= 0, axis=0))
    assert direct == pytest.approx(2 / 6)
    assert s["dead_frac"] == pytest.approx(direct)
    # The zero fraction counts elements, not units: distinct from dead units.
    assert s["zero_frac"] == pytest.approx(np.mean(a == 0))
    assert s["zero_frac"] != s["dead_frac"]


def test_dead_units_conv_channels(rng):
    # (N, C, H, W): a channel is one unit, dead when <= 0 at every position of every example.
    a = np.maximum(0, rng.standard_normal((4, 8, 5, 5)))
    a[:, [1, 6]] = 0.0
    a[:, 3] = -np.abs(a[:, 3])  # <= 0 everywhere, but not zero everywhere
    a[2, 4, 4, 4] = 0.0  # a single zero does not kill channel 4
    s = activation_stats(a, "leaky_relu")
    direct = np.mean(np.all(a <= 0, axis=(0, 2, 3)))
    assert direct == pytest.approx(3 / 8)
    assert s["dead_frac"] == pytest.approx(direct)


def test_one_positive_example_keeps_a_unit_alive():
    a = np.zeros((100, 4))
    a[57, 2] = 1e-9
    assert activation_stats(a, "relu")["dead_frac"] == pytest.approx(3 / 4)


@pytest.mark.parametrize("kind", ["tanh", "sigmoid", "linear", "conv", "batchnorm"])
def test_dead_frac_only_for_relu_family(rng, kind):
    assert activation_stats(np.zeros((4, 3)), kind)["dead_frac"] is None


@pytest.mark.parametrize("kind", ["relu", "linear", "leaky_relu"])
def test_sat_frac_only_for_saturating(kind):
    assert activation_stats(np.ones((4, 3)), kind)["sat_frac"] is None


def test_saturation_tanh(rng):
    a = np.tanh(rng.standard_normal((200, 50)) * 4)
    s = activation_stats(a, "tanh")
    direct = np.mean(np.abs(a) > 1 - SAT_EPS)
    assert 0.2 < direct < 0.9
    assert s["sat_frac"] == pytest.approx(direct)


def test_saturation_tanh_threshold_edges():
    a = np.array([[0.995, -0.995, 0.98, -0.98, 0.0, 1.0, -1.0, 0.5]])
    assert activation_stats(a, "tanh")["sat_frac"] == pytest.approx(4 / 8)


def test_saturation_sigmoid(rng):
    a = 1 / (1 + np.exp(-rng.standard_normal((100, 30)) * 6))
    s = activation_stats(a, "sigmoid")
    direct = np.mean((a < SAT_EPS) | (a > 1 - SAT_EPS))
    assert 0.1 < direct < 0.9
    assert s["sat_frac"] == pytest.approx(direct)
    # A sigmoid output near 0 is saturated; a tanh output near 0 is not.
    near0 = np.full((3, 3), 0.001)
    assert activation_stats(near0, "sigmoid")["sat_frac"] == 1.0
    assert activation_stats(near0, "tanh")["sat_frac"] == 0.0


def test_nan_inf_counted_and_excluded(rng):
    a = rng.standard_normal((20, 10))
    a[0, 0] = a[3, 4] = a[7, 7] = np.nan
    a[1, 1] = np.inf
    a[2, 2] = -np.inf
    s = activation_stats(a, "tanh")
    assert s["nan"] == 3 and s["inf"] == 2
    want = _direct(a)
    for k, v in want.items():
        assert s[k] == pytest.approx(v, rel=1e-12), k
    assert sum(s["hist"]) == 200 - 5
    assert np.isfinite([s["hist_lo"], s["hist_hi"]]).all()
    fin = a[np.isfinite(a)]
    assert s["sat_frac"] == pytest.approx(np.mean(np.abs(fin) > 1 - SAT_EPS))


def test_nan_unit_is_not_dead():
    a = np.zeros((3, 2))
    a[1, 0] = np.nan
    s = activation_stats(a, "relu")
    assert s["dead_frac"] == pytest.approx(0.5)
    assert s["nan"] == 1


def test_all_nan_input():
    a = np.full((4, 5), np.nan)
    s = activation_stats(a, "tanh")
    assert s["nan"] == 20 and s["inf"] == 0
    for k in ("mean", "std", "min", "max", "zero_frac", "sat_frac"):
        assert s[k] is None, k
    assert s["hist"] == [0] * 64 and s["hist_lo"] == 0.0 and s["hist_hi"] == 0.0


def test_all_inf_relu():
    a = np.array([[np.inf, -np.inf], [np.inf, np.inf]])
    s = activation_stats(a, "relu")
    assert s["inf"] == 4 and s["nan"] == 0 and s["mean"] is None


@pytest.mark.parametrize("shape", [(0,), (0, 5), (0, 3, 4, 4)])
def test_empty(shape):
    s = activation_stats(np.empty(shape), "relu", bins=8)
    assert s["nan"] == 0 and s["inf"] == 0
    assert s["mean"] is None and s["std"] is None and s["dead_frac"] is None
    assert s["hist"] == [0] * 8


def test_integer_and_bool_inputs():
    s = activation_stats(np.array([[0, 1], [0, 3]]), "relu")
    assert s["mean"] == 1.0 and s["dead_frac"] == 0.5 and s["zero_frac"] == 0.5
    s = activation_stats(np.array([[True, False]]), "linear")
    assert s["mean"] == 0.5


def test_list_input():
    assert activation_stats([[1.0, -1.0]], "linear")["std"] == 1.0


def test_histogram_matches_numpy(rng):
    a = rng.standard_normal((50, 40))
    s = activation_stats(a, "linear", bins=32)
    counts, edges = np.histogram(a, bins=32, range=(a.min(), a.max()))
    assert s["hist"] == counts.tolist()
    assert s["hist_lo"] == a.min() and s["hist_hi"] == a.max()
    assert sum(s["hist"]) == a.size
    assert len(s["hist"]) == 32


def test_histogram_constant_values():
    lo, hi, counts = histogram(np.full(10, 2.5), bins=4)
    assert (lo, hi, counts) == (2.5, 2.5, [10, 0, 0, 0])


def test_histogram_max_lands_in_last_bin():
    lo, hi, counts = histogram(np.array([0.0, 1.0, 1.0]), bins=2)
    assert counts == [1, 2]


def test_stats_are_json_numbers(rng):
    s = activation_stats(rng.standard_normal((5, 5)), "relu")
    for k in ACT_FIELDS:
        assert s[k] is None or type(s[k]) in (int, float), k
    assert all(type(c) is int for c in s["hist"])


# -- parameters ------------------------------------------------------------------------------


def test_param_stats_match_numpy(rng):
    w = rng.standard_normal((50, 20))
    g = rng.standard_normal((50, 20))
    upd = -1e-3 * g
    s = param_stats(w, upd, g)
    assert set(s) == set(PARAM_FIELDS)
    assert s["w_norm"] == pytest.approx(np.linalg.norm(w), rel=1e-12)
    assert s["w_std"] == pytest.approx(w.std(), rel=1e-12)
    assert s["upd_norm"] == pytest.approx(np.linalg.norm(upd), rel=1e-12)
    assert s["grad_norm"] == pytest.approx(np.linalg.norm(g), rel=1e-12)
    # over the weight before the update (w - upd), as the lecture defines it
    assert s["upd_ratio"] == pytest.approx(np.linalg.norm(upd) / np.linalg.norm(w - upd), rel=1e-12)
    assert s["w_nan"] == s["w_inf"] == s["grad_nan"] == s["grad_inf"] == 0


def test_update_ratio_of_a_known_step():
    w = np.full(100, 1.001)  # after the update; before it 1.0 (norm 10)
    upd = np.full(100, 1e-3)  # norm 1e-2
    assert param_stats(w, upd)["upd_ratio"] == pytest.approx(1e-3)


def test_param_stats_without_update_or_grad(rng):
    s = param_stats(rng.standard_normal(10))
    assert s["upd_norm"] is None and s["upd_ratio"] is None and s["grad_norm"] is None
    assert s["grad_nan"] == 0


def test_param_stats_zero_weight_before_the_update_has_no_ratio():
    s = param_stats(np.ones(4), np.ones(4))
    assert s["w_norm"] == 2.0 and s["upd_norm"] == 2.0 and s["upd_ratio"] is None


def test_param_stats_nonfinite(rng):
    w = rng.standard_normal(10)
    w[2] = np.nan
    g = rng.standard_normal(10)
    g[0], g[1], g[5] = np.inf, -np.inf, np.nan
    s = param_stats(w, None, g)
    assert (s["w_nan"], s["w_inf"], s["grad_nan"], s["grad_inf"]) == (1, 0, 1, 2)
    fw = w[np.isfinite(w)]
    assert s["w_norm"] == pytest.approx(np.linalg.norm(fw))
    assert s["grad_norm"] == pytest.approx(np.linalg.norm(g[np.isfinite(g)]))
    all_nan = param_stats(np.full(3, np.nan))
    assert all_nan["w_norm"] is None and all_nan["w_nan"] == 3


def test_input_stats(rng):
    x = rng.uniform(0, 16, size=(30, 64))
    x[0, 0] = np.nan
    s = input_stats(x)
    fin = x[np.isfinite(x)]
    assert s["mean"] == pytest.approx(fin.mean()) and s["std"] == pytest.approx(fin.std())
    assert s["min"] == fin.min() and s["max"] == fin.max() and s["nan"] == 1 and s["inf"] == 0
    assert input_stats(np.full(3, np.inf))["mean"] is None
    assert input_stats(np.full(3, np.inf))["inf"] == 3


def test_zero_dim_relu():
    """Regression: a 0-d array used to fail in the dead-unit reshape."""
    s = activation_stats(np.float64(0.0), "relu")
    assert s["dead_frac"] == 1.0 and s["mean"] == 0.0
