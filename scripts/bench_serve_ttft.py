#!/usr/bin/env python3
"""Time to first token for a prompt over a long document: cold (the whole prompt prefilled) vs reusing a
prebuilt context (POST /v1/contexts once; then only the question is prefilled). Runs against a server
that is already up (`ra serve`, or ra-serve-inproc), on a byte-level model (one token per byte, plus
BOS: the demo model, needle-byte-13m).

    build/launcher/ra serve --model ../shared/models/needle-byte-13m --mode retrieval --ctx 17408 --port 8080 &
    python3 scripts/bench_serve_ttft.py --url http://127.0.0.1:8080 --model needle-byte-13m --tokens 16384

Time to first token is measured by the client (request sent -> first streamed text) and reported by the
server (timings.first_token_ms: admitted -> first token). Cold runs come first, while no context is
registered (the server reuses only registered contexts), each with another question so that none
continues the one before.
"""
import argparse
import json
import statistics
import time
import urllib.request


def document(n_bytes):
    text, i = "", 0
    while len(text) < n_bytes:
        text += f"Line {i}: the value of key {i} is {i * 7919 % 10007}. "
        i += 1
    return text[:n_bytes]


def post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    return urllib.request.urlopen(req, timeout=3600)


def first_token(url, body):
    """Streams a completion; returns (client seconds to the first text, server timings)."""
    start = time.perf_counter()
    first, timings, text = None, None, ""
    with post(url + "/v1/completions", {**body, "stream": True, "stream_options": {"include_usage": True}}) as res:
        for raw in res:
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                raise RuntimeError(chunk["error"])
            if chunk["choices"]:
                text += chunk["choices"][0]["text"]
            if first is None and chunk["choices"] and chunk["choices"][0]["text"]:
                first = time.perf_counter() - start
            if chunk.get("timings"):
                timings = chunk["timings"]
                usage = chunk["usage"]
    return first, timings, usage, text


def question(a, run):
    questions = a.question or [" {letter}. What is the value of key {number}?"]
    return questions[run % len(questions)].format(letter=chr(ord("A") + run % 26), number=10 + run)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8080")
    p.add_argument("--model", default="demo")
    p.add_argument("--tokens", type=int, default=16384, help="document tokens (bytes + BOS on a byte model)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--document-file", help="the document's text (its first --tokens - 1 bytes); default: "
                   "generated lines")
    p.add_argument("--question", action="append",
                   help="run r asks the r-th (cycling); {letter} is A, B, ... and {number} 10 + r. Questions should "
                   "differ from their first tokens on, so that a reused run continues the context itself and not "
                   "the run before (default: ' {letter}. What is the value of key {number}?')")
    p.add_argument("--max-tokens", type=int, default=8)
    a = p.parse_args()

    doc = open(a.document_file).read()[: a.tokens - 1] if a.document_file else document(a.tokens - 1)
    req = {"model": a.model, "max_tokens": a.max_tokens, "temperature": 0}
    rows = []
    for r in range(a.runs):
        client_s, t, usage, text = first_token(a.url, {**req, "prompt": doc + question(a, r)})
        rows.append(("cold", client_s, t, usage, text))
    with post(a.url + "/v1/contexts", {"model": a.model, "prompt": doc}) as res:
        ctx = json.load(res)
    for r in range(a.runs):
        client_s, t, usage, text = first_token(a.url, {**req, "context": ctx["id"], "prompt": question(a, r)})
        rows.append(("reused", client_s, t, usage, text))

    print(f"document: {ctx['tokens']} tokens, context built in {ctx['prefill_ms'] / 1e3:.2f} s")
    print(f"{'run':<7} {'prompt':>7} {'cached':>7} {'prefilled':>9} {'client TTFT s':>13} {'server TTFT s':>13}  text")
    cold_text = {}
    for i, (kind, client_s, t, usage, text) in enumerate(rows):
        run = i % a.runs
        note = ""
        if kind == "cold":
            cold_text[run] = text
        else:
            note = " (= cold)" if text == cold_text[run] else " (cold: " + json.dumps(cold_text[run]) + ")"
        print(f"{kind:<7} {usage['prompt_tokens']:>7} {usage['prompt_tokens_details']['cached_tokens']:>7} "
              f"{t['prefilled_tokens']:>9} {client_s:>13.3f} {t['first_token_ms'] / 1e3:>13.3f}  {json.dumps(text)}{note}")
    cold = statistics.median(r[1] for r in rows if r[0] == "cold")
    warm = statistics.median(r[1] for r in rows if r[0] == "reused")
    print(f"median client TTFT: cold {cold:.3f} s, reused {warm:.3f} s ({cold / warm:.0f}x)")


if __name__ == "__main__":
    main()
