#!/usr/bin/env python3
"""The PyTorch full-attention decode reference that our CUDA decoder is compared against (DESIGN.md §9).

What it measures: milliseconds per generated token of a minimal Llama-3-8B decode step in plain PyTorch,
batch 1, bf16, random weights made directly on the GPU (timing does not depend on weight values), for
each context length in --context. No checkpoint and no transformers are involved.

How:
  * Geometry: hidden 4096, 32 layers, 32 query heads, 8 KV heads, head_dim 128, intermediate 14336,
    vocab 128256, RMSNorm eps 1e-5, RoPE theta 500000 with llama3 frequency scaling (factor 8, low 1,
    high 4, original context 8192) for the cos/sin tables. Fused QKV and fused gate/up weights.
  * A static KV cache per layer of exactly context + 1 positions ([1, 8, ctx + 1, 128] for K and for
    V); the decoded token's K/V are written in place at position ctx by index_copy_ with a device-side
    position tensor, and attention is F.scaled_dot_product_attention(q, k, v, enable_gqa=True) over the
    whole cache (q [1, 32, 1, 128]; every slot is valid, so no mask). --variant repeat_interleave
    expands the KV heads first instead (the slow textbook form; a side note only). With the default
    --sdpa-backend best, each context first captures and briefly times SDPA unrestricted and restricted
    to flash, cudnn and efficient (backends that reject the inputs are skipped) and measures the fastest,
    so the reference is the fastest SDPA this PyTorch has; the row records every trial.
  * RoPE from precomputed cos/sin tables (bf16, like transformers' bf16 path) gathered by the device
    position; q and k are rotated together in three kernels (x*cos + roll(x)*sin_signed).
  * The whole step (embedding -> 32 layers -> final norm -> lm_head -> argmax -> the argmax written
    back into the device token tensor) is captured in ONE CUDA graph after a warm-up on a side stream.
    The position stays at ctx, so every replay rewrites slot ctx and is valid forever.
  * Timing: --warmup replays, then --replays replays each bracketed by CUDA events; p50, p99 and mean
    ms/token. The whole measurement (warm-up + replays) runs twice per context; both medians and their
    spread |a - b| / min(a, b) are reported (we require <= 1%).
  * Ceilings measured once at start: device-to-device copy bandwidth (>= 4 GiB copied, bytes read +
    written, median of several) and the bf16 matmul rate (8192^3, median of several). The memory floor
    per context = (weight bytes read per token + KV bytes) / measured bandwidth.
  * Contexts that do not fit the card are reported as skipped with the reason (pre-checked against
    free memory, and any out-of-memory error is caught); memory is freed between contexts.

Output: a table on stdout and, with --json, a JSON document (rewritten after every context so a
partial run still leaves its rows).

  usage: scripts/bench_torch_decode.py [--context 0,32768,131072,524288] [--replays 200] [--json F]
         scripts/bench_torch_decode.py --self-test      # pure-Python checks, no torch or GPU needed

Needs torch with CUDA (and numpy is not needed). --compile additionally runs the step through
torch.compile (inductor, no autotuning, no inductor cudagraphs) before capturing the same one graph;
it is opt-in and compiles once per context.
"""
import argparse
import dataclasses
import gc
import json
import math
import os
import sys
import time

GIB = 1024 ** 3


# ----------------------------------------------------------------------------------------------------
# Pure-Python pieces (no torch): geometry, byte counts, RoPE frequencies, statistics, formatting.
# ----------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Geometry:
    hidden: int = 4096
    layers: int = 32
    heads: int = 32
    kv_heads: int = 8
    head_dim: int = 128
    intermediate: int = 14336
    vocab: int = 128256
    rope_theta: float = 500000.0
    rope_factor: float = 8.0
    rope_low_freq_factor: float = 1.0
    rope_high_freq_factor: float = 4.0
    rope_original_max_positions: int = 8192
    eps: float = 1e-5

    @property
    def q_dim(self):
        return self.heads * self.head_dim

    @property
    def kv_dim(self):
        return self.kv_heads * self.head_dim

    @property
    def group(self):
        return self.heads // self.kv_heads


LLAMA3_8B = Geometry()
BF16_BYTES = 2


