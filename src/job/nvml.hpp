#pragma once
// NVML (the NVIDIA management library) loaded at run time: the health report
// reads GPU memory, utilisation, temperature, clocks, throttle reasons and ECC
// errors through it. It is opened with dlopen, never linked, so the same binary
// runs where there is no NVIDIA driver (cpu-only machines): there the library
// is simply absent.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace tpinfer::nvml {

// One reading of one GPU. A field NVML does not support on this GPU (or that
// failed) is empty.
struct GpuReading {
  std::optional<uint64_t> memory_used_bytes, memory_total_bytes;
  std::optional<uint32_t> utilization_gpu_pct, utilization_memory_pct;
  std::optional<uint32_t> temperature_c;
  std::optional<uint32_t> sm_clock_mhz, memory_clock_mhz;
  std::optional<uint64_t> throttle_reasons;   // NVML's bit mask
  std::optional<uint64_t> ecc_uncorrectable;  // volatile count: since the driver loaded
};

// Names of the bits of an NVML clocks-throttle-reasons mask ("sw_power_cap",
// "hw_thermal_slowdown", ...); an unknown bit reads "bit_N".
std::vector<std::string> throttle_reason_names(uint64_t mask);

// The loaded and initialised library (nvmlInit_v2 .. nvmlShutdown, dlopen ..
// dlclose) for as long as the object lives. Never throws: a missing library,
// a missing symbol or a failed nvmlInit leave it absent, with the reason.
class Library {
 public:
  explicit Library(const char* soname = "libnvidia-ml.so.1");
  ~Library();
  Library(const Library&) = delete;
  Library& operator=(const Library&) = delete;

  bool available() const { return api_ != nullptr; }
  // Why it is absent ("" when available).
  const std::string& why_absent() const { return why_absent_; }

  // Reads the GPU at `pci_bus_id` (as cudaDeviceGetPCIBusId gives it,
  // "0000:1b:00.0"). Empty when absent or NVML does not know that bus id.
  std::optional<GpuReading> read(const std::string& pci_bus_id) const;

 private:
  struct Api;
  void* dl_ = nullptr;
  std::unique_ptr<Api> api_;  // set once every symbol resolved and nvmlInit succeeded
  std::string why_absent_;
};

}  // namespace tpinfer::nvml
