"""ACP Figs. 10-12: metrics versus a re-ranking parameter, one curve per method, from a sweep table's results.

The rows of a sweep table (`experiments.tables.acp`: acp_fig10, acp_fig11, acp_fig12) are named
`<method>/<parameter>=<value>`, plus an optional `baseline` row (no re-ranking, drawn as a horizontal line). Our
values are lines with filled markers; the paper's printed values are hollow markers of the same colour, so the
figure shows where the paper's peaks sit on our curves.
"""
from __future__ import annotations

from experiments import plots
from experiments.results import ResultStore
from experiments.tables import Table
from experiments.tables.acp import METHOD_TITLES


def series(table: Table, values: dict, parameter: str) -> dict:
    """{method: [(value of `parameter`, {metric: (ours, paper)})] sorted by the value} of the finished rows
    named `<method>/<parameter>=<value>` (`values`: `ResultStore.values()`)."""
    out = {}
    for row in table.rows:
        method, _, setting = row.row_id.partition("/")
        name, _, number = setting.partition("=")
        if name != parameter or row.row_id not in values:
            continue
        entry = values[row.row_id]
        out.setdefault(method, []).append(
            (float(number), {m.key: entry[m.key][:2] for m in table.metrics if m.key in entry}))
    return {method: sorted(points, key=lambda point: point[0]) for method, points in out.items()}


def draw(table: Table, results_dir: str, parameter: str, output: str, metrics=None) -> str:
    """Draw the sweep of `parameter` ("k1" or "k2") in `table`'s results under `results_dir` into `output`.

    metrics: metric keys to draw, one panel each (default: every metric of the table with any value).
    Raises ValueError when the results hold no row of the sweep.
    """
    plt = plots.pyplot()
    store = ResultStore(table, results_dir, None)
    values = store.values()
    curves = series(table, values, parameter)
    if not curves:
        raise ValueError(f"{store.csv_path}: no finished rows of the {parameter} sweep of {table.name}; run "
                         f"`python -m experiments.run --table={table.name}` first")
    keys = metrics or [m.key for m in table.metrics
                       if any(metric_values.get(m.key, (None,))[0] is not None
                              for points in curves.values() for _, metric_values in points)]
    titles = {m.key: m.title for m in table.metrics}
    figure, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 4.2), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    baseline = values.get("baseline")
    for axis, key in zip(axes[0], keys):
        for index, (method, points) in enumerate(curves.items()):
            colour = colours[index % len(colours)]
            ours = [(x, m[key][0]) for x, m in points if key in m and m[key][0] is not None]
            paper = [(x, m[key][1]) for x, m in points if key in m and m[key][1] is not None]
            label = METHOD_TITLES.get(method, method)
            if ours:
                axis.plot(*zip(*ours), "-o", color=colour, markersize=3, label=f"{label} (ours)")
            if paper:
                axis.plot(*zip(*paper), "o", color=colour, markerfacecolor="none", markersize=8,
                          label=f"{label} (paper)")
        if baseline and key in baseline:
            ours, paper, _ = baseline[key]
            if ours is not None:
                axis.axhline(ours, color="grey", linestyle="--", linewidth=1, label="baseline (ours)")
            if paper is not None:
                axis.axhline(paper, color="grey", linestyle=":", linewidth=1, label="baseline (paper)")
        axis.set_xlabel(parameter)
        axis.set_ylabel(f"{titles.get(key, key)} (%)")
        axis.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="best")
    scale = f" [{store.scale} scale]" if store.scale else ""
    figure.suptitle(f"{table.source}: {table.title}{scale}", fontsize=10)
    return plots.save(figure, output)
