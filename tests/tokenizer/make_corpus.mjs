// The oracle test's strings, generated deterministically (seeded): prose in many scripts, code,
// whitespace runs, numbers, emoji (Unicode 14 and older only: Debian's Oniguruma 6.9.8 has Unicode 14
// tables and Node's ICU a newer version, so younger characters would test the tables, not us), added
// tokens and near misses, ill-formed UTF-8, and random mixtures.
//
//   node make_corpus.mjs corpus OUT.bin [COUNT]   ->  "RATC" u32 version=1, u32 count, then per string:
//                                                     u32 byte length, bytes (any bytes; most valid UTF-8)
//   node make_corpus.mjs bench OUT.txt BYTES      ->  a mixed, valid UTF-8 text of about BYTES bytes
//
// Characters deliberately left out: U+017F (long s) right after an apostrophe. Oniguruma folds it to
// 's' inside Llama-3's (?i:'s|...) while the JavaScript port folds ASCII only, so the two disagree there
// by design; hf_tokenizer_test checks that we follow Oniguruma.

import fs from 'node:fs';

const [mode, out, arg] = process.argv.slice(2);

// mulberry32: a small, fast, seeded PRNG.
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6D2B79F5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rand = rng(20240519);
const int = (n) => Math.floor(rand() * n);
const pick = (list) => list[int(list.length)];
const range = (lo, hi) => String.fromCodePoint(lo + int(hi - lo + 1));
const repeat = (n, f) => Array.from({length: n}, f).join('');

// Fully assigned (Unicode <= 4.1) letter ranges, so that \p{L} means the same to every engine.
const SCRIPTS = {
  cyrillic: [[0x0430, 0x044F], [0x0410, 0x042F]],
  greek: [[0x03B1, 0x03C9], [0x0391, 0x03A1]],
  arabic: [[0x0627, 0x063A], [0x0641, 0x064A]],
  hebrew: [[0x05D0, 0x05EA]],
  devanagari: [[0x0915, 0x0939], [0x093E, 0x094C]],  // consonants and vowel signs (marks, not letters)
  thai: [[0x0E01, 0x0E2E], [0x0E30, 0x0E3A]],
  han: [[0x4E00, 0x9FA5]],
  kana: [[0x3041, 0x3093], [0x30A1, 0x30F6]],
  hangul: [[0xAC00, 0xD7A3]],
  latin1: [[0x00E0, 0x00F6], [0x00F8, 0x00FF], [0x00C0, 0x00D6]],
  latinExtA: [[0x0100, 0x017E]],
  vietnamese: [[0x1EA0, 0x1EF9]],
  armenian: [[0x0561, 0x0586]],
  georgian: [[0x10D0, 0x10F6]],
  ethiopic: [[0x1200, 0x1246]],
};
const WORDS = {
  english: ['the', 'quick', 'brown', 'fox', 'jumps', 'over', 'lazy', 'dog', 'retrieval', 'attention', 'model',
    'token', 'decoding', "don't", "it's", "we'll", "they're", "I'm", "you've", "she'd", 'Hello', 'World', 'GPU',
    'cache', 'HNSW', 'O(n)', 'e.g.', 'i.e.', 'naïve', 'café', 'résumé', 'coöperate', 'Straße', 'façade'],
  french: ['bonjour', 'très', 'élève', 'garçon', 'où', "l'été", "aujourd'hui", 'Noël', 'œuvre', 'déjà'],
  german: ['Größe', 'Übermaß', 'schön', 'Fußgänger', 'Äpfel', 'grüßen', 'Mädchen'],
  russian: ['привет', 'мир', 'внимание', 'модель', 'Москва', 'ёжик', 'съешь', 'щука'],
  greek: ['καλημέρα', 'κόσμος', 'λόγος', 'Ἀθῆναι', 'ψυχή', 'ΑΒΓΔ'],
  arabic: ['مرحبا', 'العالم', 'السلام', 'عليكم', 'كتاب', 'مدرسة'],
  hebrew: ['שלום', 'עולם', 'תודה', 'ספר'],
  hindi: ['नमस्ते', 'दुनिया', 'भारत', 'हिन्दी', 'क्षमा', 'ज्ञान'],
  thai: ['สวัสดี', 'ครับ', 'ภาษาไทย', 'ขอบคุณ'],
  chinese: ['你好', '世界', '注意力', '模型', '检索', '中华人民共和国', '繁體中文'],
  japanese: ['こんにちは', '世界', 'カタカナ', 'ひらがな', '東京', 'ありがとう', 'ラーメン'],
  korean: ['안녕하세요', '세계', '한국어', '감사합니다'],
  vietnamese: ['Việt', 'Nam', 'tiếng', 'xin', 'chào', 'người'],
  turkish: ['İstanbul', 'ılık', 'şeker', 'ğ', 'Çağrı'],
};
const EMOJI = ['😀', '😂', '🤣', '❤️', '👍', '👍🏽', '👋🏿', '🏳️‍🌈', '👨‍👩‍👧‍👦', '🇫🇷', '🇯🇵', '🇺🇸', '#️⃣', '1️⃣',
  '🫠', '🫶', '🥹', '🫡', '🪬', '🧑‍💻', '🐍', '🦀', '🚀', '✨', '☕', '🤖', '🧠', '👩🏻‍🔬', '🏴‍☠️', '©️', '™', '⚡'];
