// bench --op-profile's table (src/cli/op_profile_report.hpp) against figures
// worked out by hand: per-step times, shares, rates and roofline fractions.
#include <gtest/gtest.h>

#include <sstream>
#include <string>

#include "cli/op_profile_report.hpp"

namespace tpinfer {
namespace {

// The line of the report that starts (after spaces) with `start`.
std::string line_of(const std::string& report, const std::string& start) {
  std::istringstream in(report);
  for (std::string l; std::getline(in, l);)
    if (l.find_first_not_of(' ') != std::string::npos &&
        l.compare(l.find_first_not_of(' '), start.size(), start) == 0)
      return l;
  return "";
}

TEST(OpProfileReport, PerStepTimesSharesRatesAndRoofline) {
  OpProfile p;
  auto& decode = p.kinds[1];
  decode.steps = 4;
  decode.span_ms = 40;  // 10 ms a step
  // 4096 x 14336 weights at 256 rows: 2 x 256 x 4096 x 14336 FLOPs a call, 32 calls a step.
  const double flops = 2.0 * 256 * 4096 * 14336, bytes = 2.0 * 4096 * 14336;
  decode.ops.push_back({"linear", 4096, 14336, 128, 24.0, 128 * flops, 128 * bytes});
  decode.ops.push_back({"rmsnorm", 0, 0, 260, 4.0, 0, 260 * 4.0 * 256 * 4096});
  const std::string r = op_profile_report(p, 3000, 800);
  EXPECT_EQ(line_of(r, "device time by op, steps with prompt"), "") << "no prompt steps ran";
  const std::string head = line_of(r, "device time by op, pure decode steps");
  EXPECT_NE(head.find("4 steps, 10.000 ms a step from first op to last, 7.000 in ops, "
                      "3.000 between them"),
            std::string::npos)
      << r;
  // 24 ms over 4 steps; 6 of 10 ms; 128 x 30.06 GFLOP in 24 ms = 160.3 TFLOP/s;
  // 128 x 117.4 MB of weights in 24 ms = 626.3 GB/s. The floor is the larger of
  // 4.810 ms (FLOPs at 800) and 5.011 ms (bytes at 3,000): 5.011 / 24 = 0.21.
  const std::string lin = line_of(r, "linear 4096x14336");
  EXPECT_NE(lin.find("32.0     6.000   60.0%    160.3    626.3      0.21"), std::string::npos)
      << lin;
  // rmsnorm: bytes-bound, 1.09 GB in 4 ms = 272.6 GB/s -> 0.09 of 3,000.
  const std::string norm = line_of(r, "rmsnorm");
  EXPECT_NE(norm.find("65.0     1.000   10.0%      0.0    272.6      0.09"), std::string::npos)
      << norm;
}

TEST(OpProfileReport, EmptyProfilePrintsNothing) {
  EXPECT_EQ(op_profile_report(OpProfile{}, 3000, 800), "");
}

}  // namespace
}  // namespace tpinfer
