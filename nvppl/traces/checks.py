"""Validation of vesicle traces (the trace format of ``docs/design.rst``).

Every check is vectorised and, on failure, raises :class:`~nvppl.errors.TraceError`
naming the first offending run, vesicle and step. Nothing is dropped or repaired.
"""

from __future__ import annotations

import numpy as np

from .._validate import first, show
from ..errors import TraceError

__all__ = ["CAUSES", "CENSORED", "EXPIRED", "ABSORBED", "DEPLETED", "SINK", "check_integral", "check_indices", "check_vesicles",
           "check_steps"]

#: Death causes of a vesicle, in the order of their integer codes.
CAUSES = ("censored", "expired", "absorbed", "depleted", "sink")
CENSORED, EXPIRED, ABSORBED, DEPLETED, SINK = range(5)


def check_integral(values, name, ids, what="vesicle table"):
    """Integer-valued, finite column; returns int64. ``ids`` gives (run, vesicle, step) per row."""
    arr = np.asarray(values)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    if arr.dtype.kind == "b":
        return arr.astype(np.int64)
    try:
        f = arr.astype(np.float64)
    except (TypeError, ValueError):
        bad = _first_unconvertible(arr)
        raise TraceError(f"{what} column {name!r} holds {show(arr[bad])}, not an integer", **ids(bad)) from None
    i = first(~np.isfinite(f) | (f != np.round(f)))
    if i is not None:
        raise TraceError(f"{what} column {name!r} holds {show(arr[i])}, not an integer", **ids(i))
    return f.astype(np.int64)


def _first_unconvertible(arr):
    for k, x in enumerate(arr):
        try:
            float(x)
        except (TypeError, ValueError):
            return k
    return 0


def check_indices(v, s, n):
    """Range checks on index-based columns (files written by other tools may be corrupt)."""
    for table, cols in ((v, ("birth_node",)), (s, ("node_from", "node_to"))):
        for c in cols:
            i = first((table[c] < 0) | (table[c] >= n))
            if i is not None:
                raise TraceError(f"{c} index {table[c][i]} is not a node of the graph ({n} nodes)")
    i = first((s["vrow"] < 0) | (s["vrow"] >= len(v["run"])))
    if i is not None:
        raise TraceError(f"step row {i} refers to vesicle row {s['vrow'][i]}, which does not exist")
    i = first((v["death_cause"] < 0) | (v["death_cause"] >= len(CAUSES)))
    if i is not None:
        raise TraceError(f"unknown death-cause code {v['death_cause'][i]}",
                         run=int(v["run"][i]), vesicle=int(v["vesicle"][i]))