def layer_params(g):
    """Parameters of one decoder layer (fused QKV, o_proj, fused gate/up, down, two norms)."""
    qkv = (g.q_dim + 2 * g.kv_dim) * g.hidden
    wo = g.hidden * g.q_dim
    gate_up = 2 * g.intermediate * g.hidden
    down = g.hidden * g.intermediate
    return qkv + wo + gate_up + down + 2 * g.hidden


def weight_bytes(g, dtype_bytes=BF16_BYTES):
    """All weights held on the GPU: embedding, layers, final norm, untied lm_head."""
    params = g.vocab * g.hidden + g.layers * layer_params(g) + g.hidden + g.vocab * g.hidden
    return params * dtype_bytes


def weight_bytes_read_per_token(g, dtype_bytes=BF16_BYTES):
    """Weights a decode step must read: every layer, final norm, lm_head and one embedding row."""
    params = g.hidden + g.layers * layer_params(g) + g.hidden + g.vocab * g.hidden
    return params * dtype_bytes


def kv_bytes(g, context, dtype_bytes=BF16_BYTES):
    """K and V of every layer for context + 1 positions (the context plus the decoded token)."""
    return g.layers * 2 * g.kv_heads * (context + 1) * g.head_dim * dtype_bytes


def rope_table_bytes(g, context, dtype_bytes=BF16_BYTES):
    return 2 * (context + 1) * g.head_dim * dtype_bytes


def context_bytes_needed(g, context, variant):
    """What a context adds on top of the weights: KV cache, RoPE tables, and for repeat_interleave the
    expanded K and V of one layer (the graph's pool reuses them across layers)."""
    need = kv_bytes(g, context) + rope_table_bytes(g, context)
    if variant == "repeat_interleave":
        need += 2 * g.heads * (context + 1) * g.head_dim * BF16_BYTES
    return need


def floor_ms(g, context, bandwidth_bytes_per_s):
    """Memory-bandwidth floor: (weight bytes read per token + KV bytes) / bandwidth, in ms."""
    if not bandwidth_bytes_per_s or bandwidth_bytes_per_s <= 0:
        return None
    return (weight_bytes_read_per_token(g) + kv_bytes(g, context)) / bandwidth_bytes_per_s * 1e3


def llama3_inv_freq(g):
    """transformers' _compute_llama3_parameters (same order of operations), in float64."""
    half = g.head_dim // 2
    inv = [g.rope_theta ** (-(2.0 * j) / g.head_dim) for j in range(half)]
    old_ctx = float(g.rope_original_max_positions)
    low_freq_wavelen = old_ctx / g.rope_low_freq_factor
    high_freq_wavelen = old_ctx / g.rope_high_freq_factor
    out = []
    for f in inv:
        wavelen = 2.0 * math.pi / f
        llama = f / g.rope_factor if wavelen > low_freq_wavelen else f
        smooth = (old_ctx / wavelen - g.rope_low_freq_factor) / (g.rope_high_freq_factor - g.rope_low_freq_factor)
        smoothed = (1.0 - smooth) * llama / g.rope_factor + smooth * llama
        is_medium = not (wavelen < high_freq_wavelen) and not (wavelen > low_freq_wavelen)
        out.append(smoothed if is_medium else llama)
    return out


def parse_contexts(text):
    """'0,32768,128k,1M' -> [0, 32768, 131072, 1048576]; k/K = 1024, m/M = 1048576."""
    out = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        mult = 1
        if item[-1] in "kK":
            mult, item = 1024, item[:-1]
        elif item[-1] in "mM":
            mult, item = 1024 * 1024, item[:-1]
        try:
            value = int(item) * mult
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad context length '{raw.strip()}' (want e.g. 0,32768,128k)")
        if value < 0:
            raise argparse.ArgumentTypeError(f"context length must be >= 0, got {value}")
        if value not in out:
            out.append(value)
    if not out:
        raise argparse.ArgumentTypeError("--context needs at least one length")
    return out


def percentile(values, q):
    """Linear-interpolation percentile (numpy's default method), q in [0, 100]."""
    if not values:
        raise ValueError("percentile of no values")
    s = sorted(values)
    if len(s) == 1:
        return float(s[0])
    rank = (len(s) - 1) * q / 100.0
    lo = int(math.floor(rank))
    hi = min(lo + 1, len(s) - 1)
    return float(s[lo] + (s[hi] - s[lo]) * (rank - lo))