const SPACES = [' ', ' ', ' ', '  ', '\t', '\n', '\n\n', '\r\n', '\u00A0', '\u2003', '\u3000', '\u0085', '\u2028',
  '\u2029', '\u202F', '\uFEFF', '\u200B', '\u000B', '\u000C'];
const PUNCT = ['.', ',', '!', '?', ';', ':', '-', '—', '–', '…', '(', ')', '"', "'", '«', '»', '“', '”', '‘', '’',
  '¿', '¡', '。', '、', '！', '？', '《', '》', '/', '\\', '@', '#', '$', '%', '^', '&', '*', '_', '+', '=', '~',
  '`', '|', '<', '>', '[', ']', '{', '}'];
const SPECIAL = ['<|begin_of_text|>', '<|end_of_text|>', '<|eot_id|>', '<|start_header_id|>', '<|end_header_id|>',
  '<|python_tag|>', '<|eom_id|>', '<|finetune_right_pad_id|>', '<|reserved_special_token_0|>',
  '<|reserved_special_token_12|>', '<|reserved_special_token_247|>', '<s>', '</s>', '<unk>',
  // near misses
  '<|eot_id', '<|eot_id|', '|eot_id|>', '<|EOT_ID|>', '<|reserved_special_token_248|>', '<<s>>', '<s', 's>', '</s',
  '<|begin_of_text|><|begin_of_text|>', '<0x41>', '<0xE2>'];

function word(script) {
  if (script && WORDS[script]) return pick(WORDS[script]);
  const ranges = SCRIPTS[script] ?? SCRIPTS.cyrillic;
  return repeat(1 + int(8), () => range(...pick(ranges)));
}
function sentence(script) {
  const n = 3 + int(14);
  let s = '';
  for (let i = 0; i < n; ++i) {
    let w = word(script);
    if (i === 0 && rand() < 0.5) w = w[0].toUpperCase() + w.slice(1);
    s += (i ? pick([' ', ' ', ' ', ' ', '  ', '\u00A0']) : '') + w;
    if (rand() < 0.15) s += pick(PUNCT);
  }
  return s + pick(['.', '!', '?', '。', '…', '']);
}
function prose(script) {
  return repeat(1 + int(4), () => sentence(script) + pick([' ', ' ', '\n', '\n\n']));
}
const scriptNames = [...Object.keys(SCRIPTS), ...Object.keys(WORDS)];

