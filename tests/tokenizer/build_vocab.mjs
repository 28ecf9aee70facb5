// Rebuilds Meta's Llama-3 and Llama-2 Hugging Face tokenizer files from the vocabularies that the npm
// packages llama3-tokenizer-js and llama-tokenizer-js (MIT, belladore.ai) bake into their sources, so
// that no Meta vocabulary file is committed to this repository.
//
//   node build_vocab.mjs NODE_MODULES_DIR OUT_DIR
//
// Writes OUT_DIR/{llama3,llama2,llama2-metaspace}/{tokenizer.json,tokenizer_config.json,
// generation_config.json}. The JSON layouts are those of meta-llama/Meta-Llama-3.1-8B-Instruct and
// meta-llama/Llama-2-7b-hf; llama2-metaspace is the same vocabulary in the layout newer transformers
// conversions write (Metaspace pre-tokenizer, prepend_scheme "first", no normalizer).
//
// The packages store (see their data-conversion.py):
//   llama_vocab_base64:  base64 of the token strings joined by '\n' (id = line number)
//   llama_merges_binary: base64 of the merges in rank order, as pairs of vocabulary ids;
//                        Llama-3: 17-bit big-endian bit-packed ids; Llama-2: uint16 little-endian ids.

import fs from 'node:fs';
import path from 'node:path';

const [modulesDir, outDir] = process.argv.slice(2);
if (!modulesDir || !outDir) {
  console.error('usage: node build_vocab.mjs NODE_MODULES_DIR OUT_DIR');
  process.exit(2);
}

function bakedString(file, name) {
  const source = fs.readFileSync(file, 'utf8');
  const m = source.match(new RegExp(`const ${name} = "([A-Za-z0-9+/=]+)"`));
  if (!m) throw new Error(`${file}: no ${name} string literal found`);
  return Buffer.from(m[1], 'base64');
}

function vocabulary(file, expected) {
  const tokens = bakedString(file, 'llama_vocab_base64').toString('utf8').split('\n');
  if (tokens.length !== expected) throw new Error(`${file}: ${tokens.length} vocabulary entries, expected ${expected}`);
  return tokens;
}

// Llama-3: ids are 17-bit fields packed most significant bit first; trailing padding bits are ignored.
function merges17(bytes) {
  const ids = [];
  const bits = bytes.length * 8;
  for (let bit = 0; bit + 17 <= bits; bit += 17) {
    let v = 0;
    for (let k = 0; k < 17; ++k) {
      const b = bit + k;
      v = (v << 1) | ((bytes[b >> 3] >> (7 - (b & 7))) & 1);
    }
    ids.push(v);
  }
  if (ids.length % 2) ids.pop();  // a lone trailing field is padding
  return ids;
}

// Llama-2: little-endian uint16 ids.
function merges16(bytes) {
  const ids = [];
  for (let i = 0; i + 1 < bytes.length; i += 2) ids.push(bytes[i] | (bytes[i + 1] << 8));
  return ids;
}

function mergePairs(ids, tokens, file) {
  const merges = [];
  for (let i = 0; i < ids.length; i += 2) {
    const a = tokens[ids[i]], b = tokens[ids[i + 1]];
    if (a === undefined || b === undefined) throw new Error(`${file}: merge ${i / 2} names id ${ids[i]}/${ids[i + 1]}`);
    if (a.includes(' ') || b.includes(' ')) throw new Error(`${file}: merge ${i / 2} has a space`);
    merges.push(`${a} ${b}`);
  }
  return merges;
}

function addedToken(id, content) {
  return {id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true};
}

function vocabObject(tokens) {
  const v = {};
  tokens.forEach((t, i) => { v[t] = i; });
  return v;
}

function write(dir, files) {
  fs.mkdirSync(dir, {recursive: true});
  for (const [name, value] of Object.entries(files)) {
    fs.writeFileSync(path.join(dir, name), JSON.stringify(value, null, name === 'tokenizer.json' ? 0 : 2));
  }
}

