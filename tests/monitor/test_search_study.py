"""Searches as Optuna studies: several worker processes on one storage, pruning by the diagnoses, studies in compare.

The main test starts three worker processes on one journal file running the same script
(``_search_worker.py``: a numpy MLP on spiral data, a learning rate from 0.01 to 1000) and
checks what a user relies on: the requested number of trials in total, each run exactly
once by one worker into its own run folder; the diverging trials stopped by the diagnosis
engine a few logged steps after their loss blew up; the study's best trial is the best run
of ``babysitter compare``; ``edge_of_range`` judges each study on its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest

from babysitter.cli import main
from core.edge import edge_of_range
from core.errors import ConfigError
from core.reader import Run
from core.logdir import LogDir
from monitor.search import LogUniform, Uniform, load_search, random_search, refine
from monitor.search._study import storage_label

from tests.monitor import _search_worker as worker

ROOT = Path(__file__).resolve().parents[2]
N_TRIALS = 12
DIVERGED = ("nan_loss", "loss_explosion", "nonfinite_values")  # the error findings of a diverging run


def _journal(path: Path):
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def _ua(t) -> dict:
    """What the search recorded on the Optuna trial (one user attribute)."""
    return t.user_attrs["babysitter"]


def _compare_json(logdir: Path, capsys) -> dict:
    capsys.readouterr()
    assert main(["compare", str(logdir), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _edge_train(trial):
    """val_acc rises with x: the best trial is the largest x drawn, at the top of [0, 1]."""
    with trial.monitor(heartbeat=0, every=1) as mon:
        for step in range(3):
            mon.log(step, loss=1.0 - 0.1 * step, val_acc=trial.hparams["x"] * (step + 1) / 3)


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """Three workers of one study, started together; then a second study in the same log directory."""
    tmp = tmp_path_factory.mktemp("shared")
    logdir, journal = tmp / "runs", tmp / "search.journal"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([sys.executable, str(Path(worker.__file__)), "--logdir", str(logdir), "--storage",
                               str(journal), "--trials", str(N_TRIALS), "--seed", "3"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(3)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        outs.append(json.loads(out.strip().splitlines()[-1]))
    # A second study on the same storage and log directory, in this process.
    edge = random_search(_edge_train, {"x": Uniform(0.0, 1.0)}, 10, logdir=logdir, name="edge", seed=0,
                         storage=journal)
    return logdir, journal, outs, edge


def test_three_workers_run_every_trial_exactly_once(shared):
    logdir, journal, outs, _ = shared
    ran = [n for o in outs for n in o["ran"]]
    assert sorted(ran) == list(range(N_TRIALS))  # all of them, none twice
    assert all(o["ran"] for o in outs)  # every worker took part
    assert all(o["trials"] == N_TRIALS and o["best"] == outs[0]["best"] for o in outs)  # each saw the whole study
    study = optuna.load_study(study_name="coarse", storage=_journal(journal))
    assert sorted(t.number for t in study.trials) == list(range(N_TRIALS))
    assert {t.state.name for t in study.trials} <= {"COMPLETE", "PRUNED"}
    names = [n for n in sorted(os.listdir(logdir)) if n.startswith("coarse")]
    assert names == [f"coarse-t{i:03d}" for i in range(N_TRIALS)]
    for t in study.trials:
        run = Run(logdir / _ua(t)["run"])
        run.update()
        st = run.meta.study
        assert (st["name"], st["trial"], st["storage"]) == ("coarse", t.number, str(journal))
        assert st["state"] == t.state.name.lower() and run.meta.hparams["lr"] == t.params["lr"]
        assert run.meta.status == "finished" and run.all_problems() == []


def test_diverging_trials_are_pruned_a_few_logged_steps_after_the_loss_blew_up(shared):
    logdir, journal, _, _ = shared
    study = optuna.load_study(study_name="coarse", storage=_journal(journal))
    pruned = [t for t in study.trials if t.state.name == "PRUNED"]
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(pruned) >= 2 and len(complete) >= 4
    assert min(t.params["lr"] for t in pruned) > max(t.params["lr"] for t in complete if t.value > 0.5)
    for t in complete:
        assert _ua(t)["steps"] == worker.STEPS - 1
    for t in pruned:
        finding = _ua(t)["pruned_by"]
        assert finding["rule"] in DIVERGED and finding["severity"] == "error"
        run = Run(logdir / _ua(t)["run"])
        run.update()
        loss = run.scalar("loss")
        # The first step whose loss is NaN/Inf or above 10x the first (the blow-up the rule reports).
        bad = ~np.isfinite(loss.values) | (np.nan_to_num(loss.values, nan=np.inf) > 10 * loss.values[0])
        first_bad = int(loss.steps[np.argmax(bad)])
        steps = _ua(t)["steps"]
        assert run.last_step == steps == run.meta.study["steps"]
        assert first_bad <= steps <= first_bad + 2 * worker.EVERY  # within two logged steps
        assert steps < worker.STEPS / 4  # far fewer than a full trial
        assert run.meta.study["pruned_by"]["rule"] == finding["rule"]


def test_the_studys_best_trial_is_the_best_run_of_babysitter_compare(shared, capsys):
    logdir, journal, _, _ = shared
    study = optuna.load_study(study_name="coarse", storage=_journal(journal))
    out = _compare_json(logdir, capsys)
    studies = {s["name"]: s for s in out["studies"]}
    assert set(studies) == {"coarse", "edge"}
    coarse = studies["coarse"]
    assert coarse["best_run"] == _ua(study.best_trial)["run"]
    assert coarse["best_value"] == pytest.approx(study.best_value)
    assert coarse["states"]["pruned"] == sum(t.state.name == "PRUNED" for t in study.trials)
    assert coarse["trials"] == N_TRIALS
    pruned_runs = {p["run"] for p in coarse["pruned"]}
    assert pruned_runs == {_ua(t)["run"] for t in study.trials if t.state.name == "PRUNED"}
    assert all(p["finding"]["rule"] in DIVERGED and p["steps"] is not None
               for p in coarse["pruned"])
    # The table, sorted by best validation accuracy, starts with the same run, and shows pruned trials as such.
    first = next(r for r in out["runs"] if r["study"] and r["study"]["name"] == "coarse")
    assert first["run"] == coarse["best_run"]
    status = {r["run"]: r["status"] for r in out["runs"]}
    assert {n for n, s in status.items() if s == "pruned"} == pruned_runs
    # The text output groups the runs by study and says what pruned each trial.
    assert main(["compare", str(logdir)]) == 0
    text = capsys.readouterr().out
    assert f"study coarse on {journal}: {N_TRIALS} trials" in text and "study edge" in text
    for run in pruned_runs:
        assert f"pruned {run} after step" in text


def test_edge_of_range_judges_each_study_on_its_own(shared, capsys):
    logdir, journal, _, edge = shared
    found = {(e["search"], e["param"]): e for e in _compare_json(logdir, capsys)["search_findings"]}
    # The second study's best x is the largest drawn: at the top edge of [0, 1].
    assert edge.best.hparams["x"] > 0.9
    assert found[("edge", "x")]["side"] == "high" and found[("edge", "x")]["best_run"] == edge.best.name
    # The coarse study is judged on its own complete trials, by the objective Optuna holds.
    study = optuna.load_study(study_name="coarse", storage=_journal(journal))
    trials = [(_ua(t)["run"], t.params, t.value if t.state.name == "COMPLETE" else None) for t in study.trials]
    expected = edge_of_range(trials, {"lr": {"low": 1e-2, "high": 1e3, "log": True}})
    assert [found[("coarse", "lr")]["best_run"]] if ("coarse", "lr") in found else [] == \
        [e.best_run for e in expected]
    assert set(found) <= {("edge", "x"), ("coarse", "lr")}


def test_load_search_from_storage_or_folders_and_refine(shared):
    logdir, journal, outs, _ = shared
    a = load_search("coarse", storage=journal, logdir=logdir)
    b = load_search("coarse", logdir=logdir)
    assert [t.name for t in a.trials] == [t.name for t in b.trials] == [f"coarse-t{i:03d}" for i in range(N_TRIALS)]
    assert [t.status for t in a.trials] == [t.status for t in b.trials]
    assert [t.value for t in a.trials] == pytest.approx([t.value for t in b.trials])
    assert a.best.name == b.best.name == outs[0]["best"]
    assert refine(a, top_k=3) == refine(b, top_k=3)
    with pytest.raises(ConfigError, match="no study 'nope'"):
        load_search("nope", storage=journal)


def test_a_worker_with_another_space_is_refused(shared):
    logdir, journal, _, _ = shared
    with pytest.raises(ConfigError, match="exists with another space"):
        random_search(worker.train, {"lr": LogUniform(1e-3, 1.0)}, N_TRIALS, logdir=logdir, name="coarse", seed=3,
                      storage=journal)


def test_without_pruning_the_same_trial_trains_to_the_end(tmp_path):
    space = {"lr": LogUniform(300.0, 1000.0)}  # diverges at once
    on = random_search(worker.train, space, 1, logdir=tmp_path, name="on", seed=0)
    off = random_search(worker.train, space, 1, logdir=tmp_path, name="off", seed=0, prune=False)
    assert on.trials[0].hparams == off.trials[0].hparams
    assert on.trials[0].status == "pruned" and on.trials[0].steps < worker.STEPS / 4
    assert off.trials[0].status == "finished" and off.trials[0].value is not None  # val_acc of a NaN net: chance
    off_run = Run(tmp_path / off.trials[0].name)
    off_run.update()
    assert off_run.last_step == worker.STEPS - 1
    assert off_run.meta.study["state"] == "complete"


def test_an_optuna_pruner_is_fed_with_the_metric(tmp_path):
    def train(trial):
        with trial.monitor(heartbeat=0) as mon:
            for step in range(10):
                mon.log(step, loss=1.0, val_acc=trial.hparams["x"])

    res = random_search(train, {"x": Uniform(0.0, 1.0)}, 8, logdir=tmp_path, seed=1,
                        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2))
    pruned = [t for t in res.trials if t.status == "pruned"]
    assert pruned and all(t.pruned_by.rule == "optuna_pruner" and t.steps == 2 for t in pruned)
    assert res.best.hparams["x"] == max(t.hparams["x"] for t in res.trials if t.status == "finished")


def test_sqlite_storage_and_bad_options(tmp_path):
    url = f"sqlite:///{tmp_path / 'search.db'}"
    res = random_search(_edge_train, {"x": Uniform(0.0, 1.0)}, 3, logdir=tmp_path / "runs", name="s", storage=url)
    assert [t.status for t in res.trials] == ["finished"] * 3
    again = random_search(_edge_train, {"x": Uniform(0.0, 1.0)}, 3, logdir=tmp_path / "runs", name="s",
                          storage=url)
    assert [t.name for t in again.trials] == [t.name for t in res.trials]  # the study was done: nothing re-run
    assert storage_label("postgresql://bob:secret@db:5432/s") == "postgresql://bob:***@db:5432/s"
    with pytest.raises(ConfigError, match="unknown rule or severity"):
        random_search(_edge_train, {"x": Uniform(0.0, 1.0)}, 2, logdir=tmp_path, prune=["nan_los"])
    with pytest.raises(ConfigError, match="does not exist"):
        random_search(_edge_train, {"x": Uniform(0.0, 1.0)}, 2, logdir=tmp_path, storage=tmp_path / "no" / "j.log")
    with pytest.raises(ConfigError, match="storage has no study 's': pick another"):
        random_search(_edge_train, {"x": Uniform(0.0, 1.0)}, 2, logdir=tmp_path / "runs", name="s",
                      storage=tmp_path / "other.journal")


def test_a_worker_that_dies_before_opening_its_run_does_not_leave_the_others_waiting(tmp_path):
    logdir, journal = tmp_path / "runs", tmp_path / "search.journal"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, str(Path(worker.__file__)), "--logdir", str(logdir), "--storage", str(journal),
           "--trials", "3", "--name", "dies"]
    dead = subprocess.run([*cmd, "--die"], capture_output=True, text=True, env=env, timeout=120)
    assert dead.returncode == 3, dead.stderr
    live = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert live.returncode == 0, live.stderr
    assert "its worker is gone; marked failed" in live.stderr
    study = optuna.load_study(study_name="dies", storage=_journal(journal))
    states = sorted(t.state.name for t in study.trials)
    assert states.count("FAIL") == 1 and "RUNNING" not in states and len(states) == 3, states
