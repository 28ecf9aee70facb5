#!/usr/bin/env python3
"""Plots the JSON-lines rows of a benchmark (bench/report/bench_report.h) to a PNG: the one plotting
script of every `ra bench` command. The chart follows the rows' fields:

  ra bench retrieval (rows with "recall" and "scanned"): recall@k against the fraction of keys scanned,
      one line per index, log x, the 0.95 target dashed;
  ra bench transport (rows with "p50_us"): p50 and p99 round trip against retrievers, one line per
      transport;
  ra bench accuracy (rows with "needle_accuracy"): a column of panels per context length, needle
      accuracy and KL(full || mode) against the fraction of keys scanned, one line per mode; full
      attention (the ceiling) and the window alone (the floor) as horizontal lines;
  ra bench decode (its {ceilings, rows} file, rows with "ms_p50"): the decode step's p50 split into the
      worker's own work, q out, the retrievers and the partials back, one bar per row.

usage: plot_rows.py ROWS.json OUT.png [TITLE]
"""
import json
import sys
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402


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


def plot_accuracy(rows, title, out_path) -> None:
    lengths = sorted({r["length"] for r in rows})
    has_kl = any(r.get("kl_mean") is not None for r in rows)
    panels = 2 if has_kl else 1
    fig, axes = plt.subplots(panels, len(lengths), figsize=(4.2 * len(lengths), 3.6 * panels), squeeze=False)
    for col, length in enumerate(lengths):
        at = [r for r in rows if r["length"] == length]
        metrics = [("needle_accuracy", "needle accuracy", False)] + ([("kl_mean", "KL(full || mode)", True)] if has_kl else [])
        for row_i, (key, label, log_y) in enumerate(metrics):
            ax = axes[row_i][col]
            series = {}
            for r in at:
                if r.get(key) is None:
                    continue
                if r["mode"] in ("full", "window"):
                    style = dict(color="black", ls="--") if r["mode"] == "full" else dict(color="grey", ls=":")
                    if not (log_y and r["mode"] == "full"):  # KL of full against itself is 0
                        ax.axhline(r[key], lw=1, label=r["mode"], **style)
                    continue
                series.setdefault(r["mode"], []).append(r)
            for name, points in series.items():
                points.sort(key=lambda r: r["scanned"])
                ys = [max(r[key], 1e-7) if log_y else r[key] for r in points]
                ax.plot([100 * r["scanned"] for r in points], ys, marker="o", ms=3, label=name)
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            if log_y:
                ax.set_yscale("log")
            else:
                ax.set_ylim(-0.02, 1.02)
            ax.set_xlabel("keys scanned (% of offloaded, log)")
            ax.set_ylabel(label)
            ax.set_title(f"{length} tokens", fontsize=9)
            ax.grid(True, which="both", lw=0.3)
            ax.legend(fontsize=7)
    fig.suptitle(textwrap.fill(title, 60 * len(lengths)), fontsize=8)
    fig.tight_layout()
    fig.savefig(out_path, dpi=120)


# Where a decode step's time goes, per row of `ra bench decode` (its {ceilings, rows} file): for the
# offloaded modes the worker's own work between round trips (GPU compute, the static attention and the
# merge), and per round trip q out, the retrievers' search and the partials back, times round trips per
# token; what the p50 step takes beyond them is "other" (sampling, the step's first wait, launches).
# full and window have no retrievers: one bar, the GPU's step.
DECODE_PARTS = [("between_layers", "worker between round trips (GPU)", "tab:blue"),
                ("q_out", "q out (transport)", "tab:orange"),
                ("retriever", "retrievers (search + partial attention)", "tab:red"),
                ("partials_back", "partials back (transport)", "tab:purple"),
                ("other", "other", "tab:gray")]


def decode_parts(row):
    b = row.get("breakdown")
    total = row["ms_p50"]
    if not b:
        return {"between_layers": total}
    trips = b["round_trips_per_token"]
    parts = {"between_layers": b["between_layers_ms_per_token"],
             "q_out": trips * b["q_out_us"] / 1e3,
             "retriever": trips * b["retriever_us"] / 1e3,
             "partials_back": trips * b["partials_back_us"] / 1e3}
    parts["other"] = max(0.0, total - sum(parts.values()))
    return parts


def plot_decode(rows, title, out_path) -> None:
    rows = [r for r in rows if "ms_p50" in r]
    labels = [f"{r['context'] // 1024}K {r['mode']}" + (f" {100 * r['scan_budget']:g}%" if r.get("scan_budget") else "")
              for r in rows]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.6))
    left = [0.0] * len(rows)
    for key, name, color in DECODE_PARTS:
        widths = [decode_parts(r).get(key, 0.0) for r in rows]
        ax.barh(labels, widths, left=left, color=color, label=name)
        left = [a + b for a, b in zip(left, widths)]
    for y, r in enumerate(rows):
        ax.text(left[y], y, f" {r['ms_p50']:.2f} ms", va="center", fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("decode step p50, ms (host-timed: the wall time of a step on the worker)")
    ax.grid(True, axis="x", lw=0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(textwrap.fill(title, 90), fontsize=8)
    fig.tight_layout()
    fig.savefig(out_path, dpi=120)


def main() -> None:
    rows_path, out_path = sys.argv[1], sys.argv[2]
    title = sys.argv[3] if len(sys.argv) > 3 else rows_path
    with open(rows_path) as f:
        text = f.read()
    try:  # `ra bench decode --json`: one object {ceilings, rows}
        whole = json.loads(text)
        rows = whole["rows"] if isinstance(whole, dict) and "rows" in whole else [whole]
    except json.JSONDecodeError:
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    if rows and "ms_p50" in rows[0]:
        plot_decode(rows, title, out_path)
        return
    if rows and "needle_accuracy" in rows[0]:
        plot_accuracy(rows, title, out_path)
        return
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
