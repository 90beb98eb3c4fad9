// Produces tests/data/tokenizer/expected_<name>.json: token ids of every string
// in corpus.json, or in the "texts" of a corpus file given as the fifth argument
// (tests/data/tokenizer/hard_strings.json), (add_special_tokens: false) computed by
// @lenml/tokenizers
// (transformers.js's tokenizer, Apache-2.0), an implementation independent of
// tpinfer's. Usage (needs network once, see fetch_tokenizers.sh):
//   node make_expected.js <node_modules dir holding @lenml/tokenizers> <name> <tokenizer.json> <out.json> [corpus]
const [,, modDir, name, tokPath, outPath, corpusPath] = process.argv;
const { TokenizerLoader } = require(require('path').resolve(modDir, '@lenml/tokenizers'));
const fs = require('fs');
const corpusDoc = JSON.parse(fs.readFileSync(corpusPath || __dirname + '/corpus.json', 'utf8'));
const corpus = Array.isArray(corpusDoc) ? corpusDoc : corpusDoc.texts;
const tj = JSON.parse(fs.readFileSync(tokPath, 'utf8'));
const t = TokenizerLoader.fromPreTrained({ tokenizerJSON: tj, tokenizerConfig: {} });
const cases = corpus.map(s => ({ text: s, nfc_stable: s.normalize('NFC') === s, ids: Array.from(t.encode(s, { add_special_tokens: false })) }));
fs.writeFileSync(outPath, JSON.stringify({ tokenizer: name, generator: '@lenml/tokenizers 3.7.2', cases }, null, 0) + '\n');
console.log(name, cases.length, 'cases');