def check_vesicles(v: dict, n_runs: int, n_steps: int, n_types: int) -> None:
    """Checks on the vesicle table (arrays of index-based columns)."""
    run, vid = v["run"], v["vesicle"]

    def ids(i, step=None):
        return {"run": int(run[i]), "vesicle": int(vid[i]), "step": step}

    i = first((run < 0) | (run >= n_runs))
    if i is not None:
        raise TraceError(f"run {run[i]} is outside 0..{n_runs - 1}", vesicle=int(vid[i]))
    i = first(vid < 0)
    if i is not None:
        raise TraceError(f"vesicle id {vid[i]} is negative; ids must be >= 0", run=int(run[i]))
    b, d = v["birth_step"], v["death_step"]
    i = first((v["type"] < 0) | (v["type"] >= n_types))
    if i is not None:
        raise TraceError(f"unknown type {v['type'][i]}; types are 0..{n_types - 1}", **ids(i, int(b[i])))
    i = first(b < 0)
    if i is not None:
        raise TraceError(f"negative birth step {b[i]}", **ids(i, int(b[i])))
    i = first(b >= n_steps)
    if i is not None:
        raise TraceError(f"birth step {b[i]} is past the last step {n_steps - 1}", **ids(i, int(b[i])))
    i = first(d < 0)
    if i is not None:
        raise TraceError(f"negative death step {d[i]}", **ids(i, int(d[i])))
    i = first(d >= n_steps)
    if i is not None:
        raise TraceError(f"death step {d[i]} is past the last step {n_steps - 1}", **ids(i, int(d[i])))
    i = first(d < b)
    if i is not None:
        raise TraceError(f"death step {d[i]} is before birth step {b[i]}", **ids(i, int(d[i])))
    cause = v["death_cause"]
    i = first((cause == CENSORED) & (d != n_steps - 1))
    if i is not None:
        raise TraceError(f"censored vesicle must be alive at the last step {n_steps - 1}, "
                         f"but its death step is {d[i]}", **ids(i, int(d[i])))
    budget = v["budget"]
    i = first(~((budget >= 1) & ((budget == np.round(budget)) | np.isposinf(budget))))
    if i is not None:
        raise TraceError(f"budget {show(budget[i])} must be a positive integer or inf", **ids(i))
    content = v["content"]
    if content.size:
        bad = ~np.isfinite(content)
        i = first(bad.any(1))
        if i is not None:
            raise TraceError(f"content_{int(np.argmax(bad[i]))} is {show(content[i][bad[i]][0])}; "
                             "content must be finite (NaN content is not allowed)", **ids(i, int(b[i])))
    tau0 = v.get("tau0")
    if tau0 is not None:
        i = first(~np.isnan(tau0) & ~((tau0 > 0) & np.isfinite(tau0)))
        if i is not None:
            raise TraceError(f"initial lifetime tau0 = {show(tau0[i])} must be positive and finite "
                             "(or NaN when unknown)", **ids(i, int(b[i])))
    key = run * (int(vid.max(initial=0)) + 1) + vid
    order = np.argsort(key, kind="stable")
    dup = first(np.diff(key[order]) == 0)
    if dup is not None:
        j = order[dup + 1]
        raise TraceError("vesicle id appears twice in the vesicle table", run=int(run[j]), vesicle=int(vid[j]))


