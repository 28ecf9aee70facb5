#!/usr/bin/env python3
"""The scaling figure of issue 21 from ra-bench-search's JSON (scripts/device_gpu.sh stage scaling):
searches per second against cores, one line for a single pinned process (threads 1..N) and points for
the same cores as 2 and 4 processes (their rates added), with the ideal line (the 1-core rate times the
cores). Prints a table with the efficiency (rate / (cores x 1-core rate)) and writes scaling.json
(one row per configuration) and the PNG.

usage: scaling_report.py DIR OUT.png   (DIR holds scaling_p{P}_{i}.json)
"""
import glob
import json
import os
import sys


def main():
    folder, png = sys.argv[1], sys.argv[2]
    rows = []
    single = [json.loads(l) for l in open(os.path.join(folder, "scaling_p1_0.json"))]
    for r in single:
        rows.append({"processes": 1, "threads_per_process": r["threads"], "cores": r["threads"],
                     "searches_per_s": r["searches_per_s"], "layer_us_mean": r["layer_us_mean"],
                     "us_per_search": r["us_per_search"], "rows_per_search": r["rows_per_search"],
                     "busy_max_us": r.get("busy_max_us"), "busy_mean_us": r.get("busy_mean_us")})
    for p in (2, 4):
        files = sorted(glob.glob(os.path.join(folder, f"scaling_p{p}_*.json")))
        parts = [json.loads(open(f).readline()) for f in files if os.path.getsize(f) > 0]
        if len(parts) != p:
            print(f"scaling: {p} processes: {len(parts)} of {p} results")
            continue
        rows.append({"processes": p, "threads_per_process": parts[0]["threads"],
                     "cores": p * parts[0]["threads"], "searches_per_s": sum(x["searches_per_s"] for x in parts),
                     "layer_us_mean": max(x["layer_us_mean"] for x in parts),
                     "us_per_search": sum(x["us_per_search"] for x in parts) / p,
                     "rows_per_search": sum(x["rows_per_search"] for x in parts) / p,
                     "busy_max_us": max((x.get("busy_max_us") or 0) for x in parts) or None,
                     "busy_mean_us": sum((x.get("busy_mean_us") or 0) for x in parts) / p or None})
    one = next(r["searches_per_s"] for r in rows if r["cores"] == 1)
    with open(os.path.join(folder, "scaling.json"), "w") as f:
        for r in rows:
            r["efficiency"] = r["searches_per_s"] / (r["cores"] * one)
            f.write(json.dumps(r) + "\n")
    # layer = the layer's wall time; busiest / average = the busiest team thread's search time per layer
    # against the team's mean (a layer waits for its busiest thread).
    print(f"{'processes':>9} {'threads':>7} {'cores':>5} {'searches/s':>11} {'efficiency':>10} {'us/search':>9} "
          f"{'rows':>6} {'layer_us':>9} {'busiest':>8} {'average':>8}")
    for r in rows:
        busy = (f"{r['busy_max_us']:>8.1f} {r['busy_mean_us']:>8.1f}" if r.get("busy_max_us") else f"{'-':>8} {'-':>8}")
        print(f"{r['processes']:>9} {r['threads_per_process']:>7} {r['cores']:>5} {r['searches_per_s']:>11.0f} "
              f"{r['efficiency']:>10.3f} {r['us_per_search']:>9.1f} {r['rows_per_search']:>6.0f} "
              f"{r['layer_us_mean']:>9.1f} {busy}")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.5, 4))
    line = sorted((r for r in rows if r["processes"] == 1), key=lambda r: r["cores"])
    cores = [r["cores"] for r in line]
    ax.plot(cores, [r["searches_per_s"] for r in line], marker="o", label="1 process, pinned threads")
    for p, marker in ((2, "s"), (4, "^")):
        pts = [r for r in rows if r["processes"] == p]
        ax.plot([r["cores"] for r in pts], [r["searches_per_s"] for r in pts], marker=marker, ls="",
                label=f"{p} processes")
    ax.plot(cores, [c * one for c in cores], ls="--", color="grey", label="ideal (1-core rate x cores)")
    ax.set_xlabel("cores")
    ax.set_ylabel(f"graph searches per second ({single[0]['context']} keys, k {single[0]['k']})")
    ax.set_xticks(cores)
    ax.legend(fontsize=8)
    ax.set_title("ra-bench-search: retriever search scaling", fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


if __name__ == "__main__":
    main()
