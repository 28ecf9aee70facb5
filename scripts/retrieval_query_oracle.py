#!/usr/bin/python3
"""How far the prefill queries' own answers can take a test query, per (layer, query head): a floor for
any index that routes a decode query through the training queries, and how spread the answers are.

Reads an `ra dump-qkv` directory; keys and training queries are positions [0, N), test queries every
`stride`-th position of [N, T), as in `ra bench retrieval`. For each test query it takes the j training
queries of the same head nearest to it (cosine, exact, and not counted as scanned) and the union of
their exact top-k lists over the N keys. Prints, per j, the mean recall@k of that union and its size
as a fraction of N: the keys an index built only from these lists would have to score even with
perfect routing. Also prints `spread`, the distinct keys in the exact top-k of all test queries of the
head as a fraction of N, and `hot5`, the share of the test answers that lie in the 5% of keys most
often in a training query's top-k (a small hot set that could be scanned exactly). Needs
python3-numpy; about 10 s per head at 16K on 2 cores.

  usage: scripts/retrieval_query_oracle.py DIR --prefill N [--k 100] [--stride 4] [--layer L]
"""
import numpy as np

from qkv_dump import heads, parse_args

NEIGHBOURS = (1, 4, 16, 64)


def top_k(scores, k):
    return np.argpartition(-scores, k - 1, axis=1)[:, :k]


def main():
    a, meta = parse_args(__doc__, with_layers=True)
    n, k = a.prefill, a.k
    print("layer head " + " ".join(f"   j={j:<3d} recall@scanned" for j in NEIGHBOURS) + "  spread   hot5")
    for layer, h, q, keys in heads(a, meta, a.layer):
        train = np.asarray(q[h, :n])
        test = np.asarray(q[h, n::a.stride])
        truth = top_k(test @ keys.T, k)
        lists = np.concatenate([top_k(train[s:s + 2048] @ keys.T, k) for s in range(0, n, 2048)])
        near = top_k((test / np.linalg.norm(test, axis=1, keepdims=True)) @
                     (train / np.linalg.norm(train, axis=1, keepdims=True)).T, max(NEIGHBOURS))
        cells = []
        for j in NEIGHBOURS:
            recall = size = 0.0
            for t in range(len(test)):
                sims = test[t] @ train[near[t]].T / np.linalg.norm(train[near[t]], axis=1)
                union = np.unique(lists[near[t][np.argsort(-sims)[:j]]])
                recall += len(np.intersect1d(union, truth[t])) / k
                size += len(union) / n
            cells.append(f"{recall / len(test):11.3f} @{100 * size / len(test):5.1f}%")
        counts = np.bincount(lists.ravel(), minlength=n)
        hot = np.zeros(n, bool)
        hot[np.argsort(-counts)[: n // 20]] = True
        spread = len(np.unique(truth)) / n
        print(f"{layer:5d} {h:4d} " + " ".join(cells) + f"  {100 * spread:5.1f}%  {hot[truth].mean():5.3f}",
              flush=True)


if __name__ == "__main__":
    main()
