"""The Optuna side of a search: storage, the seeded random sampler, the study and its trial slots.

Babysitter does not schedule trials itself. A search is an Optuna study; any number of
processes (on any number of machines) that run the same script against the same storage
are its workers. Three facts make "N workers, every trial exactly once" hold:

* **Slots.** The process that creates the study (creation is atomic in every Optuna
  storage: one ``create_study`` wins, the others get ``DuplicatedStudyError``) enqueues
  ``n_trials`` empty trials (``Study.enqueue_trial({})``, state ``WAITING``) and then sets
  the study's ``babysitter`` user attribute. Every worker claims a waiting trial with
  ``BaseStorage.set_trial_state_values(RUNNING)``, which succeeds for one worker only (what
  ``Study.ask`` does for enqueued trials), and stops when none is left. ``Study.optimize``
  with ``n_trials`` counts per process, and ``MaxTrialsCallback`` overshoots by up to one
  trial per worker; slots give exactly ``n_trials``.
* **Draws by trial number.** ``optuna.samplers.RandomSampler(seed)`` draws from one
  stream per process: N workers given the same seed would draw the same values.
  ``SeededRandomSampler`` draws all ``n_trials`` sets of values up front from the seed
  (``sample_space(space, n_trials, seed)``, the same table in every worker) and gives trial
  ``k`` row ``k``, so workers never repeat each other, a re-run draws the same trials, and
  a trial that crashes changes nobody else's values.
* **One description.** The ``babysitter`` attribute holds the space, ``n_trials``, the seed,
  the metric and the direction; a worker started with different ones is refused
  (``ConfigError``) instead of silently adding other trials to the study.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import zlib
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from core.errors import ConfigError

from ._space import Sampler, from_distribution, sample_space

log = logging.getLogger(__name__)

STUDY_ATTR = "babysitter"  # the study's user attribute that describes the search
# A trial's system attribute naming the worker that claimed it, so that a worker waiting at the
# end of a search can tell a trial whose worker died before it opened its run folder.
WORKER_ATTR = "babysitter_worker"
READY_TIMEOUT = 120.0  # seconds a joining worker waits for the creator to enqueue the trials


def _optuna():
    try:
        import optuna
    except ImportError:  # pragma: no cover - the test set-up installs it
        raise ConfigError("random_search runs on Optuna, which is not installed: "
                          "pip install 'babysitter[search]' (or pip install optuna)") from None
    return optuna


def storage_label(url: str) -> str:
    """``url`` without its password (a database URL lands in every trial's ``meta.json``)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, f"{parts.username}:***@{host}", parts.path, parts.query, parts.fragment))


def open_storage(storage: Any) -> tuple[Any, str | None]:
    """``(Optuna storage, label for meta.json)`` for what ``random_search(storage=...)`` accepts.

    * ``None``: a study in this process only (``InMemoryStorage``);
    * a string with ``://`` (``sqlite:///search.db``, ``postgresql://user:pw@host/db``): an
      RDB storage (``optuna.storages.RDBStorage``);
    * any other string or path: a journal file (``JournalStorage(JournalFileBackend(path))``),
      the storage for a shared filesystem (NFS) without a database server;
    * an ``optuna.storages.BaseStorage`` (Redis journal, gRPC proxy, ...): used as it is.

    Raises:
        ConfigError: for anything else, or a journal file whose folder does not exist.
    """
    optuna = _optuna()
    if storage is None:
        return optuna.storages.InMemoryStorage(), None
    if isinstance(storage, optuna.storages.BaseStorage):
        return storage, type(storage).__name__
    if isinstance(storage, (str, os.PathLike)):
        text = os.fspath(storage)
        if "://" in text:
            return optuna.storages.get_storage(text), storage_label(text)
        path = Path(text).resolve()
        if not path.parent.is_dir():
            raise ConfigError(f"journal storage {text!r}: folder {path.parent} does not exist")
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(str(path))), str(path)
    raise ConfigError(f"storage must be None, a database URL, a journal file path or an Optuna storage, "
                      f"got {type(storage).__name__}")


def trial_seed(seed: int, number: int) -> int:
    """The seed handed to trial ``number``'s own randomness (initialisation, batches)."""
    return int(np.random.SeedSequence(seed, spawn_key=(number,)).generate_state(1)[0])


