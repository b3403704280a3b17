"""``edge_of_range`` reads its thresholds through ``DiagnosisConfig``, as every rule does.

The knobs of ``EdgeOfRangeThresholds`` are the one declaration of the defaults and ranges:
an ``edge_of_range.*`` override in a ``DiagnosisConfig`` changes the verdict, a keyword
argument wins over the config, and an out-of-range value fails with the knob's message.
"""

from __future__ import annotations

import pytest

from core.diagnose import DiagnosisConfig, parse_overrides
from core.edge import EdgeOfRangeThresholds, edge_of_range, edge_thresholds, search_findings
from core.errors import ConfigError
from core.summary import SummaryCache
from core.logdir import LogDir

from tests.core.test_compare import write_run

LOG_SPACE = {"lr": {"type": "loguniform", "low": 1e-6, "high": 1e-2, "log": True}}
# The best run's 5e-6 sits at log position 0.17: inside the default outer 10%, an edge for 20%.
TRIALS = [("s-t000", {"lr": 5e-6}, 0.9), ("s-t001", {"lr": 1e-5}, 0.5), ("s-t002", {"lr": 1e-4}, 0.5),
          ("s-t003", {"lr": 3e-4}, 0.5)]


def test_the_defaults_are_the_knobs():
    assert edge_thresholds() == EdgeOfRangeThresholds() == DiagnosisConfig().thresholds("edge_of_range")


def test_an_override_of_outer_in_the_config_changes_the_verdict():
    assert edge_of_range(TRIALS, LOG_SPACE) == []
    wide = DiagnosisConfig(overrides={"edge_of_range.outer": 0.2})
    (e,) = edge_of_range(TRIALS, LOG_SPACE, config=wide)
    assert (e.side, e.outer) == ("low", 0.2)


def test_an_override_of_min_trials_in_the_config_silences_a_small_search():
    at_edge = [("s-t000", {"lr": 1.5e-6}, 0.9)] + TRIALS[1:]
    assert len(edge_of_range(at_edge, LOG_SPACE)) == 1
    strict = DiagnosisConfig(overrides=parse_overrides(["edge_of_range.min_trials=5"]))
    assert edge_of_range(at_edge, LOG_SPACE, config=strict) == []


def test_a_keyword_wins_over_the_config():
    wide = DiagnosisConfig(overrides={"edge_of_range.outer": 0.2})
    assert edge_of_range(TRIALS, LOG_SPACE, config=wide, outer=0.1) == []


def test_search_findings_pass_the_config_on(tmp_path):
    for name, hp, acc in TRIALS:
        write_run(tmp_path, name, [(0, {"loss": 1.0, "val_acc": acc})], hparams=hp, space=LOG_SPACE)
    ld = LogDir(tmp_path)
    ld.refresh()
    summaries = SummaryCache().summaries(ld.runs())
    assert search_findings(summaries) == []
    (e,) = search_findings(summaries, config=DiagnosisConfig(overrides={"edge_of_range.outer": 0.2}))
    assert e.best_run == "s-t000" and e.side == "low"


@pytest.mark.parametrize("bad, match", [
    ({"outer": 0.5}, r"edge_of_range\.outer .* in \[0\.01, 0\.49\], got 0\.5"),
    ({"min_trials": 0}, r"edge_of_range\.min_trials .* an integer in \[1, 1e\+06\], got 0"),
    ({"min_trend": 1.5}, r"edge_of_range\.min_trend .* in \[0, 1\], got 1\.5"),
    ({"min_trend_trials": 2}, r"edge_of_range\.min_trend_trials .* in \[3, 1e\+06\], got 2"),
])
def test_an_out_of_range_threshold_fails_with_the_knobs_message(bad, match):
    with pytest.raises(ConfigError, match=match):
        edge_of_range(TRIALS, LOG_SPACE, **bad)
    with pytest.raises(ConfigError, match=match):
        search_findings([], **bad)
