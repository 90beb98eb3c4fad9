// The offline scheduler's prefix grouping: requests sharing their opening
// tokens go to one DP group, in the order their prefix was first read, and no
// group goes without work while another has a queue.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "job/prefix_affinity.hpp"

namespace tpinfer {
namespace {

// A request whose prompt is `prefix`'s 8 tokens then `tail`.
Request request(const std::string& id, int prefix, int tail) {
  Request r;
  r.id_json = id;
  for (int i = 0; i < 8; ++i) r.prompt.push_back(100 * prefix + i);
  r.prompt.push_back(tail);
  return r;
}

std::vector<std::string> ids(const std::vector<Request>& rs) {
  std::vector<std::string> out;
  for (const Request& r : rs) out.push_back(r.id_json);
  return out;
}

TEST(PrefixAffinity, OneGroupGetsEachPrefixTogetherInFirstReadOrder) {
  PrefixAffinity p(1, /*key_tokens=*/8);
  int tail = 0;
  for (const auto& [id, prefix] : std::vector<std::pair<std::string, int>>{
           {"a1", 1}, {"b1", 2}, {"a2", 1}, {"c1", 3}, {"b2", 2}, {"a3", 1}})
    p.add(request(id, prefix, tail++));
  EXPECT_EQ(p.size(), 6);
  EXPECT_EQ(ids(p.take(0, 4)), (std::vector<std::string>{"a1", "a2", "a3", "b1"}));
  EXPECT_EQ(ids(p.take(0, 10)), (std::vector<std::string>{"b2", "c1"}));
  EXPECT_EQ(p.size(), 0);
  EXPECT_TRUE(p.take(0, 3).empty());
}

TEST(PrefixAffinity, GroupsKeepTheirPrefixesAndHelpOnlyWhenOutOfWork) {
  PrefixAffinity p(2, 8);
  for (int i = 0; i < 4; ++i) p.add(request("a" + std::to_string(i), 1, i));
  for (int i = 0; i < 4; ++i) p.add(request("b" + std::to_string(i), 2, i));
  p.add(request("c0", 3, 0));
  // Group 0 claims prefix a; group 1 finds a claimed and takes b.
  EXPECT_EQ(ids(p.take(0, 2)), (std::vector<std::string>{"a0", "a1"}));
  EXPECT_EQ(ids(p.take(1, 2)), (std::vector<std::string>{"b0", "b1"}));
  // More of a prefix read later stays with its group.
  p.add(request("a4", 1, 4));
  EXPECT_EQ(ids(p.take(1, 3)), (std::vector<std::string>{"b2", "b3", "c0"}));
  // Group 1 has nothing of its own and nothing unclaimed: it helps with a.
  EXPECT_EQ(ids(p.take(1, 2)), (std::vector<std::string>{"a2", "a3"}));
  EXPECT_EQ(ids(p.take(0, 5)), (std::vector<std::string>{"a4"}));
  EXPECT_EQ(p.size(), 0);
}

TEST(PrefixAffinity, OnlyTheOpeningTokensCountAndShortPromptsStillGroup) {
  PrefixAffinity p(1, 4);
  Request x = request("x", 5, 1), y = request("y", 5, 2), z = request("z", 6, 1);
  y.prompt[6] = 77;  // differs after the first 4 tokens: same group
  p.add(std::move(x));
  p.add(std::move(z));
  p.add(std::move(y));
  Request one;
  one.id_json = "one";
  one.prompt = {500};
  p.add(std::move(one));
  EXPECT_EQ(ids(p.take(0, 4)), (std::vector<std::string>{"x", "y", "z", "one"}));
}

}  // namespace
}  // namespace tpinfer