// ---------------------------------------------------------------------------------------------------
// Llama-3.1: 128000 byte-level BPE tokens + 256 special tokens.
// ---------------------------------------------------------------------------------------------------
{
  const file = path.join(modulesDir, 'llama3-tokenizer-js', 'bundle', 'llama3-tokenizer-with-baked-data.js');
  const tokens = vocabulary(file, 128000);
  const merges = mergePairs(merges17(bakedString(file, 'llama_merges_binary')), tokens, file);
  const special = ['<|begin_of_text|>', '<|end_of_text|>', '<|reserved_special_token_0|>',
    '<|reserved_special_token_1|>', '<|finetune_right_pad_id|>', '<|reserved_special_token_2|>',
    '<|start_header_id|>', '<|end_header_id|>', '<|eom_id|>', '<|eot_id|>', '<|python_tag|>'];
  for (let i = 3; i <= 247; ++i) special.push(`<|reserved_special_token_${i}|>`);
  const bos = '<|begin_of_text|>';
  const tokenizer = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: special.map((s, i) => addedToken(128000 + i, s)),
    normalizer: null,
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        {
          type: 'Split',
          pattern: {Regex: "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
          behavior: 'Isolated',
          invert: false,
        },
        {type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false},
      ],
    },
    post_processor: {
      type: 'Sequence',
      processors: [
        {type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true},
        {
          type: 'TemplateProcessing',
          single: [{SpecialToken: {id: bos, type_id: 0}}, {Sequence: {id: 'A', type_id: 0}}],
          pair: [{SpecialToken: {id: bos, type_id: 0}}, {Sequence: {id: 'A', type_id: 0}},
                 {SpecialToken: {id: bos, type_id: 1}}, {Sequence: {id: 'B', type_id: 1}}],
          special_tokens: {[bos]: {id: bos, ids: [128000], tokens: [bos]}},
        },
      ],
    },
    decoder: {type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true},
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
      fuse_unk: false, byte_fallback: false, ignore_merges: true, vocab: vocabObject(tokens), merges,
    },
  };
  const config = {
    bos_token: bos, eos_token: '<|eot_id|>', clean_up_tokenization_spaces: true,
    model_input_names: ['input_ids', 'attention_mask'], model_max_length: 131072,
    tokenizer_class: 'PreTrainedTokenizerFast',
  };
  const generation = {bos_token_id: 128000, do_sample: true, eos_token_id: [128001, 128008, 128009],
                      temperature: 0.6, top_p: 0.9};
  write(path.join(outDir, 'llama3'), {'tokenizer.json': tokenizer, 'tokenizer_config.json': config,
                                      'generation_config.json': generation});
  console.log(`llama3: ${tokens.length} tokens + ${special.length} special, ${merges.length} merges`);
}

// ---------------------------------------------------------------------------------------------------
// Llama-2: 32000 SentencePiece BPE tokens (ids 0-2 <unk> <s> </s>, 3-258 byte pieces <0x00>-<0xFF>).
// ---------------------------------------------------------------------------------------------------
{
  const file = path.join(modulesDir, 'llama-tokenizer-js', 'llama-tokenizer.js');
  const tokens = vocabulary(file, 32000);
  const merges = mergePairs(merges16(bakedString(file, 'llama_merges_binary')), tokens, file);
  const added = [addedToken(0, '<unk>'), addedToken(1, '<s>'), addedToken(2, '</s>')];
  const post = {
    type: 'TemplateProcessing',
    single: [{SpecialToken: {id: '<s>', type_id: 0}}, {Sequence: {id: 'A', type_id: 0}}],
    pair: [{SpecialToken: {id: '<s>', type_id: 0}}, {Sequence: {id: 'A', type_id: 0}},
           {SpecialToken: {id: '<s>', type_id: 1}}, {Sequence: {id: 'B', type_id: 1}}],
    special_tokens: {'<s>': {id: '<s>', ids: [1], tokens: ['<s>']}},
  };
  const decoder = {
    type: 'Sequence',
    decoders: [{type: 'Replace', pattern: {String: '\u2581'}, content: ' '}, {type: 'ByteFallback'},
               {type: 'Fuse'}, {type: 'Strip', content: ' ', start: 1, stop: 0}],
  };
  const model = {
    type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null, end_of_word_suffix: null,
    fuse_unk: true, byte_fallback: true, vocab: vocabObject(tokens), merges,
  };
  const config = {
    add_bos_token: true, add_eos_token: false, bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>',
    clean_up_tokenization_spaces: false, legacy: false, model_max_length: 1000000000000000019884624838656,
    pad_token: null, sp_model_kwargs: {}, tokenizer_class: 'LlamaTokenizer',
  };
  const generation = {bos_token_id: 1, eos_token_id: 2, pad_token_id: 0, temperature: 0.6, top_p: 0.9};
  const normalizer = {
    type: 'Sequence',
    normalizers: [{type: 'Prepend', prepend: '\u2581'}, {type: 'Replace', pattern: {String: ' '}, content: '\u2581'}],
  };
  write(path.join(outDir, 'llama2'), {
    'tokenizer.json': {version: '1.0', truncation: null, padding: null, added_tokens: added, normalizer,
                       pre_tokenizer: null, post_processor: post, decoder, model},
    'tokenizer_config.json': config, 'generation_config.json': generation});
  const metaspace = {type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'first', split: false};
  write(path.join(outDir, 'llama2-metaspace'), {
    'tokenizer.json': {version: '1.0', truncation: null, padding: null, added_tokens: added, normalizer: null,
                       pre_tokenizer: metaspace, post_processor: post, decoder, model},
    'tokenizer_config.json': config, 'generation_config.json': generation});
  console.log(`llama2: ${tokens.length} tokens, ${merges.length} merges`);
}
