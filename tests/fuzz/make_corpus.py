#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora (tests/fuzz/corpus/<target>/): small valid inputs of each
format, from which libFuzzer mutates. Run from the repository root; the output is committed."""
import json
import os
import re
import struct

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(target, name, data):
    d = os.path.join(root, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


# safetensors: 8-byte little-endian header length, JSON header, data.
def safetensors(tensors, meta=True):
    header, blob = {}, b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + len(raw)]}
        blob += raw
    if meta:
        header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + blob


put("safetensors_fuzz", "two_tensors", safetensors({
    "a": ("F32", [2, 3], struct.pack("<6f", *range(6))),
    "b.weight": ("BF16", [4], b"\x80\x3f" * 4)}))
put("safetensors_fuzz", "empty_tensor", safetensors({"e": ("F16", [0, 5], b"")}, meta=False))

put("hf_config_fuzz", "llama", json.dumps({
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64, "intermediate_size": 172,
    "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2, "vocab_size": 260,
    "max_position_embeddings": 1024, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": False,
    "bos_token_id": 256, "eos_token_id": 257, "torch_dtype": "bfloat16"}))
put("hf_config_fuzz", "llama3_rope_scaling", json.dumps({
    "architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 172, "num_attention_heads": 4,
    "num_key_value_heads": 4, "num_hidden_layers": 1, "vocab_size": 300, "max_position_embeddings": 131072,
    "rope_theta": 500000.0, "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                              "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
    "eos_token_id": [1, 2]}))

# .npy version 1.0: magic, version, header length, a Python dict literal padded to 64 bytes.
def npy(shape, values):
    d = "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }" % "".join(f"{s}, " for s in shape)
    pad = 64 - (10 + len(d) + 1) % 64
    h = (d + " " * pad + "\n").encode()
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h + struct.pack(f"<{len(values)}f", *values)


put("npy_fuzz", "matrix", npy([2, 3], [float(i) for i in range(6)]))
put("npy_fuzz", "scalar_vector", npy([4], [1.0, -2.0, 0.5, 3.0]))

repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
for name in sorted(os.listdir(os.path.join(repo, "configs"))):
    if name.endswith(".yaml"):
        with open(os.path.join(repo, "configs", name), "rb") as f:
            put("run_config_fuzz", name, f.read())

put("openai_request_fuzz", "completion", json.dumps({
    "model": "m", "prompt": "Once upon a time", "max_tokens": 16, "temperature": 0.7, "top_p": 0.9, "seed": 3,
    "stop": ["\n", "."], "stream": True}))
put("openai_request_fuzz", "completion_tokens", json.dumps({"prompt": [1, 2, 3], "max_tokens": 1, "stop": "x"}))
put("openai_request_fuzz", "chat", json.dumps({
    "model": "m", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
    "max_tokens": 8, "stream": False, "context": "ctx-1"}))
put("openai_request_fuzz", "context", json.dumps({"prompt": "A long document."}))

# tokenizer_config.json with the chat templates the server knows (from tests/serve/tiny_chat_model.cpp).
src = open(os.path.join(repo, "tests", "serve", "tiny_chat_model.cpp")).read()
templates = {}
for var in ("kLlama3ChatTemplate", "kLlama2ChatTemplate"):
    body = src.split(f"const char* const {var} =", 1)[1].split(";", 1)[0]
    templates[var] = "".join(bytes(s, "utf-8").decode("unicode_escape") for s in re.findall(r'"((?:[^"\\]|\\.)*)"', body))
put("tokenizer_config_fuzz", "llama3", json.dumps({
    "chat_template": templates["kLlama3ChatTemplate"], "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}))
put("tokenizer_config_fuzz", "llama2", json.dumps({
    "chat_template": templates["kLlama2ChatTemplate"], "bos_token": {"content": "<s>", "__type": "AddedToken"},
    "eos_token": "</s>"}))
put("tokenizer_config_fuzz", "named_list", json.dumps({
    "chat_template": [{"name": "default", "template": templates["kLlama3ChatTemplate"]},
                      {"name": "tool_use", "template": "x"}], "bos_token": "<|begin_of_text|>"}))

# retriever_messages_fuzz: [index byte] then [kind][u16 length][payload] messages (see the target). A
# build of both layers (10 keys at positions 2.., 3 training and 4 window queries per query head), then
# decode steps that evict positions 12, 13, and a rewind.
HD, KV_HEADS, Q_HEADS = 8, 2, 4


def message(kind, payload):
    return bytes([kind]) + struct.pack("<H", len(payload)) + payload


def build(layer, n_keys=10, n_train=3, n_window=4):
    p = struct.pack("<IIqqqIHHII", layer, n_train, 2, n_keys, n_window, 0, 0, 0, 0, 0)  # f32 rows, no key queries
    p += struct.pack(f"<{KV_HEADS * 2 * n_keys * HD}f", *[((i * 7) % 13 - 6) / 8 for i in range(KV_HEADS * 2 * n_keys * HD)])
    p += struct.pack(f"<{Q_HEADS * (n_train + n_window) * HD}f", *[((i * 5) % 11 - 5) / 8 for i in range(Q_HEADS * (n_train + n_window) * HD)])
    return message(3, p)


def step(layer, position, evict):
    p = struct.pack("<Iiiiqq", layer, 4, 0, 0, position, evict)
    p += struct.pack(f"<{Q_HEADS * HD}f", *[0.25] * (Q_HEADS * HD))
    if evict >= 0:
        p += struct.pack(f"<{2 * KV_HEADS * HD}f", *[0.5] * (2 * KV_HEADS * HD))
    return message(5, p)


for index, tag in ((0, "flat"), (1, "graph")):
    seq = bytes([index]) + build(0) + build(1)
    seq += step(0, 16, 12) + step(1, 16, 12) + step(0, 17, 13) + step(1, 17, 13)
    seq += message(9, struct.pack("<q", 14)) + step(0, 18, 14)
    put("retriever_messages_fuzz", f"build_and_decode_{tag}", seq)
