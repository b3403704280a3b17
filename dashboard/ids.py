"""Component ids of the dashboard, in one place: layouts and callbacks both import them.

Ids of components that exist on every page start with ``app-``; the others belong to
one page and start with that page's name.
"""

from __future__ import annotations

# Shell (every page).
URL = "app-url"
PAGE = "app-page"
TICK = "app-tick"            # dcc.Interval driving live refresh
VERSION = "app-version"      # dcc.Store: {"key": ..., "status": ...} of what the page shows
SEARCH = "app-search"        # dcc.Store: ``Run.version`` of a run page's run while a sampled file is searched
LIVE = "app-live"            # "live / last update N s ago" indicator
CRUMBS = "app-crumbs"
MISSING = "app-missing"      # type of the dcc.Store ({"type": MISSING, "i": 0}) on a "run not found" page

# Run list.
RUNS_TABLE = "runs-table"
RUNS_FILTER = "runs-filter"  # dcc.Input: part of a run name
RUNS_PAGE = "runs-page"  # dcc.Store: the page of the run list shown (0 = newest runs)
RUNS_PREV = "runs-prev"
RUNS_NEXT = "runs-next"
RUNS_PAGER = "runs-pager"  # "runs 1-50 of N" and what is still being summarised

# Pages of one run.
RUN_NAME = "run-name"        # dcc.Store holding the run's name for the page's callbacks
RUN_HEADER = "run-header"
RUN_STATUS = "run-status"    # status badge, alert counts, last step (redrawn on new data)
RUN_AGE = "run-age"          # "last write N s ago" (counted in the browser)
RUN_SAMPLED = "run-sampled"  # what part of a large run is shown ("... 258 of about 10,000 logged steps")

# Overview.
FINDINGS = "overview-findings"
LOSS_GRAPH = "overview-loss"
LOSS_SCALE = "overview-loss-scale"
ACC_GRAPH = "overview-acc"
LR_GRAPH = "overview-lr"
PROBLEMS = "overview-problems"

# The evidence card a finding's link opens (overview, layers, updates).
EVIDENCE = "evidence"
EVIDENCE_GRAPH = "evidence-graph"

# Layers.
STEP_SLIDER = "layers-step"
STEP_LABEL = "layers-step-label"
LAYER_PICK = "layers-layer"
DEPTH_GRAPH = "layers-depth"
DEPTH_NOTE = "layers-depth-note"  # says which layers had no finite value at the chosen step
HIST_GRAPH = "layers-hist"
HEATMAP_GRAPH = "layers-heatmap"
DEADSAT_GRAPH = "layers-deadsat"

# Updates.
RATIO_GRAPH = "updates-ratio"
GRAD_GRAPH = "updates-grad"
PARAM_PICK = "updates-param"

# Compare.
COMPARE_TABLE = "compare-table"
COMPARE_EDGES = "compare-edges"
COMPARE_COUNT = "compare-count"
COMPARE_LOSS_GRAPH = "compare-loss"
COMPARE_ACC_GRAPH = "compare-acc"
COMPARE_SCATTER_GRAPH = "compare-scatter"
COMPARE_SCATTER_X = "compare-x"
COMPARE_SCATTER_COLOR = "compare-color"
COMPARE_METRIC = "compare-metric"
COMPARE_PARALLEL_GRAPH = "compare-parallel"
COMPARE_STUDIES = "compare-studies"
COMPARE_SEEN = "compare-seen"  # dcc.Store: signature of the table the browser shows
COMPARE_PICKED = "compare-picked"  # dcc.Store: the runs ticked for the overlay, on any page of the table
