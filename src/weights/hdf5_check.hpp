#pragma once
// The HDF5 check: HDF5 returns a negative value (herr_t or hid_t) on failure;
// the macro throws a ModelError with file:line and the call, else yields the value.
namespace tpinfer {
[[noreturn]] void throw_hdf5_error(const char* call, const char* file, int line);
}  // namespace tpinfer

#define TPINFER_H5_CHECK(call)                                                  \
  ([&]() {                                                                      \
    auto tpinfer_v_ = (call);                                                   \
    if (tpinfer_v_ < 0) ::tpinfer::throw_hdf5_error(#call, __FILE__, __LINE__); \
    return tpinfer_v_;                                                          \
  }())