def summarize_ms(values):
    return {
        "p50_ms": percentile(values, 50),
        "p99_ms": percentile(values, 99),
        "mean_ms": float(sum(values) / len(values)),
        "min_ms": float(min(values)),
        "max_ms": float(max(values)),
        "n": len(values),
    }


def spread_pct(a, b):
    """|a - b| relative to the smaller of the two, in percent."""
    lo = min(a, b)
    return abs(a - b) / lo * 100.0 if lo > 0 else float("inf")


def fmt(value, spec):
    return "-" if value is None else format(value, spec)


TABLE_HEADER = (f"{'context':>9} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8} {'run2 p50':>8} {'spread%':>7} "
                f"{'floor ms':>8} {'x floor':>7} {'peak GiB':>8}  status")


def table_row(row):
    if row.get("status") != "ok":
        return f"{row['context']:>9} {'':>8} {'':>8} {'':>8} {'':>8} {'':>7} {fmt(row.get('floor_ms'), '8.3f')} " \
               f"{'':>7} {'':>8}  {row.get('status')}: {row.get('reason', '')}"
    r1, r2 = row["run1"], row["run2"]
    ratio = r1["p50_ms"] / row["floor_ms"] if row.get("floor_ms") else None
    agree = "ok" if row["spread_pct"] <= 1.0 else "SPREAD>1%"
    backend = f" (sdpa {row['sdpa_backend']})" if row.get("sdpa_backend") else ""
    return (f"{row['context']:>9} {r1['p50_ms']:8.3f} {r1['p99_ms']:8.3f} {r1['mean_ms']:8.3f} "
            f"{r2['p50_ms']:8.3f} {row['spread_pct']:7.2f} {fmt(row.get('floor_ms'), '8.3f')} "
            f"{fmt(ratio, '7.2f')} {row['peak_gib']:8.2f}  {agree}{backend}")


def write_json(path, doc):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def build_parser():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--context", type=parse_contexts, default=parse_contexts("0,32768,131072,524288"),
                    help="comma-separated context lengths (k/M suffixes allowed); the cache holds context + 1 "
                         "positions (default 0,32768,131072,524288)")
    ap.add_argument("--replays", type=int, default=200, help="timed graph replays per run (default 200)")
    ap.add_argument("--warmup", type=int, default=20, help="untimed replays before each run (default 20)")
    ap.add_argument("--variant", choices=("sdpa", "repeat_interleave"), default="sdpa",
                    help="sdpa: SDPA with enable_gqa over the 8 KV heads (default); repeat_interleave: expand "
                         "K/V to 32 heads first (slow reference, side note only)")
    ap.add_argument("--sdpa-backend", choices=("best", "auto", "flash", "efficient", "cudnn", "math"),
                    default="best",
                    help="best (default): per context, capture and briefly time SDPA unrestricted (auto) and "
                         "restricted to flash, cudnn and efficient, and measure the fastest; auto: PyTorch's own "
                         "choice; or one backend")
    ap.add_argument("--compile", action="store_true",
                    help="run the step through torch.compile (inductor, default mode) before capturing the "
                         "graph; opt-in, compiles once per context")
    ap.add_argument("--json", metavar="FILE", help="write the figures as JSON to FILE")
    ap.add_argument("--bw-gib", type=float, default=4.0,
                    help="size of the device-to-device copy for the bandwidth ceiling, GiB (default 4, >= 4 "
                         "recommended)")
    ap.add_argument("--ceiling-reps", type=int, default=10,
                    help="timed repetitions of the copy and of the matmul (default 10; median reported)")
    ap.add_argument("--mm-n", type=int, default=8192, help="square bf16 matmul size for the FLOP ceiling "
                                                           "(default 8192)")
    ap.add_argument("--bandwidth-tbs", type=float, default=None,
                    help="use this bandwidth (TB/s, read + write) for the floor instead of the measured one")
    ap.add_argument("--layers", type=int, default=LLAMA3_8B.layers,
                    help="number of layers (default 32 = Llama-3-8B; smaller only for smoke tests)")
    ap.add_argument("--seed", type=int, default=0, help="seed for the random weights (default 0)")
    ap.add_argument("--std", type=float, default=0.02, help="std of the random weights (default 0.02)")
    ap.add_argument("--self-test", action="store_true",
                    help="check the pure-Python pieces (byte counts against DESIGN.md's floors, RoPE, stats, "
                         "parsing) and exit; needs no torch")
    return ap