function number() {
  switch (int(9)) {
    case 0: return String(int(10));
    case 1: return String(int(1e6));
    case 2: return repeat(1 + int(40), () => String(int(10)));
    case 3: return (rand() * 1e4).toFixed(int(6));
    case 4: return `${int(1000)},${String(int(1000)).padStart(3, '0')},${String(int(1000)).padStart(3, '0')}`;
    case 5: return repeat(1 + int(8), () => range(0x0660, 0x0669));  // Arabic-Indic digits
    case 6: return repeat(1 + int(8), () => range(0xFF10, 0xFF19));  // fullwidth
    case 7: return pick(['²', '³', '¹', '½', '¾', 'Ⅻ', 'ⅷ', '①', '⑳', '٣', '४', '๓', '-1e-9', '0x1F', '1_000', '3.14159']);
    default: return `${int(24)}:${String(int(60)).padStart(2, '0')}`;
  }
}

function code() {
  const ident = () => pick(['x', 'y', 'i', 'n', 'value', 'tokens', 'kvCache', 'head_dim', 'self', 'buf', 'N', '_tmp']);
  const indent = (d) => pick(['    ', '  ', '\t']).repeat(d);
  const nl = pick(['\n', '\n', '\r\n']);
  const lines = [];
  const n = 2 + int(10);
  for (let i = 0; i < n; ++i) {
    const d = int(4);
    lines.push(indent(d) + pick([
      () => `for (int ${ident()} = 0; ${ident()} < ${number()}; ++${ident()}) {`,
      () => `if (${ident()} == nullptr) return -1;`,
      () => `def ${ident()}(${ident()}, ${ident()}=${number()}):`,
      () => `return ${ident()} * ${ident()} + ${number()};`,
      () => `std::vector<float> ${ident()}(${number()}, 0.0f);  // ${sentence('english')}`,
      () => `# ${sentence('english')}`,
      () => `"${ident()}": [${number()}, ${number()}, "${word('english')}"],`,
      () => `console.log(\`\${${ident()}}\`);`,
      () => `$ ./build.sh --jobs=${int(16)} && ctest -L unit`,
      () => `}`,
      () => `<div class="${ident()}">${word('english')}</div>`,
      () => `SELECT * FROM ${ident()} WHERE id=${number()};`,
      () => `${ident()} = re.compile(r"\\s+(?!\\S)|[\\p{L}]+")`,
      () => '',
    ])());
  }
  return lines.join(nl);
}

function whitespace() {
  return repeat(1 + int(12), () => (rand() < 0.6 ? repeat(1 + int(6), () => pick(SPACES)) : word(pick(scriptNames))));
}

function emoji() {
  return repeat(1 + int(10), () => {
    const r = rand();
    if (r < 0.5) return pick(EMOJI);
    if (r < 0.7) return range(0x1F600, 0x1F64F);
    if (r < 0.8) return range(0x1F300, 0x1F5FF);
    return pick([' ', '', word('english'), pick(PUNCT)]);
  });
}

function special() {
  return repeat(1 + int(6), () => (rand() < 0.5 ? pick(SPECIAL) : pick([' ', '\n', word('english'), sentence('english'), ''])));
}

function mixture() {
  return repeat(1 + int(12), () => pick([
    () => word(pick(scriptNames)), () => pick(SPACES), () => pick(PUNCT), number, () => pick(EMOJI),
    () => pick(SPECIAL), () => range(0x20, 0x7E), () => range(0xA1, 0x24F), () => range(0x2000, 0x206F),
    () => range(0x2190, 0x21FF), () => range(0x2500, 0x257F), () => range(0x0300, 0x036F),  // combining marks
  ])());
}

function edge() {
  return pick([
    '', ' ', '\n', 'a', 'A', '0', "'", "'s", "'S", "'ll", "'LL", "'re", 'x\'s', '\u0000', '\u0001\u0002', '\u007F',
    'a'.repeat(300 + int(700)), ' '.repeat(50 + int(1000)), '\n'.repeat(20 + int(100)), '!'.repeat(200),
    '0123456789'.repeat(30), 'ab'.repeat(400), 'の'.repeat(300), '😀'.repeat(100), '\t \t \n'.repeat(40),
    'Ġ', 'Ċ', '▁', '▁▁hello', 'hello▁world', '<0x0A>',
  ]);
}