def make_sampler(seed: int, space: Mapping[str, Sampler], n_trials: int) -> Any:
    """A ``SeededRandomSampler`` for ``space`` (defined on first use: optuna is imported late)."""
    global SeededRandomSampler
    if SeededRandomSampler is None:
        optuna = _optuna()

        class _Seeded(optuna.samplers.BaseSampler):
            """Random sampling in which trial ``k`` gets row ``k`` of the draws made up front from the seed."""

            def __init__(self, seed: int, space: Mapping[str, Sampler], n_trials: int) -> None:
                self.seed = int(seed)
                self.table = sample_space(space, n_trials, seed)

            def infer_relative_search_space(self, study, trial):  # noqa: D102 - independent sampling only
                return {}

            def sample_relative(self, study, trial, search_space):  # noqa: D102
                return {}

            def sample_independent(self, study, trial, param_name, param_distribution):  # noqa: D102
                if trial.number < len(self.table) and param_name in self.table[trial.number]:
                    return self.table[trial.number][param_name]
                # Outside the table (a parameter suggested by the training code itself): from (seed, k, name).
                key = zlib.crc32(param_name.encode("utf-8"))
                rng = np.random.default_rng([self.seed & 0xFFFFFFFF, 1 + trial.number, key])
                return from_distribution(param_distribution).sample(rng)

        _Seeded.__name__ = _Seeded.__qualname__ = "SeededRandomSampler"
        SeededRandomSampler = _Seeded
    return SeededRandomSampler(seed, space, n_trials)


SeededRandomSampler: Any = None


def describe(space_json: Mapping[str, Any], n_trials: int, seed: int, metric: str, mode: str) -> dict[str, Any]:
    """The study's ``babysitter`` attribute: what every worker must agree on."""
    return {"version": 1, "space": dict(space_json), "n_trials": n_trials, "seed": seed, "metric": metric,
            "mode": mode}


def study_exists(storage: Any, name: str) -> bool:
    optuna = _optuna()
    try:
        storage.get_study_id_from_name(name)
        return True
    except KeyError:
        return False
    except optuna.exceptions.OptunaError:  # pragma: no cover - storage-specific "not found"
        return False


def create_or_join(storage: Any, name: str, desc: dict[str, Any], *, sampler: Any, pruner: Any,
                   direction: str) -> tuple[Any, bool]:
    """``(study, created)``: create the study with its slots, or join the one that exists.

    Raises:
        ConfigError: when the existing study describes another search, or its creator never
            finished enqueueing the trials.
    """
    optuna = _optuna()
    try:
        study = optuna.create_study(storage=storage, study_name=name, sampler=sampler, pruner=pruner,
                                    direction=direction)
        created = True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(storage=storage, study_name=name, sampler=sampler, pruner=pruner)
        created = False
    if created:
        for _ in range(desc["n_trials"]):
            study.enqueue_trial({})
        study.set_user_attr(STUDY_ATTR, desc)
        log.info("study %r created with %d trials", name, desc["n_trials"])
        return study, True
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        have = study.user_attrs.get(STUDY_ATTR)
        if have is not None:
            break
        if time.monotonic() > deadline:
            raise ConfigError(f"study {name!r} exists but its trials were never enqueued (its creator stopped "
                              f"within {READY_TIMEOUT:.0f} s of creating it); delete it or use another name")
        time.sleep(0.2)
    diff = [k for k in ("space", "n_trials", "seed", "metric", "mode") if have.get(k) != desc.get(k)]
    if diff:
        raise ConfigError(f"study {name!r} exists with another {', '.join(diff)} "
                          f"({', '.join(f'{k}={have.get(k)!r}' for k in diff)}); the same script and options "
                          "join a study, a different search needs another name")
    if study.direction.name.lower() != direction:
        raise ConfigError(f"study {name!r} is set to {study.direction.name.lower()}, not {direction}")
    return study, False


def claim(study: Any, storage: Any) -> int | None:
    """Take a waiting trial (this worker only) and return its id; None when none is left."""
    optuna = _optuna()
    waiting = optuna.trial.TrialState.WAITING
    study_id = storage.get_study_id_from_name(study.study_name)
    for t in study.get_trials(deepcopy=False, states=(waiting,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        try:
            if storage.set_trial_state_values(trial_id, state=optuna.trial.TrialState.RUNNING):
                storage.set_trial_system_attr(trial_id, WORKER_ATTR,
                                              {"host": socket.gethostname(), "pid": os.getpid()})
                return trial_id
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return None


def worker_died(trial: Any) -> bool:
    """True when the worker that claimed ``trial`` ran on this host and is gone.

    A worker on another host is never judged here: its trial is judged by its run folder's
    heartbeat once the run is open.
    """
    from core.reader import pid_alive

    w = trial.system_attrs.get(WORKER_ATTR)
    if not isinstance(w, dict) or w.get("host") != socket.gethostname():
        return False
    pid = w.get("pid")
    return isinstance(pid, int) and not isinstance(pid, bool) and pid != os.getpid() and pid_alive(pid) is False


def running_trials(study: Any) -> list[Any]:
    optuna = _optuna()
    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
