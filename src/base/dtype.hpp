#pragma once
// The element types of weights, activations and the KV cache.
#include <string>

namespace tpinfer {

// fp8_e4m3 is a storage type of the KV cache only (base/fp8.hpp); weights
// and activations are never fp8, and dtype_from_name does not accept it.
enum class DType { f32, bf16, f16, fp8_e4m3 };
const char* dtype_name(DType d);  // "float32", "bfloat16", "float16", "float8_e4m3fn"
DType dtype_from_name(const std::string& name);  // accepts torch names too; throws ModelError
int dtype_bytes(DType d);

}  // namespace tpinfer
