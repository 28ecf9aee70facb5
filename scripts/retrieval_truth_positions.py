#!/usr/bin/python3
"""Where the exact top-k of the test queries lies in the sequence, per (layer, query head), and how
much of it the previous decode position shares.

Reads an `ra dump-qkv` directory; keys are positions [0, N), test queries every `stride`-th position of
[N, T), as in `ra bench retrieval`. Prints, per head, the fraction of the exact top-k (inner product)
within the last 256/512/1024/2048 key positions, within the first 128 and the first 8192, and
`prev`: the mean fraction of a test query's top-k that the query one position earlier also has in its
top-k (over the same N keys): what seeding a search with the previous step's answer can start from.
Needs python3-numpy.

  usage: scripts/retrieval_truth_positions.py DIR --prefill N [--k 100] [--stride 4]
"""
import numpy as np

from qkv_dump import heads, parse_args


def main():
    a, meta = parse_args(__doc__)
    n, k = a.prefill, a.k
    print("layer head  last256 last512 last1024 last2048 first128 first8192    prev")
    for layer, h, q, keys in heads(a, meta):
        test = np.asarray(q[h, n::a.stride])
        top = np.argpartition(-(test @ keys.T), k, axis=1)[:, :k]
        before = np.asarray(q[h, n - 1::a.stride][: len(test)])  # positions t - 1
        top_before = np.argpartition(-(before @ keys.T), k, axis=1)[:, :k]
        prev = np.mean([len(np.intersect1d(x, y)) / k for x, y in zip(top, top_before)])
        recent = [np.mean(top >= n - w) for w in (256, 512, 1024, 2048)]
        print(f"{layer:5d} {h:4d}  " + " ".join(f"{f:7.3f}" for f in recent) +
              f"  {np.mean(top < 128):7.3f}   {np.mean(top < 8192):7.3f} {prev:7.3f}")


if __name__ == "__main__":
    main()
