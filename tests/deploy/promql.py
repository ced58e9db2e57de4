"""The metric names a PromQL expression reads, and the names a /metrics exposition offers."""

from __future__ import annotations

import re

# Series Prometheus makes itself for every target rather than reading them from /metrics.
SYNTHETIC = {"up"}
_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "rate",
    "irate",
    "increase",
    "histogram_quantile",
    "vector",
    "avg_over_time",
    "max_over_time",
    "min_over_time",
    "sum_over_time",
    "le",
    "inf",
    "nan",
}
_IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
# Strings, label matchers, ranges, Grafana macros and label lists (by (job, le), on (instance)...).
_HIDDEN = re.compile(
    r'"(?:[^"\\]|\\.)*"|\{[^}]*\}|\[[^\]]*\]|\$\w+|\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)'
)


def metric_names(expr: str) -> set[str]:
    """Every metric an expression selects (label names, functions and keywords left out)."""
    bare = _HIDDEN.sub(" ", expr)
    return {name for name in _IDENTIFIER.findall(bare) if name.lower() not in _KEYWORDS and not name[0].isdigit()}


def exposed_names(exposition: str) -> set[str]:
    """The sample names a Prometheus text exposition can carry, from its TYPE lines (so a labelled metric
    counts before its first sample)."""
    names = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names.add(name)
            if kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return names
