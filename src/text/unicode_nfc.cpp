// Normalization forms (UAX #15): decompose, put combining marks in canonical
// order, and for C and KC compose.
#include "text/unicode_nfc.hpp"

#include <algorithm>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "text/tokenizer_unicode.hpp"

namespace tpinfer::tokenizer_detail {
namespace {

// Hangul syllables are composed and decomposed arithmetically (Unicode 3.12).
constexpr uint32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr uint32_t kLCount = 19, kVCount = 21, kTCount = 28;
constexpr uint32_t kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

// A byte that is not valid UTF-8 travels through the buffer as this flag plus the
// byte: past every code point, so it has class 0, no decomposition and composes
// with nothing, and it comes out as the same byte.
constexpr uint32_t kRawByte = 0x80000000u;

// Every code point below U+0300 has class 0, and those with a decomposition
// recompose to themselves (tools/gen_unicode_nfc.py checks both), so text made
// only of them (every byte below 0xCC in UTF-8) is already NFC.
constexpr unsigned char kFirstByteOfU0300 = 0xCC;

const CanonicalDecomposition* find_decomposition(uint32_t cp) {
  const CanonicalDecomposition* end = kCanonicalDecompositions + kCanonicalDecompositions_count;
  const CanonicalDecomposition* it =
      std::lower_bound(kCanonicalDecompositions, end, cp,
                       [](const CanonicalDecomposition& d, uint32_t v) { return d.cp < v; });
  return it != end && it->cp == cp ? it : nullptr;
}

const CompatDecomposition* find_compat(uint32_t cp) {
  const CompatDecomposition* end = kCompatDecompositions + kCompatDecompositions_count;
  const CompatDecomposition* it =
      std::lower_bound(kCompatDecompositions, end, cp,
                       [](const CompatDecomposition& d, uint32_t v) { return d.cp < v; });
  return it != end && it->cp == cp ? it : nullptr;
}

void decompose(uint32_t cp, bool compat, std::vector<uint32_t>& out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const uint32_t s = cp - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount != 0) out.push_back(kTBase + s % kTCount);
    return;
  }
  if (compat && cp >= 0xA0) {
    if (const CompatDecomposition* k = find_compat(cp)) {
      for (uint8_t i = 0; i < k->len; ++i) decompose(kCompatCodePoints[k->first + i], true, out);
      return;
    }
  }
  const CanonicalDecomposition* d = cp >= 0xC0 ? find_decomposition(cp) : nullptr;
  if (!d) {
    out.push_back(cp);
    return;
  }
  decompose(d->first, compat, out);
  if (d->second != 0) decompose(d->second, compat, out);
}

// The primary composites, keyed by their pair.
const std::unordered_map<uint64_t, uint32_t>& composites() {
  static const std::unordered_map<uint64_t, uint32_t> map = [] {
    std::unordered_map<uint64_t, uint32_t> m;
    for (size_t i = 0; i < kCanonicalDecompositions_count; ++i) {
      const CanonicalDecomposition& d = kCanonicalDecompositions[i];
      if (d.composes) m.emplace((uint64_t{d.first} << 32) | d.second, d.cp);
    }
    return m;
  }();
  return map;
}

// The composite of a starter and the character that follows it, 0 if none.
uint32_t compose(uint32_t a, uint32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount)
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
      b < kTBase + kTCount)
    return a + (b - kTBase);
  const auto& m = composites();
  const auto it = m.find((uint64_t{a} << 32) | b);
  return it == m.end() ? 0 : it->second;
}

}  // namespace

uint8_t canonical_combining_class(uint32_t cp) {
  if (cp < 0x300) return 0;
  const CombiningClassRange* end = kCombiningClasses + kCombiningClasses_count;
  const CombiningClassRange* it =
      std::upper_bound(kCombiningClasses, end, cp,
                       [](uint32_t v, const CombiningClassRange& r) { return v < r.lo; });
  return it != kCombiningClasses && cp <= (it - 1)->hi ? (it - 1)->ccc : 0;
}

namespace {

std::string to_utf8(const std::vector<uint32_t>& buf, size_t n) {
  std::string out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    if (buf[i] & kRawByte)
      out += static_cast<char>(buf[i] & 0xFF);
    else
      append_utf8(out, buf[i]);
  }
  return out;
}

std::string normalize(std::string_view text, bool compat, bool compose_pairs) {
  std::vector<uint32_t> buf;
  buf.reserve(text.size());
  for (const CodePoint& c : decode_utf8(text)) {
    if (c.cp == 0xFFFD && c.len == 1)  // an invalid byte (a real U+FFFD has 3)
      buf.push_back(kRawByte | static_cast<unsigned char>(text[c.offset]));
    else
      decompose(c.cp, compat, buf);
  }

  // Canonical ordering: each run of non-starters sorted by class, stably.
  std::vector<uint8_t> cls(buf.size());
  for (size_t i = 0; i < buf.size(); ++i) cls[i] = canonical_combining_class(buf[i]);
  for (size_t i = 0; i < buf.size();) {
    if (cls[i] == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < buf.size() && cls[j] != 0) ++j;
    if (j - i > 1) {
      std::vector<std::pair<uint8_t, uint32_t>> run;
      for (size_t k = i; k < j; ++k) run.emplace_back(cls[k], buf[k]);
      std::stable_sort(run.begin(), run.end(),
                       [](const auto& x, const auto& y) { return x.first < y.first; });
      for (size_t k = i; k < j; ++k) std::tie(cls[k], buf[k]) = run[k - i];
    }
    i = j;
  }

  if (!compose_pairs) return to_utf8(buf, buf.size());

  // Canonical composition: a character joins the last starter unless blocked by
  // a character in between of class 0 or of a class >= its own.
  size_t kept = 0;
  size_t starter = 0;
  bool have_starter = false;
  int last_class = 0;  // class of the last character kept (0: the starter itself)
  for (size_t i = 0; i < buf.size(); ++i) {
    const uint32_t ch = buf[i];
    const int c = cls[i];
    if (have_starter && (last_class < c || last_class == 0)) {
      if (const uint32_t composite = compose(buf[starter], ch)) {
        buf[starter] = composite;
        continue;
      }
    }
    if (c == 0) {
      starter = kept;
      have_starter = true;
    }
    last_class = c;
    buf[kept] = ch;
    cls[kept] = static_cast<uint8_t>(c);
    ++kept;
  }

  return to_utf8(buf, kept);
}

bool ascii(std::string_view text) {
  return std::all_of(text.begin(), text.end(),
                     [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

}  // namespace

std::string nfc(std::string_view text) {
  if (std::all_of(text.begin(), text.end(),
                  [](char c) { return static_cast<unsigned char>(c) < kFirstByteOfU0300; }))
    return std::string(text);
  return normalize(text, false, true);
}
std::string nfd(std::string_view text) {
  return ascii(text) ? std::string(text) : normalize(text, false, false);
}
std::string nfkd(std::string_view text) {
  return ascii(text) ? std::string(text) : normalize(text, true, false);
}
std::string nfkc(std::string_view text) {
  return ascii(text) ? std::string(text) : normalize(text, true, true);
}

}  // namespace tpinfer::tokenizer_detail