def self_test():
    g = LLAMA3_8B
    # Byte counts against DESIGN.md §9: floors 3.49 / 4.49 / 7.49 / 19.47 ms (and 35.5 ms at 1M) at 4.3 TB/s.
    assert layer_params(g) == 218_103_808 + 8192, layer_params(g)
    assert weight_bytes_read_per_token(g) == 2 * (32 * layer_params(g) + 128256 * 4096 + 2 * 4096)
    assert kv_bytes(g, 0) == 32 * 2 * 8 * 128 * 2
    assert kv_bytes(g, 131072) == 131073 * 131072
    for ctx, want in ((0, 3.49), (32768, 4.49), (131072, 7.49), (524288, 19.47), (1048576, 35.45)):
        got = floor_ms(g, ctx, 4.3e12)
        assert abs(got - want) < 0.006, (ctx, got, want)
    assert floor_ms(g, 0, 0) is None
    assert 16.0e9 < weight_bytes(g) < 16.1e9, weight_bytes(g)
    assert context_bytes_needed(g, 524288, "sdpa") > 64 * GIB
    assert context_bytes_needed(g, 100, "repeat_interleave") > context_bytes_needed(g, 100, "sdpa")
    # llama3 RoPE: the highest frequencies are kept, the lowest divided by 8, the band in between smooth.
    inv = llama3_inv_freq(g)
    assert len(inv) == 64
    assert inv[0] == 1.0
    plain = [g.rope_theta ** (-(2.0 * j) / 128) for j in range(64)]
    for j in range(64):
        wavelen = 2 * math.pi / plain[j]
        if wavelen < 2048:
            assert inv[j] == plain[j]
        elif wavelen > 8192:
            assert abs(inv[j] - plain[j] / 8) < 1e-18
        else:
            assert plain[j] / 8 <= inv[j] <= plain[j]
    assert all(inv[j] > inv[j + 1] for j in range(63)), "inv_freq must decrease"
    # Statistics and parsing.
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([5.0], 99) == 5.0
    assert abs(percentile(list(range(101)), 99) - 99.0) < 1e-12
    s = summarize_ms([1.0, 2.0, 3.0, 10.0])
    assert s["p50_ms"] == 2.5 and s["mean_ms"] == 4.0 and s["n"] == 4
    assert abs(spread_pct(10.0, 10.1) - 1.0) < 1e-9 and spread_pct(10.1, 10.0) == spread_pct(10.0, 10.1)
    assert parse_contexts("0, 32768,128k,1M,0") == [0, 32768, 131072, 1048576]
    for bad in ("", "x", "-1", "12q"):
        try:
            parse_contexts(bad)
        except argparse.ArgumentTypeError:
            pass
        else:
            raise AssertionError(f"parse_contexts accepted {bad!r}")
    a = build_parser().parse_args([])
    assert a.context == [0, 32768, 131072, 524288] and a.replays == 200 and a.variant == "sdpa"
    a = build_parser().parse_args(["--context", "4096", "--variant", "repeat_interleave", "--json", "x.json"])
    assert a.context == [4096] and a.variant == "repeat_interleave" and a.json == "x.json"
    row_ok = {"context": 0, "status": "ok", "floor_ms": 3.5, "spread_pct": 0.3, "peak_gib": 15.0,
              "run1": summarize_ms([5.9, 6.0]), "run2": summarize_ms([5.95])}
    assert "ok" in table_row(row_ok)
    assert "skipped" in table_row({"context": 1, "status": "skipped", "reason": "oom", "floor_ms": None})
    print("self-test: 0 failed (byte counts match DESIGN.md's floors, llama3 RoPE, stats, parsing)")


# ----------------------------------------------------------------------------------------------------
# Torch pieces.
# ----------------------------------------------------------------------------------------------------

def _events(torch, n):
    return [torch.cuda.Event(enable_timing=True) for _ in range(n)]


