#!/usr/bin/env python3
"""Plots recall@k against the fraction of keys scanned for every index in a `ra bench retrieval` JSON.

usage: plot_retrieval.py ROWS.json OUT.png [TITLE]
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> None:
    rows_path, out_path = sys.argv[1], sys.argv[2]
    title = sys.argv[3] if len(sys.argv) > 3 else rows_path
    series = {}
    with open(rows_path) as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                series.setdefault(row["index"], []).append(row)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, rows in series.items():
        rows.sort(key=lambda r: r["scanned"])
        ax.plot([100 * r["scanned"] for r in rows], [r["recall"] for r in rows], marker="o", ms=3, label=name)
    ax.axhline(0.95, color="grey", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_xlabel("keys scanned (% of N, log scale)")
    ax.set_ylabel("recall@k (mean over layers and heads)")
    ax.set_ylim(0, 1.01)
    ax.grid(True, which="both", lw=0.3)
    ax.legend()
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out_path, dpi=120)


if __name__ == "__main__":
    main()