// Ill-formed UTF-8: random bytes, or valid text with bad sequences spliced in.
function invalid() {
  const bad = () => Buffer.from(pick([
    [0xFF], [0xFE], [0x80], [0xBF], [0xC0, 0xAF], [0xC1, 0x81], [0xE0, 0x80, 0xAF], [0xED, 0xA0, 0x80],
    [0xED, 0xBF, 0xBF], [0xF0, 0x8F, 0xBF, 0xBF], [0xF4, 0x90, 0x80, 0x80], [0xF5, 0x80], [0xE2, 0x82],
    [0xF0, 0x9F, 0x98], [0xC3], [0xE2], [0xF0], [0xE2, 0x28, 0xA1], [0xC3, 0x28], [0xF8, 0x88, 0x80, 0x80, 0x80],
  ]));
  if (rand() < 0.3) return Buffer.from(Array.from({length: 1 + int(40)}, () => int(256)));
  const parts = [];
  for (let i = 0, n = 1 + int(6); i < n; ++i) {
    parts.push(Buffer.from(rand() < 0.5 ? sentence(pick(scriptNames)) : pick(EMOJI), 'utf8'));
    parts.push(bad());
  }
  return Buffer.concat(parts);
}

const GENERATORS = [
  [1500, () => prose('english')],
  [2500, () => prose(pick(scriptNames))],
  [1500, code],
  [1000, whitespace],
  [1000, () => repeat(1 + int(8), () => number() + pick([' ', ', ', '.', '', '\n', '+', 'x']))],
  [1000, emoji],
  [1000, invalid],
  [500, special],
  [1000, mixture],
  [200, edge],
];

// See the note at the top: "'ſ" is where Oniguruma and the JavaScript port disagree by design.
const avoidLongS = (s) => s.replaceAll("'\u017F", "'s");

if (mode === 'corpus') {
  const strings = [];
  for (const [count, make] of GENERATORS) {
    for (let i = 0; i < count; ++i) {
      const s = make();
      strings.push(Buffer.isBuffer(s) ? s : Buffer.from(avoidLongS(s), 'utf8'));
    }
  }
  const limit = arg ? Number(arg) : strings.length;
  const chosen = strings.slice(0, limit);
  const header = Buffer.alloc(12);
  header.write('RATC', 0, 'ascii');
  header.writeUInt32LE(1, 4);
  header.writeUInt32LE(chosen.length, 8);
  const parts = [header];
  for (const s of chosen) {
    const len = Buffer.alloc(4);
    len.writeUInt32LE(s.length, 0);
    parts.push(len, s);
  }
  fs.writeFileSync(out, Buffer.concat(parts));
  console.log(`${chosen.length} strings, ${parts.reduce((n, p) => n + p.length, 0)} bytes -> ${out}`);
} else if (mode === 'bench') {
  const target = Number(arg);
  const mix = [[30, () => prose('english')], [25, () => prose(pick(scriptNames))], [20, code], [8, whitespace],
               [7, () => repeat(1 + int(8), () => number() + ' ')], [5, emoji], [5, mixture]];
  const total = mix.reduce((n, [w]) => n + w, 0);
  const parts = [];
  let size = 0;
  while (size < target) {
    let r = int(total);
    let make = mix[0][1];
    for (const [w, f] of mix) {
      if (r < w) { make = f; break; }
      r -= w;
    }
    const s = avoidLongS(make()) + '\n';
    parts.push(s);
    size += Buffer.byteLength(s, 'utf8');
  }
  fs.writeFileSync(out, parts.join(''));
  console.log(`${size} bytes of mixed text -> ${out}`);
} else {
  console.error('usage: node make_corpus.mjs corpus OUT.bin [COUNT] | bench OUT.txt BYTES');
  process.exit(2);
}
