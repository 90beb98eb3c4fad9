#pragma once
// bf16/fp16 <-> fp32 conversions (round to nearest even), bit exact on every
// compiler and on the GPU.
#include <cstdint>

#include "base/dtype.hpp"

namespace tpinfer {

// v rounded to the nearest value representable in d.
float round_to_dtype(DType d, float v);

uint16_t float_to_bf16(float f);
float bf16_to_float(uint16_t h);
uint16_t float_to_fp16(float f);
float fp16_to_float(uint16_t h);

}  // namespace tpinfer
