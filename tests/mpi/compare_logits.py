#!/usr/bin/env python3
"""Compares two RA_LOGITS_TRACE files (float32 logits, one row of VOCAB per decode step): at least
MIN_STEPS rows each, the same count, and every row's largest difference within TOL of the row's largest
magnitude. usage: compare_logits.py A.f32 B.f32 MIN_STEPS TOL [VOCAB]"""
import array
import sys

a, b = array.array("f"), array.array("f")
a.frombytes(open(sys.argv[1], "rb").read())
b.frombytes(open(sys.argv[2], "rb").read())
steps, tol = int(sys.argv[3]), float(sys.argv[4])
vocab = int(sys.argv[5]) if len(sys.argv) > 5 else 258  # the synthetic and byte models' vocabulary
assert len(a) == len(b) and len(a) >= steps * vocab, (len(a), len(b))
worst = 0.0
for s in range(len(a) // vocab):
    ra, rb = a[s * vocab:(s + 1) * vocab], b[s * vocab:(s + 1) * vocab]
    scale = max(abs(x) for x in ra)
    worst = max(worst, max(abs(x - y) for x, y in zip(ra, rb)) / scale)
print(f"steps {len(a) // vocab}, worst relative logit difference {worst:.3g}")
assert worst < tol, worst
