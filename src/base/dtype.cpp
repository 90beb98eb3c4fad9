#include "base/dtype.hpp"

#include <string>

#include "base/error.hpp"

namespace tpinfer {

const char* dtype_name(DType d) {
  switch (d) {
    case DType::f32:
      return "float32";
    case DType::bf16:
      return "bfloat16";
    case DType::f16:
      return "float16";
    case DType::fp8_e4m3:
      return "float8_e4m3fn";
  }
  return "?";
}

DType dtype_from_name(const std::string& n) {
  if (n == "float32" || n == "fp32" || n == "f32" || n == "float") return DType::f32;
  if (n == "bfloat16" || n == "bf16") return DType::bf16;
  if (n == "float16" || n == "fp16" || n == "f16" || n == "half") return DType::f16;
  throw ModelError("dtype '" + n + "' is not one of float32, bfloat16, float16");
}

int dtype_bytes(DType d) {
  return d == DType::f32 ? 4 : d == DType::fp8_e4m3 ? 1 : 2;
}

}  // namespace tpinfer
