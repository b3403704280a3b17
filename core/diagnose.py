"""Diagnosis engine: runs the rules of ``core.rules`` over a run, live or post hoc.

    from core import diagnose, Diagnoser, DiagnosisConfig

    findings = diagnose("runs/my-run")                                  # post hoc
    cfg = DiagnosisConfig(overrides={"dead_relu.max_dead_frac": 0.3}, disable=("initial_loss",))
    dx = Diagnoser(cfg)                                                  # live
    while training:
        run.update(); new = dx.update(run)                               # cost ~ new records

A ``Diagnoser`` remembers, per run, how many rows of ``run.acts``/``run.params``, points of
every scalar and input rows it has seen, and hands only the new ones to each rule. Findings
the training process wrote itself (``run.findings``: the Monitor's ``nan_loss``) are merged:
one finding per (rule, layers), the earliest step kept.

A data-parallel run (files of several ranks) is diagnosed once per rank: the lowest
rank's findings as usual, and every finding that another rank shows and the lowest does
not, with its message starting "On rank 1 (not on rank 0): ..." (a dead unit or a NaN on
one rank only). Each rank's findings the training wrote belong to that rank.

Thresholds are named ``rule.field`` (``dead_relu.max_dead_frac``); ``threshold_table()``
lists them with defaults, ranges and units. Other modules add rules with
``core.rules.register`` (the comparison module's ``edge_of_range`` does).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, fields, replace
from typing import Any, Iterable, Mapping

import numpy as np

from .rules import RULES, UPDATE_RATIO_RELATIVE, Delta, Rule, RuleThresholds, activation_layers, is_bias, \
    loss_explosion_finding, nan_loss_finding, register, weights_by_depth
from .errors import ConfigError
from .schema import SEVERITY_RANK, Finding

log = logging.getLogger(__name__)

__all__ = [
    "nan_loss_finding", "loss_explosion_finding", "DiagnosisConfig", "Diagnoser", "diagnose", "threshold_table",
    "parse_overrides",
    "Rule", "RuleThresholds", "register", "RULES", "rule_ids", "Delta", "activation_layers", "weights_by_depth",
    "is_bias", "UPDATE_RATIO_RELATIVE",
]



def rule_ids() -> list[str]:
    """Ids of the registered rules, in evaluation order."""
    return list(RULES)


def threshold_table() -> list[tuple[str, float, tuple[float, float], str]]:
    """``(rule.field, default, (lo, hi), unit)`` for every threshold of every registered rule."""
    return [(f"{rid}.{name}", default, rng, unit)
            for rid, cls in RULES.items() for name, default, rng, unit in cls.Thresholds.describe()]


def _resolve_name(name: str) -> tuple[str, str]:
    """``rule.field`` (or a field name unique across rules) to ``(rule, field)``."""
    known = [n for n, *_ in threshold_table()]
    if "." in name:
        rid, _, fname = name.partition(".")
        if rid in RULES and fname in {f.name for f in fields(RULES[rid].Thresholds)}:
            return rid, fname
    else:
        hits = [n for n in known if n.split(".", 1)[1] == name]
        if len(hits) == 1:
            return tuple(hits[0].split(".", 1))  # type: ignore[return-value]
        if len(hits) > 1:
            raise ConfigError(f"threshold name {name!r} is ambiguous; write one of {', '.join(hits)}")
    raise ConfigError(f"unknown threshold {name!r}; known thresholds: {', '.join(known)}")


def parse_overrides(items: Iterable[str]) -> dict[str, float]:
    """Parse ``NAME=VALUE`` strings (command line) into ``{"rule.field": value}``.

    Raises:
        ConfigError: for a missing ``=``, an unknown name or a value that is not a number.
    """
    out: dict[str, float] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"threshold {item!r} must be written NAME=VALUE, e.g. dead_relu.max_dead_frac=0.3")
        rid, fname = _resolve_name(name.strip())
        try:
            value = float(raw.strip())
        except ValueError:
            raise ConfigError(f"threshold {rid}.{fname}: {raw.strip()!r} is not a number") from None
        out[f"{rid}.{fname}"] = value
    return out


@dataclass(frozen=True)
class DiagnosisConfig:
    """Which rules run, with which thresholds. Validated at construction.

    Attributes:
        overrides: ``{"rule.field": value}`` changes to the defaults (a field name unique
            across rules may be given alone). See ``threshold_table()`` for every name.
        disable: rule ids not to run.

    Raises:
        ConfigError: for an unknown rule or threshold (the message lists the known ones) or
            a value out of its range (the message gives the range and unit).
    """

    overrides: Mapping[str, float] = field(default_factory=dict)
    disable: Iterable[str] = ()

    def __post_init__(self) -> None:
        disable = frozenset(self.disable)
        unknown = sorted(disable - set(RULES))
        if unknown:
            raise ConfigError(f"unknown rule(s) {unknown}; known rules: {', '.join(RULES)}")
        object.__setattr__(self, "disable", disable)
        per_rule: dict[str, dict[str, Any]] = {}
        for name, value in dict(self.overrides).items():
            rid, fname = _resolve_name(name)
            if fields(RULES[rid].Thresholds) and any(
                    f.name == fname and f.metadata["integer"] for f in fields(RULES[rid].Thresholds)):
                if isinstance(value, float) and value.is_integer():
                    value = int(value)
            per_rule.setdefault(rid, {})[fname] = value
        # Building each rule's thresholds validates every value against its range.
        built = {rid: cls.Thresholds(**per_rule.get(rid, {})) for rid, cls in RULES.items() if rid in per_rule}
        object.__setattr__(self, "_built", built)
        object.__setattr__(self, "overrides", {f"{r}.{k}": v for r, kv in per_rule.items() for k, v in kv.items()})

    def thresholds(self, rule_id: str) -> RuleThresholds:
        """The thresholds rule ``rule_id`` runs with."""
        built = self.__dict__["_built"]
        if rule_id in built:
            return built[rule_id]
        return RULES[rule_id].Thresholds()

    def make_rules(self) -> list[Rule]:
        """Fresh rule objects (with empty state) for the enabled rules, in registry order."""
        rules = [cls(self.thresholds(rid)) for rid, cls in RULES.items() if rid not in self.disable]
        for r in rules:
            r.configure(self)
        return rules


def _better(new: tuple[Finding, int], old: tuple[Finding, int]) -> bool:
    # Earliest step wins; on a tie the engine's own finding (source 0, with value and
    # threshold) beats one the training process wrote (source 1), then severity, then
    # text: independent of the order in which records arrived.
    fa, sa = new
    fb, sb = old
    return (fa.step, sa, SEVERITY_RANK.get(fa.severity, 9), fa.message) < \
        (fb.step, sb, SEVERITY_RANK.get(fb.severity, 9), fb.message)


class Diagnoser:
    """Evaluates the rules on one run incrementally.

    Args:
        config: thresholds and disabled rules (defaults when None).

    Attributes:
        rows_examined: records handed to the rules so far (new acts rows + params rows +
            scalar points + input rows); grows with the new records of each call only.
    """

    def __init__(self, config: DiagnosisConfig | None = None, *, per_rank: bool = True) -> None:
        self.config = config if config is not None else DiagnosisConfig()
        self.per_rank = per_rank
        # rank -> (a Run of the same folder keeping that rank's statistics, its Diagnoser)
        self._ranks: dict[int, tuple[Any, "Diagnoser"]] = {}
        self.rows_examined = 0
        self.calls = 0
        self._path: str | None = None
        self._reset()

    def _reset(self) -> None:
        self.rules = self.config.make_rules()
        self._suppress = {r.id: set(type(r).suppressed_by) for r in self.rules}
        self._scalar_pos: dict[str, int] = {}
        self._acts_pos = 0
        self._params_pos = 0
        self._input_pos = 0
        self._findings_pos = 0
        self._found: dict[tuple[str, tuple[str, ...]], tuple[Finding, int]] = {}
        self._table: Any = None
        self._ranks = {}
        self._base_rank = 0

    def update(self, run: Any) -> list[Finding]:
        """Evaluate the records ``run`` gained since the previous call (call ``run.update()`` first).

        Args:
            run: a ``core.reader.Run``; always the same run for one Diagnoser.

        Returns:
            Findings that are new or moved to an earlier step in this call.

        Raises:
            ValueError: when given a different run than before.
        """
        path = os.fspath(run.path)
        if self._path is None:
            self._path = path
        elif self._path != path:
            raise ValueError(f"this Diagnoser follows {self._path}; make another one for {path}")
        self.calls += 1
        rank = run.stats_rank or 0
        self._base_rank = rank
        names = run.scalar_names(rank)
        # A run that was rewritten (the reader started over) shrinks: start over too.
        # (The reader makes new tables when it does; the old one is kept referenced so its id stays unique.)
        if self._table is not None and run.acts is not self._table:
            self._reset()
        self._table = run.acts
        scalars: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        n_new = 0
        for name in names:
            pos = self._scalar_pos.get(name, 0)
            s = run.scalar_since(name, pos, rank)
            if len(s):
                scalars[name] = (s.steps, s.values)
                self._scalar_pos[name] = pos + len(s)
                n_new += len(s)
        inp = run.input_since(self._input_pos)
        n_inp = len(inp.get("step", ()))
        acts_rows = range(self._acts_pos, len(run.acts))
        params_rows = range(self._params_pos, len(run.params))
        self._acts_pos, self._params_pos = acts_rows.stop, params_rows.stop
        self._input_pos += n_inp
        n_new += len(acts_rows) + len(params_rows) + n_inp
        self.rows_examined += n_new
        delta = Delta(run, scalars, acts_rows, params_rows, inp, finished=run.meta.status == "finished")
        changed: list[Finding] = []
        for rule in self.rules:
            try:
                for f in rule.update(delta):
                    if self._add(f, 0):
                        changed.append(f)
            except Exception:  # one broken rule must not hide the others' findings
                log.exception("diagnosis rule %s failed on run %s", rule.id, run.name)
        written = run.findings[self._findings_pos:]
        ranks = getattr(run, "finding_ranks", None)
        written_ranks = ranks[self._findings_pos:] if ranks is not None else [rank] * len(written)
        self._findings_pos = len(run.findings)
        for f, r in zip(written, written_ranks):
            if r == rank and f.rule not in self.config.disable and self._add(f, 1):
                changed.append(f)
        before = {(f.rule, f.layers, f.step) for f in self._other_rank_findings(set())}
        self._update_ranks(run, rank)
        own = self._own_findings()
        ids = set(map(id, own))
        out = [f for f in changed if id(f) in ids]
        out.extend(f for f in self._other_rank_findings({(f.rule, f.layers) for f in own})
                   if (f.rule, f.layers, f.step) not in before)
        return out

    def _update_ranks(self, run: Any, base: int) -> None:
        """Diagnose every rank other than ``base`` from its own statistics (new records only)."""
        if not self.per_rank:
            return
        from .reader import Run

        for r in run.ranks():
            if r == base:
                continue
            entry = self._ranks.get(r)
            if entry is None:
                entry = self._ranks[r] = (Run(run.path, max_hist_rows=2, stats_rank=r),
                                          Diagnoser(self.config, per_rank=False))
            other, dx = entry
            try:
                other.update()
                dx.update(other)
            except Exception:  # one rank's diagnosis must not hide the others'
                log.exception("diagnosis of rank %d of run %s failed", r, run.name)

    def _other_rank_findings(self, base_keys: set[tuple[str, tuple[str, ...]]]) -> list[Finding]:
        """Findings that other ranks show and the base rank does not, one per (rule, layers)."""
        seen: dict[tuple[str, tuple[str, ...]], tuple[Finding, list[int]]] = {}
        if not self._ranks:
            return []
        for r in sorted(self._ranks):
            for f in self._ranks[r][1].findings():
                key = (f.rule, tuple(f.layers))
                if key in base_keys:
                    continue
                old = seen.get(key)
                if old is None:
                    seen[key] = (f, [r])
                else:
                    old[1].append(r)
                    if f.step < old[0].step:
                        seen[key] = (f, old[1])
        base = self._base_rank
        out = []
        for f, rs in seen.values():
            who = f"rank {rs[0]}" if len(rs) == 1 else "ranks " + ", ".join(map(str, rs))
            out.append(replace(f, message=f"On {who} (not on rank {base}): {f.message}"))
        return out

    def _add(self, f: Finding, source: int) -> bool:
        key = (f.rule, tuple(f.layers))
        old = self._found.get(key)
        if old is None or _better((f, source), old):
            self._found[key] = (f, source)
            return True
        return False

    def findings(self) -> list[Finding]:
        """All findings so far, oldest step first.

        A finding is left out when a rule that makes it moot (``Rule.suppressed_by``) fired
        at an earlier or the same step: a diverged run is not also reported as underfitting.
        """
        own = self._own_findings()
        out = own + self._other_rank_findings({(f.rule, tuple(f.layers)) for f in own})
        return sorted(out, key=lambda f: (f.step, SEVERITY_RANK.get(f.severity, 9), f.rule, f.layers))

    def _own_findings(self) -> list[Finding]:
        """The base rank's findings, less those another finding makes moot."""
        first: dict[str, int] = {}  # rule and "rule:severity" -> its first step
        for f, _ in self._found.values():
            for key in (f.rule, f"{f.rule}:{f.severity}"):
                first[key] = min(first.get(key, f.step), f.step)
        out = []
        for f, _ in self._found.values():
            sup = self._suppress.get(f.rule, ())
            if any(r in first and first[r] <= f.step for r in sup):
                continue
            out.append(f)
        return out


def diagnose(run_or_path: Any, config: DiagnosisConfig | None = None) -> list[Finding]:
    """Every finding of a run, post hoc.

    Args:
        run_or_path: a run folder path or a ``core.reader.Run`` (updated here).
        config: thresholds and disabled rules (defaults when None).

    Returns:
        The findings, oldest step first.

    Raises:
        RunNotFoundError: when the path is not a folder.
    """
    from .reader import Run

    run = run_or_path if isinstance(run_or_path, Run) else Run(run_or_path)
    run.update()
    dx = Diagnoser(config)
    dx.update(run)
    return dx.findings()
