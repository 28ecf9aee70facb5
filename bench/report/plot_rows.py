#!/usr/bin/env python3
"""Plots the JSON-lines rows of a benchmark (bench/report/bench_report.h) to a PNG: the one plotting
script of every `ra bench` command. The chart follows the rows' fields:

  ra bench retrieval (rows with "recall" and "scanned"): recall@k against the fraction of keys scanned,
      one line per index, log x, the 0.95 target dashed;
  ra bench transport (rows with "p50_us"): p50 and p99 round trip against retrievers, one line per
      transport.

usage: plot_rows.py ROWS.json OUT.png [TITLE]
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_retrieval(ax, rows) -> None:
    series = {}
    for row in rows:
        series.setdefault(row["index"], []).append(row)
    for name, rows in series.items():
        rows.sort(key=lambda r: r["scanned"])
        ax.plot([100 * r["scanned"] for r in rows], [r["recall"] for r in rows], marker="o", ms=3, label=name)
    ax.axhline(0.95, color="grey", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_xlabel("keys scanned (% of N, log scale)")
    ax.set_ylabel("recall@k (mean over layers and heads)")
    ax.set_ylim(0, 1.01)


def plot_transport(ax, rows) -> None:
    ax.set_xticks(sorted({r["retrievers"] for r in rows}))
    series = {}
    for row in rows:
        series.setdefault(row["transport"], []).append(row)
    for name, rows in series.items():
        rows.sort(key=lambda r: r["retrievers"])
        line = ax.plot([r["retrievers"] for r in rows], [r["p50_us"] for r in rows], marker="o", ms=3,
                       label=f"{name} p50")
        ax.plot([r["retrievers"] for r in rows], [r["p99_us"] for r in rows], marker="x", ms=3, ls=":",
                color=line[0].get_color(), label=f"{name} p99")
    ax.set_yscale("log")
    ax.set_xlabel("retrievers")
    ax.set_ylabel("round trip per layer (us, log scale)")


def main() -> None:
    rows_path, out_path = sys.argv[1], sys.argv[2]
    title = sys.argv[3] if len(sys.argv) > 3 else rows_path
    with open(rows_path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if rows and "p50_us" in rows[0]:
        plot_transport(ax, rows)
    else:
        plot_retrieval(ax, rows)
    ax.grid(True, which="both", lw=0.3)
    ax.legend()
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out_path, dpi=120)


if __name__ == "__main__":
    main()
