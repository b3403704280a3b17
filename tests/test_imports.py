"""The import rules of the packages, checked statically over every module.

- ``core`` is framework-free: it imports none of ``monitor``, ``dashboard``, ``babysitter``,
  and no deep-learning or web framework.
- ``monitor`` (what training code imports) and ``dashboard`` never import each other, nor
  the command line on top of them.
- Only ``monitor``'s adapter modules (``ADAPTERS``) talk to torch and the training
  frameworks; ``import monitor`` loads none of them (nor the reader or the web stack): the
  adapters load on use.
- The adapters reach the Monitor only through its public members (the adapter interface of
  ``monitor/_adapter.py``): no private member of a Monitor or of its writer.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FRAMEWORKS = {"torch", "lightning", "pytorch_lightning", "transformers", "optuna", "tensorflow", "jax"}
WEB = {"dash", "plotly", "flask", "werkzeug", "watchdog"}
FORBIDDEN = {
    "core": {"monitor", "dashboard", "babysitter", "run_dashboard"} | FRAMEWORKS | WEB,
    "monitor": {"dashboard", "babysitter", "run_dashboard"} | WEB,
    "dashboard": {"monitor", "babysitter", "run_dashboard"} | FRAMEWORKS,
    "babysitter": FRAMEWORKS - {"optuna"},
}


def _imports(path: Path) -> list[tuple[int, str]]:
    """``(line, top-level package)`` of every import in ``path``, at any depth (lazy ones too)."""
    tree = ast.parse(path.read_text(), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name.split(".")[0]) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module.split(".")[0]))
    return out


# The only modules that import a training framework: the adapters, loaded on use.
ADAPTERS = {
    "torch": {"monitor/_torch.py", "monitor/_torch_stats.py", "monitor/_torch_param_stats.py",
              "monitor/_torch_forward.py", "monitor/_torch_optim.py",
              "monitor/lightning.py", "monitor/hf.py"},
    "lightning": {"monitor/lightning.py"}, "pytorch_lightning": {"monitor/lightning.py"},
    "transformers": {"monitor/hf.py"},
    "optuna": {"monitor/search/"},  # the search package runs on Optuna studies
}


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_module_imports_across_the_layers(package):
    assert _modules(package), package
    bad = [f"{p.relative_to(ROOT)}:{line} imports {name}"
           for p in _modules(package) for line, name in _imports(p) if name in FORBIDDEN[package]]
    assert not bad, "\n".join(bad)


def test_frameworks_are_imported_only_by_their_adapters():
    bad = []
    for package in ("core", "monitor", "dashboard", "babysitter"):
        for p in _modules(package):
            rel = p.relative_to(ROOT).as_posix()
            bad += [f"{rel}:{line} imports {name}" for line, name in _imports(p)
                    if name in FRAMEWORKS and not any(rel == a or a.endswith("/") and rel.startswith(a)
                                                      for a in ADAPTERS.get(name, ()))]
    assert not bad, "\n".join(bad)


def test_import_monitor_loads_no_framework_reader_or_web_stack():
    code = ("import sys, monitor\n"
            "print(' '.join(sorted({m.split('.')[0] for m in sys.modules} & set(sys.argv[1:]))))\n"
            "print(' '.join(m for m in ('core.reader', 'core.compare') if m in sys.modules))")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    res = subprocess.run([sys.executable, "-c", code, *sorted(FRAMEWORKS | WEB | {"pandas", "dashboard"})],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split("\n")[:2] == ["", ""], res.stdout


_MONITOR_NAMES = {"mon", "monitor", "self.mon", "self.monitor"}


def _private_reaches(path: Path) -> list[str]:
    """``line: expression`` of every private member of a Monitor, or of a writer, that ``path`` reaches."""
    tree = ast.parse(path.read_text(), str(path))
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            base, attr = ast.unparse(node.value), node.attr
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "setattr", "hasattr")
              and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)):
            base, attr = ast.unparse(node.args[0]), node.args[1].value
        else:
            continue
        if not attr.startswith("_") or attr.startswith("__"):
            continue
        if (base in _MONITOR_NAMES or base.endswith((".mon", ".monitor")) or attr in ("_writer", "_fail") and base != "self"
                or "_writer" in base):
            bad.append(f"{node.lineno}: {base}.{attr}")
    return bad


def test_adapters_reach_the_monitor_only_through_its_public_interface():
    mods = sorted({*(ROOT / "monitor").glob("_torch*.py"), ROOT / "monitor" / "lightning.py", ROOT / "monitor" / "hf.py"})
    assert len(mods) >= 6
    bad = [f"{p.relative_to(ROOT)}:{hit}" for p in mods for hit in _private_reaches(p)]
    assert not bad, "\n".join(bad)


def test_the_private_reach_check_sees_what_it_forbids(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("self.mon._log_values(1, {})\nmon._scalar_filters.append(f)\n"
                     "getattr(self.monitor, '_watches', [])\nw._writer.fail('x', e)\nwriter._fail('x', e)\n"
                     "self._fail('ok', e)\nself.scaler._scale\nmodel._orig_mod\n")
    assert sorted(int(h.split(":")[0]) for h in _private_reaches(probe)) == [1, 2, 3, 4, 5]
