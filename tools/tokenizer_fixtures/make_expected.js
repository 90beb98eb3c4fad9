// Produces tests/data/tokenizer/expected_<name>.json: token ids of every string
// in corpus.json (add_special_tokens: false) computed by @lenml/tokenizers
// (transformers.js's tokenizer, Apache-2.0), an implementation independent of
// tpinfer's. Usage (needs network once, see fetch_tokenizers.sh):
//   node make_expected.js <node_modules dir holding @lenml/tokenizers> <name> <tokenizer.json> <out.json>
const [,, modDir, name, tokPath, outPath] = process.argv;
const { TokenizerLoader } = require(require('path').resolve(modDir, '@lenml/tokenizers'));
const fs = require('fs');
const corpus = JSON.parse(fs.readFileSync(__dirname + '/corpus.json', 'utf8'));
const tj = JSON.parse(fs.readFileSync(tokPath, 'utf8'));
const t = TokenizerLoader.fromPreTrained({ tokenizerJSON: tj, tokenizerConfig: {} });
const cases = corpus.map(s => ({ text: s, nfc_stable: s.normalize('NFC') === s, ids: Array.from(t.encode(s, { add_special_tokens: false })) }));
fs.writeFileSync(outPath, JSON.stringify({ tokenizer: name, generator: '@lenml/tokenizers 3.7.2', cases }, null, 0) + '\n');
console.log(name, cases.length, 'cases');
