// The prefix cache in the health report: a group leader's counters on the wire
// and their sum and hit rate in the metrics line.
#include <gtest/gtest.h>

#include "base/error.hpp"
#include "job/health_record.hpp"

namespace tpinfer::health {
namespace {

using nlohmann::ordered_json;

TEST(HealthPrefixCache, ALeadersCountersRoundTripAndOthersHaveNone) {
  RankStatus leader;
  leader.rank = 2;
  leader.prefix_cache = CacheCounters{1234, 7, 5000};
  const RankStatus back = status_from_json(status_to_json(leader));
  ASSERT_TRUE(back.prefix_cache.has_value());
  EXPECT_EQ(back.prefix_cache->cached_tokens, 1234);
  EXPECT_EQ(back.prefix_cache->evicted_blocks, 7);
  EXPECT_EQ(back.prefix_cache->prompt_tokens, 5000);

  RankStatus peer;  // a TP peer: its group's counters come from the leader
  const ordered_json j = status_to_json(peer);
  EXPECT_FALSE(j.contains("prefix_cache")) << j.dump();
  EXPECT_FALSE(status_from_json(j).prefix_cache.has_value());

  ordered_json bad = status_to_json(leader);
  bad["prefix_cache"].erase("evicted_blocks");
  EXPECT_THROW(status_from_json(bad), Error);
}

TEST(HealthPrefixCache, TheMetricsLineSumsTheLeadersAndGivesTheHitRate) {
  JobProgress now{10, 10, 0, 80, 2.0, 4000};
  ordered_json ranks = ordered_json::array();
  RankStatus a, b, c;
  a.rank = 0;
  a.prefix_cache = CacheCounters{1000, 3, 1500};
  b.rank = 1;  // a TP peer of rank 0
  c.rank = 2;
  c.prefix_cache = CacheCounters{2000, 4, 2500};
  for (const RankStatus* s : {&a, &b, &c}) ranks.push_back(status_to_json(*s));
  ranks.push_back({{"rank", 3}, {"report_age_s", nullptr}});  // not heard from yet
  const ordered_json j = metrics_record(0, now, {}, ranks, true);
  EXPECT_EQ(j.at("prompt_tokens"), 4000);
  EXPECT_EQ(j.at("prefix_cache_tokens"), 3000);
  EXPECT_DOUBLE_EQ(j.at("prefix_cache_hit_rate").get<double>(), 0.75);
  EXPECT_EQ(j.at("evicted_blocks"), 7);

  // The rate is over the sequences' prompts (n completions count n), not the
  // requests' prompt_tokens: 3000 of 4000 here whatever the job's count.
  const ordered_json start = metrics_record(0, {0, 10, 0, 0, 0.1, 0}, {}, ranks, false);
  EXPECT_DOUBLE_EQ(start.at("prefix_cache_hit_rate").get<double>(), 0.75);
  EXPECT_EQ(start.at("prefix_cache_tokens"), 3000);
  // Before any sequence is admitted the rate is unknown, not 0 or infinite.
  const ordered_json none = metrics_record(0, now, {}, ordered_json::array(), true);
  EXPECT_TRUE(none.at("prefix_cache_hit_rate").is_null());
  EXPECT_EQ(none.at("evicted_blocks"), 0);
  // With the cache off: counters of zero cached tokens give 0.
  RankStatus off;
  off.prefix_cache = CacheCounters{0, 0, 900};
  const ordered_json zero =
      metrics_record(0, now, {}, ordered_json::array({status_to_json(off)}), true);
  EXPECT_DOUBLE_EQ(zero.at("prefix_cache_hit_rate").get<double>(), 0.0);
}

}  // namespace
}  // namespace tpinfer::health
