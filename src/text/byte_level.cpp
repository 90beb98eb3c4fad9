// GPT-2's byte <-> printable-code-point map.
#include "text/byte_level.hpp"

namespace tpinfer::tokenizer_detail {

const std::array<uint32_t, 256>& byte_to_unicode() {
  static const std::array<uint32_t, 256> map = [] {
    std::array<uint32_t, 256> m{};
    std::array<bool, 256> direct{};
    for (int b = '!'; b <= '~'; ++b) direct[b] = true;
    for (int b = 0xA1; b <= 0xAC; ++b) direct[b] = true;
    for (int b = 0xAE; b <= 0xFF; ++b) direct[b] = true;
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) m[b] = direct[b] ? b : next++;
    return m;
  }();
  return map;
}

int unicode_to_byte(uint32_t cp) {
  // The alphabet lies below U+0144: a table indexed by code point.
  static const std::array<int16_t, 0x144> inverse = [] {
    std::array<int16_t, 0x144> inv{};
    inv.fill(-1);
    const auto& b2u = byte_to_unicode();
    for (int b = 0; b < 256; ++b) inv[b2u[b]] = static_cast<int16_t>(b);
    return inv;
  }();
  return cp < inverse.size() ? inverse[cp] : -1;
}

}  // namespace tpinfer::tokenizer_detail
