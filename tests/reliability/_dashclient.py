"""Drives the dashboard the way its page does, without a browser.

A browser loads ``/_dash-layout`` and ``/_dash-dependencies``, then POSTs to
``/_dash-update-component`` for each callback whose inputs are on the page: first the
router (the URL), then the live tick, then every page callback with the values the
components hold. ``PageDriver`` does the same with any ``post(path, json) -> (status,
json|None)`` and ``get(path) -> json``: Flask's test client for fast fuzzing, urllib
for the real server under load.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any, Callable

Post = Callable[[str, dict], "tuple[int, Any]"]
Get = Callable[[str], Any]


def flask_transport(app: Any) -> tuple[Get, Post]:
    client = app.server.test_client()

    def get(path: str) -> Any:
        r = client.get(path)
        assert r.status_code == 200, (path, r.status_code)
        return r.get_json()

    def post(path: str, body: dict) -> tuple[int, Any]:
        r = client.post(path, json=body)
        return r.status_code, (r.get_json(silent=True) if r.status_code == 200 else r.get_data(as_text=True))

    return get, post


def http_transport(base: str, timeout: float = 30.0) -> tuple[Get, Post]:
    def get(path: str) -> Any:
        with urllib.request.urlopen(base + path, timeout=timeout) as r:
            return json.loads(r.read())

    def post(path: str, body: dict) -> tuple[int, Any]:
        req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                data = r.read()
                return r.status, (json.loads(data) if data else None)
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode(errors="replace")

    return get, post


def parse_outputs(output: str) -> list[dict[str, str]]:
    """``"a.b"`` or ``"..a.b...c.d.."`` (with optional ``@hash`` suffixes) into ``[{id, property}]``."""
    parts = output[2:-2].split("...") if output.startswith("..") else [output]
    out = []
    for p in parts:
        cid, _, prop = p.rpartition(".")
        out.append({"id": cid, "property": prop.split("@")[0]})
    return out


def walk(node: Any, found: dict[str, dict]) -> None:
    """Collect ``id -> props`` of every component with a string id in a layout tree."""
    if isinstance(node, list):
        for x in node:
            walk(x, found)
    elif isinstance(node, dict):
        props = node.get("props")
        if isinstance(props, dict) and "type" in node:
            if isinstance(props.get("id"), str):
                found[props["id"]] = props
            for v in props.values():
                walk(v, found)


class PageDriver:
    """One browser tab's worth of callbacks."""

    def __init__(self, get: Get, post: Post) -> None:
        self.get, self.post = get, post
        self.deps = [d for d in get("/_dash-dependencies") if not d.get("clientside_function")]
        self.shell: dict[str, dict] = {}
        walk(get("/_dash-layout"), self.shell)
        self.calls = 0
        self.statuses: list[int] = []
        self.errors: list[str] = []

    def _call(self, dep: dict, comps: dict[str, dict], changed: str) -> Any:
        def val(x: dict) -> Any:
            if x["id"].startswith("{"):
                return []  # pattern-matching ALL: no matching component
            return comps.get(x["id"], {}).get(x["property"])

        outs = parse_outputs(dep["output"])
        body = {
            "output": dep["output"],
            "outputs": outs if dep["output"].startswith("..") else outs[0],
            "inputs": [dict(x, value=val(x)) for x in dep["inputs"]],
            "state": [dict(x, value=val(x)) for x in dep["state"]],
            "changedPropIds": [changed],
        }
        status, data = self.post("/_dash-update-component", body)
        self.calls += 1
        self.statuses.append(status)
        if status not in (200, 204):
            self.errors.append(f"{dep['output'][:60]}: HTTP {status}: {str(data)[-300:]}")
            return None
        if status == 200 and isinstance(data, dict):
            for cid, props in (data.get("response") or {}).items():
                comps.setdefault(cid, {}).update(props)
                for v in props.values():
                    walk(v, comps)
        return data

    def _dep(self, output_prefix: str) -> dict:
        # A callback of several outputs is named "..a.b...c.d..": matched without the leading dots.
        return next(d for d in self.deps if d["output"].lstrip(".").startswith(output_prefix.lstrip(".")))

    def tick(self, comps: dict[str, dict]) -> Any:
        """The live-refresh callback (what the page's Interval fires every second)."""
        comps["app-tick"]["n_intervals"] = (comps["app-tick"].get("n_intervals") or 0) + 1
        return self._call(self._dep("app-version.data"), comps, "app-tick.n_intervals")

    def visit(self, pathname: str, search: str = "") -> dict[str, dict]:
        """Load ``pathname``: route, tick, then every callback whose inputs are on the page."""
        comps = {k: dict(v) for k, v in self.shell.items()}
        comps["app-url"].update(pathname=pathname, search=search)
        self._call(self._dep("..app-page.children...app-crumbs"), comps, "app-url.pathname")
        self.tick(comps)
        self.page_callbacks(comps)
        return comps

    def page_callbacks(self, comps: dict[str, dict]) -> None:
        for dep in self.deps:
            ins = [x["id"] for x in dep["inputs"]]
            if any(i.startswith("{") for i in ins) or ins[0] in ("app-url", "app-tick"):
                continue
            if dep["output"].startswith("..app-page.children@"):
                continue  # retry-missing: runs only when a missing run appears
            on_page = all(o["id"] in comps for o in parse_outputs(dep["output"]))  # a browser fires no other
            if on_page and (all(i in comps for i in ins) and any(i not in self.shell for i in ins) or ins in (["app-version"], ["app-search"])):
                self._call(dep, comps, f"{dep['inputs'][0]['id']}.{dep['inputs'][0]['property']}")
