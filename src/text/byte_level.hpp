#pragma once
// GPT-2's byte-level alphabet: each byte as a printable code point (bytes that
// are printable Latin-1 map to themselves, the rest to U+0100 upwards), so a
// vocab of strings can hold any byte sequence. Internal to src/text.
#include <array>
#include <cstdint>

namespace tpinfer::tokenizer_detail {

// byte -> code point; built once.
const std::array<uint32_t, 256>& byte_to_unicode();
// code point -> byte, -1 for a code point that is not in the alphabet.
int unicode_to_byte(uint32_t cp);

}  // namespace tpinfer::tokenizer_detail
