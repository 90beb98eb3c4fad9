#include "job/nvml.hpp"

#include <dlfcn.h>

#include <type_traits>

namespace tpinfer::nvml {

namespace {

// The few NVML declarations we use, from NVML's public API (nvml.h), so the
// build needs no NVIDIA headers. Enums are C enums: passed as int.
using Return = int;  // nvmlReturn_t
constexpr Return kSuccess = 0;
struct DeviceSt;
using Device = DeviceSt*;  // nvmlDevice_t
struct Memory {            // nvmlMemory_t
  unsigned long long total, free, used;
};
struct Utilization {  // nvmlUtilization_t
  unsigned int gpu, memory;
};
constexpr int kTemperatureGpu = 0;          // NVML_TEMPERATURE_GPU
constexpr int kClockSm = 1;                 // NVML_CLOCK_SM
constexpr int kClockMem = 2;                // NVML_CLOCK_MEM
constexpr int kMemoryErrorUncorrected = 1;  // NVML_MEMORY_ERROR_TYPE_UNCORRECTED
constexpr int kVolatileEcc = 0;             // NVML_VOLATILE_ECC

// nvmlClocksThrottleReason* bits, in bit order.
constexpr const char* kThrottleNames[] = {
    "gpu_idle",             // 0x1
    "applications_clocks",  // 0x2
    "sw_power_cap",         // 0x4
    "hw_slowdown",          // 0x8
    "sync_boost",           // 0x10
    "sw_thermal_slowdown",  // 0x20
    "hw_thermal_slowdown",  // 0x40
    "hw_power_brake",       // 0x80
    "display_clocks",       // 0x100
};

}  // namespace

struct Library::Api {
  Return (*init)();
  Return (*shutdown)();
  Return (*by_bus_id)(const char*, Device*);
  // Optional: a field whose call is missing stays empty.
  Return (*memory)(Device, Memory*) = nullptr;
  Return (*utilization)(Device, Utilization*) = nullptr;
  Return (*temperature)(Device, int, unsigned int*) = nullptr;
  Return (*clock)(Device, int, unsigned int*) = nullptr;
  Return (*throttle)(Device, unsigned long long*) = nullptr;
  Return (*ecc)(Device, int, int, unsigned long long*) = nullptr;
};

std::vector<std::string> throttle_reason_names(uint64_t mask) {
  std::vector<std::string> out;
  for (int bit = 0; bit < 64; ++bit) {
    if (!(mask & (uint64_t{1} << bit))) continue;
    constexpr int known = static_cast<int>(sizeof kThrottleNames / sizeof kThrottleNames[0]);
    out.push_back(bit < known ? kThrottleNames[bit] : "bit_" + std::to_string(bit));
  }
  return out;
}

Library::Library(const char* soname) {
  dl_ = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
  if (!dl_) {
    const char* e = dlerror();
    why_absent_ = std::string(soname) + " cannot be loaded" + (e ? std::string(": ") + e : "");
    return;
  }
  auto api = std::make_unique<Api>();
  std::string missing;
  // Required symbols; a missing one makes the library unusable.
  auto need = [&](auto& fn, const char* name) {
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(dl_, name));
    if (!fn && missing.empty()) missing = name;
  };
  auto want = [&](auto& fn, const char* name) {
    if (!fn) fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(dl_, name));
  };
  need(api->init, "nvmlInit_v2");
  need(api->shutdown, "nvmlShutdown");
  need(api->by_bus_id, "nvmlDeviceGetHandleByPciBusId_v2");
  want(api->memory, "nvmlDeviceGetMemoryInfo");
  want(api->utilization, "nvmlDeviceGetUtilizationRates");
  want(api->temperature, "nvmlDeviceGetTemperature");
  want(api->clock, "nvmlDeviceGetClockInfo");
  // Renamed "clocks event reasons" in newer drivers; the old name stays exported.
  want(api->throttle, "nvmlDeviceGetCurrentClocksThrottleReasons");
  want(api->throttle, "nvmlDeviceGetCurrentClocksEventReasons");
  want(api->ecc, "nvmlDeviceGetTotalEccErrors");
  if (!missing.empty()) {
    why_absent_ = std::string(soname) + " has no " + missing;
  } else if (const Return rc = api->init(); rc != kSuccess) {
    why_absent_ = "nvmlInit_v2 failed with NVML error " + std::to_string(rc);
  } else {
    api_ = std::move(api);
    return;
  }
  dlclose(dl_);
  dl_ = nullptr;
}

Library::~Library() {
  if (api_) (void)api_->shutdown();
  if (dl_) dlclose(dl_);
}

std::optional<GpuReading> Library::read(const std::string& pci_bus_id) const {
  if (!api_) return std::nullopt;
  Device dev = nullptr;
  if (api_->by_bus_id(pci_bus_id.c_str(), &dev) != kSuccess || !dev) return std::nullopt;
  GpuReading r;
  if (Memory m{}; api_->memory && api_->memory(dev, &m) == kSuccess) {
    r.memory_used_bytes = m.used;
    r.memory_total_bytes = m.total;
  }
  if (Utilization u{}; api_->utilization && api_->utilization(dev, &u) == kSuccess) {
    r.utilization_gpu_pct = u.gpu;
    r.utilization_memory_pct = u.memory;
  }
  unsigned int v = 0;
  if (api_->temperature && api_->temperature(dev, kTemperatureGpu, &v) == kSuccess)
    r.temperature_c = v;
  if (api_->clock && api_->clock(dev, kClockSm, &v) == kSuccess) r.sm_clock_mhz = v;
  if (api_->clock && api_->clock(dev, kClockMem, &v) == kSuccess) r.memory_clock_mhz = v;
  unsigned long long n = 0;
  if (api_->throttle && api_->throttle(dev, &n) == kSuccess) r.throttle_reasons = n;
  // NVML_ERROR_NOT_SUPPORTED where ECC is off: the field stays empty.
  if (api_->ecc && api_->ecc(dev, kMemoryErrorUncorrected, kVolatileEcc, &n) == kSuccess)
    r.ecc_uncorrectable = n;
  return r;
}

}  // namespace tpinfer::nvml
