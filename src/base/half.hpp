#pragma once
// bf16/fp16 <-> fp32 conversions (round to nearest even), bit exact on every
// compiler and on the GPU.
#include <cstddef>
#include <cstdint>

#include "base/dtype.hpp"

namespace tpinfer {

// v rounded to the nearest value representable in d.
float round_to_dtype(DType d, float v);

uint16_t float_to_bf16(float f);
float bf16_to_float(uint16_t h);
uint16_t float_to_fp16(float f);
float fp16_to_float(uint16_t h);
// n stored values of d (bf16 or f16) widened to fp32: the weight loader's
// conversion, so it must not cost a call per element.
void widen_to_float(DType d, const uint16_t* src, float* dst, size_t n);

}  // namespace tpinfer