def measure_bandwidth(torch, gib, reps):
    """Median bytes/s of a device-to-device copy of `gib` GiB, counting bytes read + written."""
    n = int(gib * GIB)
    src = torch.empty(n, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    src.fill_(1)
    for _ in range(3):
        dst.copy_(src)
    start, end = _events(torch, reps), _events(torch, reps)
    for i in range(reps):
        start[i].record()
        dst.copy_(src)
        end[i].record()
    torch.cuda.synchronize()
    ms = [s.elapsed_time(e) for s, e in zip(start, end)]
    del src, dst
    torch.cuda.empty_cache()
    return 2.0 * n / (percentile(ms, 50) / 1e3), ms


def measure_matmul(torch, n, reps):
    """Median bf16 FLOP/s of an n x n x n matmul on random data."""
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    c = torch.empty(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        torch.mm(a, b, out=c)
    start, end = _events(torch, reps), _events(torch, reps)
    for i in range(reps):
        start[i].record()
        torch.mm(a, b, out=c)
        end[i].record()
    torch.cuda.synchronize()
    ms = [s.elapsed_time(e) for s, e in zip(start, end)]
    del a, b, c
    torch.cuda.empty_cache()
    return 2.0 * n ** 3 / (percentile(ms, 50) / 1e3), ms


class Weights:
    """Random bf16 weights with fused QKV and gate/up, made directly on `device`."""

    def __init__(self, torch, g, device, dtype, std, seed):
        gen = torch.Generator(device=device)
        gen.manual_seed(seed)

        def rand(*shape):
            t = torch.empty(*shape, dtype=dtype, device=device)
            t.normal_(0.0, std, generator=gen)
            return t

        def ones(n):
            return torch.ones(n, dtype=dtype, device=device)

        self.embed = rand(g.vocab, g.hidden)
        self.layers = []
        for _ in range(g.layers):
            self.layers.append({
                "attn_norm": ones(g.hidden),
                "wqkv": rand(g.q_dim + 2 * g.kv_dim, g.hidden),
                "wo": rand(g.hidden, g.q_dim),
                "ffn_norm": ones(g.hidden),
                "wgu": rand(2 * g.intermediate, g.hidden),
                "wdown": rand(g.hidden, g.intermediate),
            })
        self.final_norm = ones(g.hidden)
        self.lm_head = rand(g.vocab, g.hidden)

    def nbytes(self):
        tensors = [self.embed, self.final_norm, self.lm_head] + [t for layer in self.layers for t in layer.values()]
        return sum(t.numel() * t.element_size() for t in tensors)


def rope_tables(torch, g, positions, device, dtype):
    """cos and sin_signed tables [positions, head_dim]: cos = cat(cos f, cos f), sin_signed = cat(-sin f, sin f)
    so that x*cos + roll(x, head_dim/2)*sin_signed == x*cos + rotate_half(x)*sin (transformers' RoPE)."""
    inv = torch.tensor(llama3_inv_freq(g), dtype=torch.float32, device=device)
    pos = torch.arange(positions, dtype=torch.float32, device=device)
    freqs = torch.outer(pos, inv)  # float32 product, as transformers does
    cos = torch.cos(freqs)
    sin = torch.sin(freqs)
    cos_t = torch.cat((cos, cos), dim=-1).to(dtype)
    sin_t = torch.cat((-sin, sin), dim=-1).to(dtype)
    del inv, pos, freqs, cos, sin
    return cos_t, sin_t


def make_rms_norm(torch):
    F = torch.nn.functional
    fused = getattr(F, "rms_norm", None)
    if fused is not None:
        def rms_norm(x, w, eps):
            return fused(x, (x.shape[-1],), w, eps)
    else:  # torch < 2.4
        def rms_norm(x, w, eps):
            xf = x.float()
            return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype) * w
    return rms_norm


def make_step(torch, g, w, caches, cos_t, sin_t, token, pos, variant):
    """One decode step; returns the logits [1, vocab] and writes the argmax token into `token`."""
    F = torch.nn.functional
    rms_norm = make_rms_norm(torch)
    qk_heads = g.heads + g.kv_heads
    qk_dim = qk_heads * g.head_dim
    half = g.head_dim // 2
    inter = g.intermediate
    eps = g.eps
    group = g.group

    def step():
        x = F.embedding(token, w.embed)               # [1, hidden]
        cos = cos_t.index_select(0, pos)              # [1, head_dim], shared by all layers
        sin = sin_t.index_select(0, pos)
        for layer, (kc, vc) in zip(w.layers, caches):
            h = rms_norm(x, layer["attn_norm"], eps)
            qkv = F.linear(h, layer["wqkv"])           # [1, (32 + 8 + 8) * 128]
            qk = qkv[:, :qk_dim].view(qk_heads, g.head_dim)
            qk = torch.addcmul(qk * cos, qk.roll(half, -1), sin)   # RoPE on q and k at once
            q = qk[:g.heads].view(1, g.heads, 1, g.head_dim)
            k = qk[g.heads:].view(1, g.kv_heads, 1, g.head_dim)
            v = qkv[:, qk_dim:].view(1, g.kv_heads, 1, g.head_dim)
            kc.index_copy_(2, pos, k)
            vc.index_copy_(2, pos, v)
            if variant == "sdpa":
                a = F.scaled_dot_product_attention(q, kc, vc, enable_gqa=True)
            else:
                a = F.scaled_dot_product_attention(q, kc.repeat_interleave(group, dim=1),
                                                   vc.repeat_interleave(group, dim=1))
            x = torch.addmm(x, a.view(1, g.q_dim), layer["wo"].t())
            h = rms_norm(x, layer["ffn_norm"], eps)
            gu = F.linear(h, layer["wgu"])              # [1, 2 * intermediate]
            x = torch.addmm(x, F.silu(gu[:, :inter]) * gu[:, inter:], layer["wdown"].t())
        x = rms_norm(x, w.final_norm, eps)
        logits = F.linear(x, w.lm_head)
        token.copy_(logits.argmax(dim=-1))
        return logits

    return step


def sdpa_context(torch, backend):
    """A context manager restricting SDPA to one backend, or a no-op for 'auto'."""
    import contextlib
    if backend == "auto":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel
    names = {"flash": "FLASH_ATTENTION", "efficient": "EFFICIENT_ATTENTION", "cudnn": "CUDNN_ATTENTION",
             "math": "MATH"}
    return sdpa_kernel([getattr(SDPBackend, names[backend])])


def is_oom(torch, exc):
    oom_types = tuple(t for t in (getattr(torch, "OutOfMemoryError", None),
                                  getattr(torch.cuda, "OutOfMemoryError", None)) if t is not None)
    if oom_types and isinstance(exc, oom_types):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def timed_replays(torch, graph, warmup, replays):
    for _ in range(warmup):
        graph.replay()
    torch.cuda.synchronize()
    start, end = _events(torch, replays), _events(torch, replays)
    for i in range(replays):
        start[i].record()
        graph.replay()
        end[i].record()
    torch.cuda.synchronize()
    return [s.elapsed_time(e) for s, e in zip(start, end)]


SDPA_CANDIDATES = ("auto", "flash", "cudnn", "efficient")


def capture_graph(torch, step, backend):
    """Warm up on a side stream (as the CUDA-graph docs require), then capture one step in one graph."""
    with sdpa_context(torch, backend), torch.no_grad():
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                step()
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.synchronize()
        torch.cuda.empty_cache()  # hand the warm-up's blocks back before the graph's private pool
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            logits = step()
    torch.cuda.synchronize()
    return graph, logits


def first_line(exc, limit=300):
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:limit] if text else ''}"


