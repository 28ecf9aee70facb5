#!/usr/bin/python3
"""Draws a soak run (scripts/soak.sh's samples.csv) as one PNG: per rank, RSS and threads against the
tokens generated, and the worker's decode time per token over windows of 1,000 tokens.

    usage: scripts/plot_soak.py SAMPLES_CSV OUT_PNG [--title TEXT]
(Debian's python3 with python3-matplotlib: scripts/setup.sh installs it.)
"""
import argparse
import csv
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("samples")
    ap.add_argument("png")
    ap.add_argument("--title", default="soak")
    args = ap.parse_args()

    ranks = defaultdict(lambda: {"tokens": [], "rss_mib": [], "threads": [], "name": ""})
    worker = []  # (t_s, tokens)
    with open(args.samples) as f:
        for row in csv.DictReader(f):
            r = ranks[row["pid"]]
            r["name"] = row["name"]
            r["tokens"].append(int(row["tokens"]))
            r["rss_mib"].append(int(row["rss_kib"]) / 1024)
            r["threads"].append(int(row["threads"]))
            if "worker" in row["name"]:
                worker.append((float(row["t_s"]), int(row["tokens"])))

    fig, (ax_rss, ax_thr, ax_ms) = plt.subplots(3, 1, figsize=(8, 9), sharex=True)
    for pid, r in sorted(ranks.items()):
        label = f"{r['name']} {pid}"
        ax_rss.plot(r["tokens"], r["rss_mib"], label=label)
        ax_thr.plot(r["tokens"], r["threads"], label=label)
    ax_rss.set_ylabel("RSS (MiB)")
    ax_rss.legend(fontsize=8)
    ax_thr.set_ylabel("threads")
    ax_thr.set_ylim(bottom=0)

    xs, ys = [], []
    last = None
    for t, n in worker:
        if last is None:
            if n > 0:
                last = (t, n)
            continue
        if n - last[1] >= 1000:
            xs.append(n)
            ys.append(1000 * (t - last[0]) / (n - last[1]))
            last = (t, n)
    ax_ms.plot(xs, ys, color="black")
    ax_ms.set_ylabel("decode ms/token (1K-token windows)")
    ax_ms.set_xlabel("tokens generated")
    ax_ms.set_ylim(bottom=0)
    fig.suptitle(args.title)
    fig.tight_layout()
    fig.savefig(args.png, dpi=110)


if __name__ == "__main__":
    main()
