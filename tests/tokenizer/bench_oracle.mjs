// The JavaScript reference's encode throughput on a text file, for scripts/bench_tokenizer.sh: the
// whole file in one encode(text, add_special_tokens=false) call, single thread, best of REPEAT runs
// after a warm-up run. Prints one JSON line like ra-tokenizer-tool bench.
//
//   node bench_oracle.mjs TOKENIZER_DIR TEXT_FILE [REPEAT]

import fs from 'node:fs';
import path from 'node:path';
import {Tokenizer} from '@huggingface/tokenizers';

const [dir, textPath, repeatArg] = process.argv.slice(2);
const repeat = Number(repeatArg ?? 3);
const bytes = fs.readFileSync(textPath);
const text = new TextDecoder('utf-8', {ignoreBOM: true}).decode(bytes);
const readJson = (name) => JSON.parse(fs.readFileSync(path.join(dir, name), 'utf8'));
let t = process.hrtime.bigint();
const tokenizer = new Tokenizer(readJson('tokenizer.json'), readJson('tokenizer_config.json'));
const load = Number(process.hrtime.bigint() - t) / 1e9;
let ids = tokenizer.encode(text, {add_special_tokens: false}).ids;  // warm-up
let best = Infinity;
for (let r = 0; r < repeat; ++r) {
  t = process.hrtime.bigint();
  ids = tokenizer.encode(text, {add_special_tokens: false}).ids;
  best = Math.min(best, Number(process.hrtime.bigint() - t) / 1e9);
}
console.log(JSON.stringify({
  impl: `@huggingface/tokenizers (JS, node ${process.version})`, tokenizer: path.join(dir, 'tokenizer.json'),
  bytes: bytes.length, tokens: ids.length, load_s: +load.toFixed(3), encode_s: +best.toFixed(4),
  mb_per_s: +(bytes.length / 1e6 / best).toFixed(2), tokens_per_s: Math.round(ids.length / best),
}));
