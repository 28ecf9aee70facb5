// The oracle: @huggingface/tokenizers (the reference library's JavaScript port) on a tokenizer folder
// and a corpus from make_corpus.mjs; writes what the C++ tokenizer must reproduce.
//
//   node oracle.mjs TOKENIZER_DIR CORPUS.bin EXPECTED.bin
//
// Each string's bytes are decoded with TextDecoder (ill-formed UTF-8 -> U+FFFD, maximal subparts; a
// leading byte order mark kept) and:
//   ids     = encode(text, add_special_tokens=false)
//   ids_t   = encode(text, add_special_tokens=true)            (the post-processor's template)
//   text    = decode(ids, skip_special_tokens=false)
//   text_s  = decode(ids_t, skip_special_tokens=true)
//   rand    = a random id sequence (seeded: any ids, byte tokens that make ill-formed UTF-8, special ids)
//   rtext   = decode(rand, skip_special_tokens=false), rtext_s = decode(rand, skip_special_tokens=true)
// always with clean_up_tokenization_spaces=false (a transformers-level option, not the tokenizer's).
//
// EXPECTED.bin: "RATE" u32 version=1, u32 count, then per string (u32 little-endian lengths, i32 ids):
//   ids, ids_t, text, text_s, rand, rtext, rtext_s
//
// One deliberate change to the port: its ByteFallback decoder turns an ill-formed run of <0xNN> pieces
// into U+FFFD per maximal subpart (TextDecoder), whereas the Rust reference (tokenizers
// src/decoders/byte_fallback.rs) emits one U+FFFD per byte; the Rust rule is patched in below.

import fs from 'node:fs';
import path from 'node:path';
import {Tokenizer, ByteFallbackDecoder} from '@huggingface/tokenizers';

ByteFallbackDecoder.prototype.decode_chain = function (tokens) {
  const out = [];
  let bytes = [];
  const flush = () => {
    if (bytes.length === 0) return;
    try {
      out.push(new TextDecoder('utf-8', {fatal: true, ignoreBOM: true}).decode(Uint8Array.from(bytes)));
    } catch {
      for (let i = 0; i < bytes.length; ++i) out.push('\uFFFD');
    }
    bytes = [];
  };
  for (const token of tokens) {
    let byte = null;
    if (token.length === 6 && token.startsWith('<0x') && token.endsWith('>')) {
      const v = parseInt(token.slice(3, 5), 16);
      if (!isNaN(v)) byte = v;
    }
    if (byte !== null) {
      bytes.push(byte);
    } else {
      flush();
      out.push(token);
    }
  }
  flush();
  return out;
};

const [dir, corpusPath, outPath] = process.argv.slice(2);
if (!dir || !corpusPath || !outPath) {
  console.error('usage: node oracle.mjs TOKENIZER_DIR CORPUS.bin EXPECTED.bin');
  process.exit(2);
}
const readJson = (name) => JSON.parse(fs.readFileSync(path.join(dir, name), 'utf8'));
const tokenizerJson = readJson('tokenizer.json');
const tokenizer = new Tokenizer(tokenizerJson, readJson('tokenizer_config.json'));

// Ids for the random sequences: byte tokens (single-byte characters of a byte-level vocabulary, or
// <0xNN> pieces), special tokens, and the whole id range.
const vocab = tokenizerJson.model.vocab;
const limit = [...Object.values(vocab), ...tokenizerJson.added_tokens.map((t) => t.id)].reduce((a, b) => Math.max(a, b), 0) + 1;
const special = tokenizerJson.added_tokens.map((t) => t.id);
const byteTokens = [];
if (tokenizerJson.decoder?.type === 'ByteLevel') {
  const printable = (b) => (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
  let n = 0;
  for (let b = 0; b < 256; ++b) {
    const ch = printable(b) ? String.fromCharCode(b) : String.fromCharCode(256 + n++);
    if (vocab[ch] !== undefined) byteTokens.push(vocab[ch]);
  }
} else {
  for (let b = 0; b < 256; ++b) {
    const id = vocab[`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`];
    if (id !== undefined) byteTokens.push(id);
  }
}

let seed = 7;
const rand = () => {
  seed = (seed * 1103515245 + 12345) >>> 0;
  return seed / 4294967296;
};
const pick = (list) => list[Math.floor(rand() * list.length)];

const corpus = fs.readFileSync(corpusPath);
if (corpus.toString('ascii', 0, 4) !== 'RATC') throw new Error(`${corpusPath}: not a corpus file`);
const count = corpus.readUInt32LE(8);
const utf8 = new TextDecoder('utf-8', {ignoreBOM: true});  // keep a leading U+FEFF, as Rust's from_utf8_lossy
const parts = [];
const u32 = (v) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v, 0);
  parts.push(b);
};
const ids = (list) => {
  u32(list.length);
  const b = Buffer.alloc(4 * list.length);
  list.forEach((v, i) => b.writeInt32LE(v, 4 * i));
  parts.push(b);
};
const text = (s) => {
  const b = Buffer.from(s, 'utf8');
  u32(b.length);
  parts.push(b);
};
const decode = (list, skip) =>
  list.length === 0 ? '' : tokenizer.decode(list, {skip_special_tokens: skip, clean_up_tokenization_spaces: false});

const header = Buffer.alloc(12);
header.write('RATE', 0, 'ascii');
header.writeUInt32LE(1, 4);
header.writeUInt32LE(count, 8);
parts.push(header);
const start = Date.now();
let offset = 12;
for (let i = 0; i < count; ++i) {
  const len = corpus.readUInt32LE(offset);
  const s = utf8.decode(corpus.subarray(offset + 4, offset + 4 + len));
  offset += 4 + len;
  const plain = tokenizer.encode(s, {add_special_tokens: false}).ids;
  const templated = tokenizer.encode(s, {add_special_tokens: true}).ids;
  const random = Array.from({length: 1 + Math.floor(rand() * 24)}, () => {
    const r = rand();
    if (r < 0.45) return pick(byteTokens);
    if (r < 0.55) return pick(special);
    if (r < 0.75 && plain.length > 0) return pick(plain);
    return Math.floor(rand() * limit);
  });
  ids(plain);
  ids(templated);
  text(decode(plain, false));
  text(decode(templated, true));
  ids(random);
  text(decode(random, false));
  text(decode(random, true));
}
fs.writeFileSync(outPath, Buffer.concat(parts));
console.log(`oracle: ${count} strings through ${dir} in ${((Date.now() - start) / 1000).toFixed(1)} s`);