def run_context(torch, g, w, context, args, bandwidth):
    """Builds the cache, captures the graph, times it twice; returns the JSON row."""
    row = {"context": context, "variant": args.variant, "cache_positions": context + 1,
           "kv_bytes": kv_bytes(g, context), "floor_ms": floor_ms(g, context, bandwidth)}
    need = context_bytes_needed(g, context, args.variant)
    free, total = torch.cuda.mem_get_info()
    margin = 1 * GIB
    if need + margin > free:
        row.update(status="skipped", reason=f"needs {need / GIB:.1f} GiB (KV {row['kv_bytes'] / GIB:.1f} GiB) + "
                                            f"{margin / GIB:.0f} GiB margin, {free / GIB:.1f} GiB free of "
                                            f"{total / GIB:.1f} GiB")
        return row

    state = {}
    try:
        torch.cuda.reset_peak_memory_stats()
        dev, dt = "cuda", torch.bfloat16
        gen = torch.Generator(device=dev)
        gen.manual_seed(args.seed + 1 + context)
        caches = []
        for _ in range(g.layers):
            kc = torch.empty(1, g.kv_heads, context + 1, g.head_dim, dtype=dt, device=dev).normal_(generator=gen)
            vc = torch.empty(1, g.kv_heads, context + 1, g.head_dim, dtype=dt, device=dev).normal_(generator=gen)
            caches.append((kc, vc))
        state["caches"] = caches
        state["cos"], state["sin"] = rope_tables(torch, g, context + 1, dev, dt)
        state["token"] = torch.randint(0, g.vocab, (1,), dtype=torch.int64, device=dev, generator=gen)
        state["pos"] = torch.full((1,), context, dtype=torch.int64, device=dev)
        step = make_step(torch, g, w, caches, state["cos"], state["sin"], state["token"], state["pos"],
                         args.variant)
        if args.compile:
            step = torch.compile(step, fullgraph=True, dynamic=False)

        backend = args.sdpa_backend
        if backend == "best":
            # A short timing of every SDPA backend that accepts these inputs; the fastest is measured below.
            trials = {}
            for cand in SDPA_CANDIDATES:
                captured = None  # (graph, its output), kept alive while the graph is replayed
                try:
                    captured = capture_graph(torch, step, cand)
                    trials[cand] = {"p50_ms": percentile(timed_replays(torch, captured[0], 5, 30), 50)}
                except Exception as exc:  # noqa: BLE001 - a backend that rejects the inputs is skipped
                    if is_oom(torch, exc):
                        raise
                    trials[cand] = {"error": first_line(exc, 160)}
                    torch.cuda.synchronize()
                finally:
                    captured = None
                    gc.collect()
                    torch.cuda.empty_cache()
            row["sdpa_trials"] = trials
            timed = {k: v["p50_ms"] for k, v in trials.items() if "p50_ms" in v}
            if not timed:
                raise RuntimeError("no SDPA backend accepted the inputs: " +
                                   "; ".join(f"{k}: {v.get('error')}" for k, v in trials.items()))
            backend = min(timed, key=timed.get)
        row["sdpa_backend"] = backend

        t0 = time.perf_counter()
        state["graph"], state["logits"] = capture_graph(torch, step, backend)
        row["capture_s"] = round(time.perf_counter() - t0, 2)
        graph = state["graph"]

        run1 = timed_replays(torch, graph, args.warmup, args.replays)
        run2 = timed_replays(torch, graph, args.warmup, args.replays)
        row["peak_gib"] = torch.cuda.max_memory_allocated() / GIB
        row["run1"], row["run2"] = summarize_ms(run1), summarize_ms(run2)
        row["run1_ms"], row["run2_ms"] = [round(t, 5) for t in run1], [round(t, 5) for t in run2]
        row["spread_pct"] = spread_pct(row["run1"]["p50_ms"], row["run2"]["p50_ms"])
        row["runs_agree_within_1pct"] = row["spread_pct"] <= 1.0
        row["p50_ms"], row["p99_ms"], row["mean_ms"] = (row["run1"]["p50_ms"], row["run1"]["p99_ms"],
                                                        row["run1"]["mean_ms"])
        row["run2_p50_ms"] = row["run2"]["p50_ms"]
        if row["floor_ms"]:
            row["p50_over_floor"] = row["p50_ms"] / row["floor_ms"]
        row["status"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure of one context is reported, the run goes on
        if is_oom(torch, exc):
            row.update(status="skipped", reason="out of memory: " + first_line(exc, 200))
        else:
            row.update(status="error", reason=first_line(exc))
        try:
            torch.cuda.synchronize()
        except Exception:  # noqa: BLE001
            pass
    finally:
        state.clear()
        step = None
        gc.collect()
        torch.cuda.empty_cache()
    return row


def main():
    args = build_parser().parse_args()
    if args.self_test:
        self_test()
        return 0
    if args.replays < 1 or args.warmup < 0:
        sys.exit("--replays must be >= 1 and --warmup >= 0")
    if args.replays < 200 or args.warmup < 20:
        print(f"note: --replays {args.replays} / --warmup {args.warmup} is below the 200 / 20 the reference "
              f"figures use", file=sys.stderr)
    try:
        import torch
    except ImportError as exc:
        sys.exit(f"this benchmark needs PyTorch with CUDA: {exc}")
    if not torch.cuda.is_available():
        sys.exit("no CUDA device visible to PyTorch; this benchmark needs a GPU")
    F = torch.nn.functional
    if args.variant == "sdpa" and not hasattr(F, "scaled_dot_product_attention"):
        sys.exit(f"torch {torch.__version__} has no scaled_dot_product_attention")

    if args.compile and args.sdpa_backend == "best":
        # Compiled code is cached across sdpa_kernel contexts, so trying backends would time one of them
        # several times; compile with PyTorch's own choice instead.
        print("note: --compile uses --sdpa-backend auto (backend trials need one compile each)", file=sys.stderr)
        args.sdpa_backend = "auto"
    if args.layers < 1:
        sys.exit("--layers must be >= 1")
    g = dataclasses.replace(LLAMA3_8B, layers=args.layers)
    props = torch.cuda.get_device_properties(0)
    doc = {
        "benchmark": "pytorch_full_attention_decode",
        "device": torch.cuda.get_device_name(0),
        "device_total_gib": props.total_memory / GIB,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "variant": args.variant,
        "sdpa_backend": args.sdpa_backend,
        "compile": args.compile,
        "geometry": dataclasses.asdict(g),
        "dtype": "bfloat16",
        "batch": 1,
        "replays": args.replays,
        "warmup": args.warmup,
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
    }
    print(f"device: {doc['device']} ({doc['device_total_gib']:.1f} GiB), torch {torch.__version__}, "
          f"CUDA {torch.version.cuda}")
    if g.layers != LLAMA3_8B.layers:
        print(f"warning: --layers {g.layers}: not the Llama-3-8B geometry; figures are for smoke tests only")

    bw, bw_ms = measure_bandwidth(torch, args.bw_gib, args.ceiling_reps)
    flops, mm_ms = measure_matmul(torch, args.mm_n, args.ceiling_reps)
    doc["measured_bandwidth_bytes_per_s"] = bw
    doc["bandwidth_copy_gib"] = args.bw_gib
    doc["bandwidth_copy_ms"] = bw_ms
    doc["measured_bf16_matmul_flops"] = flops
    doc["matmul_n"] = args.mm_n
    doc["matmul_ms"] = mm_ms
    floor_bw = args.bandwidth_tbs * 1e12 if args.bandwidth_tbs else bw
    doc["floor_bandwidth_bytes_per_s"] = floor_bw
    print(f"memory bandwidth ceiling: {bw / 1e12:.3f} TB/s (copy of {args.bw_gib:g} GiB, read + written, "
          f"median of {args.ceiling_reps})")
    print(f"bf16 matmul ceiling:      {flops / 1e12:.1f} TFLOP/s ({args.mm_n}^3, median of {args.ceiling_reps})")
    if args.bandwidth_tbs:
        print(f"floors use --bandwidth-tbs {args.bandwidth_tbs} TB/s")

    t0 = time.perf_counter()
    w = Weights(torch, g, "cuda", torch.bfloat16, args.std, args.seed)
    torch.cuda.synchronize()
    doc["weight_bytes"] = w.nbytes()
    doc["weight_bytes_read_per_token"] = weight_bytes_read_per_token(g)
    assert doc["weight_bytes"] == weight_bytes(g), (doc["weight_bytes"], weight_bytes(g))
    print(f"weights: {doc['weight_bytes'] / GIB:.2f} GiB on the GPU ({doc['weight_bytes'] / 1e9:.2f} GB), "
          f"{doc['weight_bytes_read_per_token'] / 1e9:.3f} GB read per token; made in "
          f"{time.perf_counter() - t0:.1f} s")
    doc["rows"] = []
    print()
    print(f"variant {args.variant}, sdpa backend {args.sdpa_backend}{', torch.compile' if args.compile else ''}, "
          f"{args.warmup} warm-up + {args.replays} timed replays, two runs per context")
    print(TABLE_HEADER)
    for context in args.context:
        row = run_context(torch, g, w, context, args, floor_bw)
        doc["rows"].append(row)
        print(table_row(row), flush=True)
        if args.json:
            write_json(args.json, doc)
    if any(r.get("status") == "ok" and not r["runs_agree_within_1pct"] for r in doc["rows"]):
        print("warning: the two runs of some context differ by more than 1%; rerun on a quieter machine")
    print("\nKV bytes per context: " + ", ".join(f"{r['context']}: {r['kv_bytes'] / GIB:.2f} GiB"
                                                  for r in doc["rows"]))
    if args.json:
        write_json(args.json, doc)
        print(f"wrote {args.json}")
    return 1 if any(r.get("status") == "error" for r in doc["rows"]) else 0


if __name__ == "__main__":
    sys.exit(main())
