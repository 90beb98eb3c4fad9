#include <gtest/gtest.h>

#include <filesystem>

int main(int argc, char** argv) {
  std::filesystem::create_directories(TPINFER_TEST_TMP);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
