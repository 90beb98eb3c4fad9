// The health report's parts that need no MPI: the NVML loader where the
// library is missing or wrong, a rank's status on the wire and in the metrics
// file, the metrics line, and the rules that name a rank in the log.
#include <gtest/gtest.h>

#include "base/error.hpp"
#include "job/health_record.hpp"
#include "job/nvml.hpp"

namespace tpinfer::health {
namespace {

using nlohmann::ordered_json;

TEST(Nvml, AMissingLibraryIsAbsentWithTheReason) {
  nvml::Library lib("libtpinfer-no-such-nvml.so.1");
  EXPECT_FALSE(lib.available());
  EXPECT_NE(lib.why_absent().find("libtpinfer-no-such-nvml.so.1 cannot be loaded"),
            std::string::npos)
      << lib.why_absent();
  EXPECT_FALSE(lib.read("00000000:01:00.0").has_value());
}

TEST(Nvml, ALibraryWithoutNvmlSymbolsIsAbsentNamingTheFirstMissing) {
  nvml::Library lib("libc.so.6");  // loads, but is not NVML
  EXPECT_FALSE(lib.available());
  EXPECT_EQ(lib.why_absent(), "libc.so.6 has no nvmlInit_v2");
}

TEST(Nvml, TheSystemLibraryIsEitherUsableOrAbsentCleanly) {
  nvml::Library lib;  // libnvidia-ml.so.1: absent on cpu-only machines
  if (!lib.available()) {
    EXPECT_NE(lib.why_absent().find("libnvidia-ml.so.1"), std::string::npos) << lib.why_absent();
  } else {
    EXPECT_EQ(lib.why_absent(), "");
  }
  // No GPU sits at this bus id, with or without NVML.
  EXPECT_FALSE(lib.read("0000ffff:ff:1f.7").has_value());
}

TEST(Nvml, ThrottleReasonBitsHaveNames) {
  EXPECT_TRUE(nvml::throttle_reason_names(0).empty());
  EXPECT_EQ(nvml::throttle_reason_names(0x1 | 0x4 | 0x40),
            (std::vector<std::string>{"gpu_idle", "sw_power_cap", "hw_thermal_slowdown"}));
  EXPECT_EQ(nvml::throttle_reason_names(0x100 | (uint64_t{1} << 40)),
            (std::vector<std::string>{"display_clocks", "bit_40"}));
}

RankStatus gpu_status() {
  RankStatus s;
  s.rank = 3;
  s.steps = 1234;
  s.has_work = true;
  s.rss_bytes = 1 << 30;
  s.pci_bus_id = "00000000:1B:00.0";
  nvml::GpuReading r;
  r.memory_used_bytes = 70ull << 30;
  r.memory_total_bytes = 80ull << 30;
  r.utilization_gpu_pct = 97;
  r.utilization_memory_pct = 41;
  r.temperature_c = 64;
  r.sm_clock_mhz = 1980;
  r.memory_clock_mhz = 2619;
  r.throttle_reasons = 0x4;
  // ECC not supported on this GPU: stays empty
  s.gpu = r;
  return s;
}

TEST(HealthRecord, ACpuRankHasNoGpuFields) {
  RankStatus s;
  s.rank = 1;
  s.steps = 7;
  s.rss_bytes = 4096;
  const ordered_json j = status_to_json(s);
  EXPECT_EQ(j.dump(), R"({"rank":1,"steps":7,"has_work":false,"rss_bytes":4096})");
  const RankStatus back = status_from_json(j);
  EXPECT_EQ(back.rank, 1);
  EXPECT_EQ(back.steps, 7);
  EXPECT_EQ(back.rss_bytes, 4096);
  EXPECT_TRUE(back.pci_bus_id.empty());
  EXPECT_FALSE(back.gpu.has_value());
}

TEST(HealthRecord, AGpuRankCarriesItsReadingThereAndBack) {
  const ordered_json j = status_to_json(gpu_status());
  const ordered_json& g = j.at("gpu");
  EXPECT_EQ(g.at("pci_bus_id"), "00000000:1B:00.0");
  EXPECT_EQ(g.at("memory_used_bytes"), 70ull << 30);
  EXPECT_EQ(g.at("memory_total_bytes"), 80ull << 30);
  EXPECT_EQ(g.at("utilization_gpu_pct"), 97);
  EXPECT_EQ(g.at("utilization_memory_pct"), 41);
  EXPECT_EQ(g.at("temperature_c"), 64);
  EXPECT_EQ(g.at("sm_clock_mhz"), 1980);
  EXPECT_EQ(g.at("memory_clock_mhz"), 2619);
  EXPECT_EQ(g.at("throttle_mask"), 4);
  EXPECT_EQ(g.at("throttle_reasons"), ordered_json::array({"sw_power_cap"}));
  EXPECT_TRUE(g.at("ecc_uncorrectable").is_null());
  // Through the wire as text, as rank 0 receives it.
  const RankStatus back = status_from_json(ordered_json::parse(j.dump()));
  ASSERT_TRUE(back.gpu.has_value());
  EXPECT_EQ(back.rank, 3);
  EXPECT_EQ(back.steps, 1234);
  EXPECT_TRUE(back.has_work);
  EXPECT_EQ(back.gpu->memory_used_bytes, 70ull << 30);
  EXPECT_EQ(back.gpu->sm_clock_mhz, 1980u);
  EXPECT_EQ(back.gpu->throttle_reasons, 4u);
  EXPECT_FALSE(back.gpu->ecc_uncorrectable.has_value());
  EXPECT_EQ(status_to_json(back).dump(), j.dump());
}

TEST(HealthRecord, AGpuWithoutNvmlSaysWhy) {
  RankStatus s = gpu_status();
  s.gpu.reset();
  s.gpu_error = "libnvidia-ml.so.1 cannot be loaded";
  const ordered_json j = status_to_json(s);
  EXPECT_EQ(j.at("gpu").dump(),
            R"({"pci_bus_id":"00000000:1B:00.0","error":"libnvidia-ml.so.1 cannot be loaded"})");
  const RankStatus back = status_from_json(j);
  EXPECT_FALSE(back.gpu.has_value());
  EXPECT_EQ(back.gpu_error, s.gpu_error);
}

TEST(HealthRecord, AMalformedStatusIsAnError) {
  EXPECT_THROW(status_from_json(ordered_json{{"rank", 1}}), Error);
  EXPECT_THROW(status_from_json(ordered_json{{"rank", "x"}, {"steps", 1}, {"has_work", true}}),
               Error);
}

TEST(HealthRecord, AMetricsLineHasTheCountersRatesAndEta) {
  JobProgress before{10, 100, 1, 2000, 4.0};
  JobProgress now{25, 100, 2, 5000, 10.0};
  ordered_json ranks = ordered_json::array({{{"rank", 0}}, {{"rank", 1}}});
  const ordered_json j = metrics_record(1700000000.12345, now, before, ranks, false);
  EXPECT_EQ(j.begin().key(), "time");
  EXPECT_DOUBLE_EQ(j.at("time").get<double>(), 1700000000.123);
  EXPECT_EQ(j.at("requests_done"), 25);
  EXPECT_EQ(j.at("requests_total"), 100);
  EXPECT_EQ(j.at("errors"), 2);
  EXPECT_EQ(j.at("generated_tokens"), 5000);
  EXPECT_DOUBLE_EQ(j.at("tokens_per_s").get<double>(), 500.0);         // 5000 / 10 s
  EXPECT_DOUBLE_EQ(j.at("recent_tokens_per_s").get<double>(), 500.0);  // 3000 / 6 s
  EXPECT_DOUBLE_EQ(j.at("eta_s").get<double>(), 30.0);                 // 75 left at 2.5 requests/s
  EXPECT_EQ(j.at("final"), false);
  EXPECT_EQ(j.at("ranks"), ranks);

  now.generated_tokens = 3200;  // only 1200 since the last line
  EXPECT_DOUBLE_EQ(
      metrics_record(0, now, before, ranks, false).at("recent_tokens_per_s").get<double>(), 200.0);
}

TEST(HealthRecord, EtaIsUnknownBeforeTheFirstResultAndZeroAtTheEnd) {
  const ordered_json start = metrics_record(0, {0, 8, 0, 0, 0.0}, {}, ordered_json::array(), false);
  EXPECT_TRUE(start.at("eta_s").is_null());
  EXPECT_DOUBLE_EQ(start.at("tokens_per_s").get<double>(), 0.0);
  // One request left of 16 after 0.4 s: 0.027 s, never shown as 0 while work is left.
  const ordered_json near =
      metrics_record(0, {15, 16, 0, 960, 0.401}, {}, ordered_json::array(), false);
  EXPECT_DOUBLE_EQ(near.at("eta_s").get<double>(), 0.027);
  const ordered_json end = metrics_record(0, {8, 8, 0, 80, 2.0}, {}, ordered_json::array(), true);
  EXPECT_DOUBLE_EQ(end.at("eta_s").get<double>(), 0.0);
  EXPECT_EQ(end.at("final"), true);
}

TEST(HealthStall, AThresholdOfSeveralIntervalsAndAtLeastThirtySeconds) {
  EXPECT_DOUBLE_EQ(stall_after_s(0.2), 30.0);
  EXPECT_DOUBLE_EQ(stall_after_s(5.0), 30.0);
  EXPECT_DOUBLE_EQ(stall_after_s(10.0), 60.0);
}

TEST(HealthStall, ARankWithWorkAndNoNewStepsStallsOnce) {
  StallWatch w;
  EXPECT_FALSE(newly_stalled(w, 1000.0, 30.0));  // never heard of: not stalled
  note_report(w, 10, true, 0.0);
  note_report(w, 10, true, 20.0);  // same step, still within the limit
  EXPECT_FALSE(is_stalled(w, 29.9, 30.0));
  EXPECT_FALSE(newly_stalled(w, 29.9, 30.0));
  EXPECT_TRUE(is_stalled(w, 30.0, 30.0));
  EXPECT_TRUE(newly_stalled(w, 30.0, 30.0));
  EXPECT_FALSE(newly_stalled(w, 45.0, 30.0));  // named once
  EXPECT_TRUE(is_stalled(w, 45.0, 30.0));
  // It moves again: the clock restarts, and a new stall is named anew.
  note_report(w, 11, true, 50.0);
  EXPECT_FALSE(is_stalled(w, 79.0, 30.0));
  EXPECT_TRUE(newly_stalled(w, 80.0, 30.0));
}

TEST(HealthStall, ARankWithoutWorkIsNotStalledAndWorkRestartsTheClock) {
  StallWatch w;
  note_report(w, 5, false, 0.0);  // waiting for work at step 5
  EXPECT_FALSE(newly_stalled(w, 100.0, 30.0));
  note_report(w, 5, true, 100.0);  // work arrives; no step taken yet
  EXPECT_FALSE(is_stalled(w, 129.0, 30.0));
  EXPECT_TRUE(newly_stalled(w, 130.0, 30.0));
  // A rank that stops reporting keeps its last state: still stalled later.
  EXPECT_TRUE(is_stalled(w, 500.0, 30.0));
}

TEST(HealthStall, TheWarningNamesTheRank) {
  EXPECT_EQ(stall_warning(3, 120, 31.4),
            "tpinfer: warning: rank 3 has made no progress for 31 s (still at step 120 with "
            "requests in hand): stuck or very slow");
}

TEST(HealthEcc, UncorrectableErrorsAreNamedWhenTheyAppearOrGrow) {
  uint64_t reported = 0;
  RankStatus s = gpu_status();
  EXPECT_FALSE(ecc_warning(s, &reported));  // ECC unsupported: nothing to say
  s.gpu->ecc_uncorrectable = 0;
  EXPECT_FALSE(ecc_warning(s, &reported));
  s.gpu->ecc_uncorrectable = 2;
  const auto w = ecc_warning(s, &reported);
  ASSERT_TRUE(w.has_value());
  EXPECT_EQ(w->rfind("tpinfer: warning: rank 3: GPU 00000000:1B:00.0 reports 2 uncorrectable", 0),
            0u)
      << *w;
  EXPECT_EQ(reported, 2u);
  EXPECT_FALSE(ecc_warning(s, &reported));  // the same count: said already
  s.gpu->ecc_uncorrectable = 3;
  EXPECT_TRUE(ecc_warning(s, &reported));
  RankStatus cpu;
  EXPECT_FALSE(ecc_warning(cpu, &reported));
}

}  // namespace
}  // namespace tpinfer::health
