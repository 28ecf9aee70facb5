"""What the retrieval analysis scripts share: their command line (a `ra dump-qkv` directory, --prefill N,
--k, --stride) and a walk over its (layer, query head) pairs, as `ra bench retrieval` splits them: keys
are the head's kv head at positions [0, N), queries are the head's rows of q_l{layer}.npy."""
import argparse
import json
import os

import numpy as np


def parse_args(doc, with_layers=False):
    """The parsed arguments and the dump's meta.json."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("qkv")
    ap.add_argument("--prefill", type=int, required=True)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--stride", type=int, default=4)
    if with_layers:
        ap.add_argument("--layer", type=int, action="append")
    a = ap.parse_args()
    return a, json.load(open(os.path.join(a.qkv, "meta.json")))


def heads(a, meta, layers=None):
    """Yields (layer, head, q of that layer [n_heads][T][D] memory-mapped, the head's keys [N][D])."""
    group = meta["n_heads"] // meta["n_kv_heads"]
    for layer in layers if layers else range(meta["n_layers"]):
        q = np.load(os.path.join(a.qkv, f"q_l{layer}.npy"), mmap_mode="r")
        keys_all = np.load(os.path.join(a.qkv, f"k_l{layer}.npy"), mmap_mode="r")
        for h in range(meta["n_heads"]):
            yield layer, h, q, np.asarray(keys_all[h // group, :a.prefill])