def check_steps(v: dict, s: dict, sub, n_steps: int) -> None:
    """Checks on the steps table against the vesicle table.

    ``s`` holds index-based columns grouped by vesicle (``vrow``, the row of the
    vesicle table, non-decreasing) and in their original order within a vesicle,
    so that rows out of order are reported, not silently sorted.
    """
    vrow, step = s["vrow"], s["step"]
    run, vid = v["run"], v["vesicle"]

    def ids(k):
        r = vrow[k]
        return {"run": int(run[r]), "vesicle": int(vid[r]), "step": int(step[k])}

    i = first(step < 0)
    if i is not None:
        raise TraceError(f"negative step {step[i]}", **ids(i))
    i = first(step >= n_steps)
    if i is not None:
        raise TraceError(f"step {step[i]} is past the last step {n_steps - 1}", **ids(i))
    docked = s["docked"]
    i = first((docked != 0) & (docked != 1))
    if i is not None:
        raise TraceError(f"docked must be 0/1 or a boolean, got {show(docked[i])}", **ids(i))

    n_v = len(run)
    start = np.searchsorted(vrow, np.arange(n_v), side="left")
    stop = np.searchsorted(vrow, np.arange(n_v), side="right")
    count = stop - start
    cause, b, d = v["death_cause"], v["birth_step"], v["death_step"]
    is_first = np.zeros(len(vrow), bool)
    is_first[start[count > 0]] = True

    # a vesicle's rows cover birth_step .. last, consecutively
    expect_step = np.where(is_first, b[vrow], np.r_[0, step[:-1] + 1] if len(step) else step)
    i = first(step != expect_step)
    if i is not None:
        if is_first[i]:
            raise TraceError(f"first step row is at step {step[i]} but the vesicle was born at step "
                             f"{b[vrow[i]]}", **ids(i))
        if step[i] > step[i - 1] + 1:
            later = step[i:np.searchsorted(vrow, vrow[i], side="right")]
            if np.any(later < step[i]):
                raise TraceError(f"steps out of order: step {step[i]} comes before step "
                                 f"{later[later < step[i]][0]}", **ids(i))
            raise TraceError(f"missing step row(s) between steps {step[i - 1]} and {step[i]}", **ids(i))
        if step[i] == step[i - 1]:
            raise TraceError("the step appears twice in the steps table", **ids(i))
        raise TraceError(f"steps out of order: step {step[i]} follows step {step[i - 1]}", **ids(i))
    last_expected = np.where(cause == SINK, d - 1, d)
    last_seen = np.where(count > 0, step[np.maximum(stop - 1, 0)] if len(step) else 0, b - 1)
    # rows after death: a dead vesicle that moves
    i = first(step > last_expected[vrow])
    if i is not None:
        r = vrow[i]
        why = (f"it was removed at step {d[r]} ({CAUSES[cause[r]]})")
        raise TraceError(f"a dead vesicle moves: {why}", **ids(i))
    r = first(last_seen < last_expected)
    if r is not None:
        missing = int(last_seen[r] + 1)
        raise TraceError(f"no step row at step {missing}, but the vesicle lives until step {d[r]} "
                         f"({CAUSES[cause[r]]})", run=int(run[r]), vesicle=int(vid[r]), step=missing)

    # continuity of locations and moves along the graph
    nf, nt = s["node_from"], s["node_to"]
    labels = sub.labels
    expect_from = np.where(is_first, v["birth_node"][vrow], np.r_[0, nt[:-1]] if len(nt) else nt)
    i = first(nf != expect_from)
    if i is not None:
        where = "its birth node" if is_first[i] else "where the previous step left it"
        raise TraceError(f"moves from node {labels[nf[i]]!r} but was at node {labels[expect_from[i]]!r} "
                         f"({where})", **ids(i))
    slot = sub.slot_of(nf, nt)
    i = first(slot < 0)
    if i is not None:
        if sub.is_sink[nf[i]]:
            raise TraceError(f"moves out of sink node {labels[nf[i]]!r} (a sink has no moves; "
                             "the vesicle should have been removed with cause 'sink')", **ids(i))
        stay = " (staying is not allowed: allow_stay=False)" if nf[i] == nt[i] else ""
        raise TraceError(f"moves along a missing edge {labels[nf[i]]!r} -> {labels[nt[i]]!r}{stay}", **ids(i))
    s["slot"] = slot

    # sink deaths happen at a sink
    at_death = np.where(count > 0, nt[np.maximum(stop - 1, 0)] if len(nt) else 0, v["birth_node"])
    r = first((cause == SINK) & ~sub.is_sink[at_death])
    if r is not None:
        raise TraceError(f"death cause 'sink' but node {labels[at_death[r]]!r} is not a sink",
                         run=int(run[r]), vesicle=int(vid[r]), step=int(d[r]))

    # release budgets
    csum = np.cumsum(docked)
    before = np.where(count > 0, np.r_[0, csum][start], 0)
    docks_so_far = csum - before[vrow]
    budget = v["budget"]
    spent = docks_so_far >= budget[vrow]
    i = first(spent & (step != d[vrow]))
    if i is not None:
        raise TraceError(f"the release budget {budget[vrow[i]]:g} is spent at this step, so the vesicle "
                         "must be removed ('depleted'), but it lives on", **ids(i))
    i = first(spent & (cause[vrow] != DEPLETED))
    if i is not None:
        raise TraceError(f"the release budget is spent at this step but the death cause is "
                         f"'{CAUSES[cause[vrow[i]]]}', not 'depleted'", **ids(i))
    total = np.where(count > 0, np.r_[0, csum][stop] - before, 0)
    r = first((cause == DEPLETED) & (total < budget))
    if r is not None:
        raise TraceError(f"death cause 'depleted' but the vesicle docked {total[r]} time(s) with a "
                         f"budget of {budget[r]:g}", run=int(run[r]), vesicle=int(vid[r]), step=int(d[r]))
