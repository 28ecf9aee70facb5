#!/usr/bin/env python3
"""Merges the JSON-lines rows of several `ra bench accuracy` runs over disjoint needle seeds into one
table, as if one run had asked every prompt: a long evaluation split into time-boxed pieces
(`--time-limit`, `--seed`), on one machine or several.

Rows of one (length, mode, scan_target) add up from their raw sums (facts, digits, scored and offered
keys, recall hits per layer, seconds). The needle seed ranges [seed, seed + prompts) of a group must not
overlap. The text (agreement, KL) is the same prompt in every run, so at most one of the runs may have
measured it (run the others without --text): counting its steps twice would weigh them twice.

usage: merge_rows.py OUT.json IN.json [IN.json ...] [--plot OUT.png [--title TITLE]]
"""
import argparse
import json
import os
import subprocess
import sys

NEEDLE_SUMS = ("needle_facts", "needle_correct", "needle_digits", "needle_digits_correct", "needle_facts_cut",
               "prompts", "scored_needle", "offered_needle", "decode_steps", "seconds")
TEXT_SUMS = ("text_positions", "text_agree", "kl_sum", "scored_text", "offered_text")


def ratio(num, den):
    return num / den if den else None


def merge(groups):
    out = []
    for key, rows in groups.items():
        ranges = sorted((r["seed"], r["seed"] + r["prompts"]) for r in rows if r["prompts"] > 0)
        for (a0, a1), (b0, b1) in zip(ranges, ranges[1:]):
            if b0 < a1:
                sys.exit(f"merge_rows: {key}: needle seeds [{a0}, {a1}) and [{b0}, {b1}) overlap")
        m = dict(rows[0])
        for f in NEEDLE_SUMS:
            m[f] = sum(r[f] for r in rows)
        if sum(1 for r in rows if r["text_positions"] > 0) > 1:
            sys.exit(f"merge_rows: {key}: more than one run measured the text (run all but one without --text)")
        for f in TEXT_SUMS:
            m[f] = sum(r[f] for r in rows)
        for r in rows:  # the text's prompt length, from the run that measured the text
            if r["text_positions"] > 0 and "text_prompt_tokens" in r:
                m["text_prompt_tokens"] = r["text_prompt_tokens"]
        layers = max(len(r["recall_hits_per_layer"]) for r in rows)
        hits = [sum(r["recall_hits_per_layer"][i] for r in rows if i < len(r["recall_hits_per_layer"]))
                for i in range(layers)]
        wanted = [sum(r["recall_wanted_per_layer"][i] for r in rows if i < len(r["recall_wanted_per_layer"]))
                  for i in range(layers)]
        m["recall_hits_per_layer"], m["recall_wanted_per_layer"] = hits, wanted
        m["recall_per_layer"] = [ratio(h, w) for h, w in zip(hits, wanted)]
        m["recall"] = ratio(sum(hits), sum(wanted))
        m["seed"] = min(r["seed"] for r in rows)
        m["seeds"] = [[a, b - a] for a, b in ranges]
        m["needle_accuracy"] = ratio(m["needle_correct"], m["needle_facts"])
        m["needle_digit_accuracy"] = ratio(m["needle_digits_correct"], m["needle_digits"])
        m["agreement"] = ratio(m["text_agree"], m["text_positions"])
        m["kl_mean"] = ratio(m["kl_sum"], m["text_positions"])
        if m["top_k"] is not None:  # a mode with retrievers: the fractions it measured
            m["scanned_needle"] = ratio(m["scored_needle"], m["offered_needle"])
            m["scanned_text"] = ratio(m["scored_text"], m["offered_text"])
            m["scanned"] = ratio(m["scored_needle"] + m["scored_text"], m["offered_needle"] + m["offered_text"]) or 0.0
        m["ms_per_step"] = 1e3 * m["seconds"] / m["decode_steps"] if m["decode_steps"] else 0.0
        out.append(m)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out")
    p.add_argument("inputs", nargs="+")
    p.add_argument("--plot")
    p.add_argument("--title", default="")
    a = p.parse_args()
    groups = {}
    for path in a.inputs:
        with open(path) as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    r = json.loads(line)
                    # rows of another KV store are another row (older rows had the checkpoint's)
                    key = (r["length"], r["mode"], r["scan_target"], r.get("kv_dtype", "auto"),
                           r.get("graph_connect_max_in_degree", -1))
                    r["seed"], r["prompts"], r["needle_digits"]  # rows of a run before the raw sums: refused
                except (ValueError, KeyError) as e:
                    sys.exit(f"merge_rows: {path}:{n}: not a row of ra bench accuracy with raw sums ({e})")
                groups.setdefault(key, []).append(r)
    merged = merge(groups)
    with open(a.out, "w") as f:
        for r in merged:
            f.write(json.dumps(r) + "\n")
    for r in merged:
        budget = "-" if r["scan_target"] is None else f"{r['scan_target']:.3f}"
        fmt = lambda x, spec: "-" if x is None else format(x, spec)  # noqa: E731
        print(f"{r['length']:>7} {r['mode']:<10} {budget:>6} scanned {fmt(r['scanned'], '.4f')} "
              f"facts {r['needle_correct']}/{r['needle_facts']} needle {fmt(r['needle_accuracy'], '.3f')} "
              f"agree {fmt(r['agreement'], '.4f')} KL {fmt(r['kl_mean'], '.5f')} recall {fmt(r['recall'], '.4f')} "
              f"prompts {r['prompts']}")
    if a.plot:
        plot = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "report", "plot_rows.py")
        subprocess.run([sys.executable, plot, a.out, a.plot, a.title], check=True)


if __name__ == "__main__":
    main()
