#pragma once
// Where a tensor's bytes lie in a model file (contiguous datasets), so that a
// test can corrupt exactly them.
#include <gtest/gtest.h>
#include <hdf5.h>

#include <string>

namespace tpinfer::test {

struct DatasetBytes {
  haddr_t offset = HADDR_UNDEF;
  hsize_t size = 0;
};

inline DatasetBytes dataset_bytes(const std::string& file, const std::string& dataset) {
  DatasetBytes b;
  const hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  EXPECT_GE(f, 0) << file;
  if (f < 0) return b;
  const hid_t ds = H5Dopen2(f, dataset.c_str(), H5P_DEFAULT);
  EXPECT_GE(ds, 0) << dataset;
  if (ds >= 0) {
    b.offset = H5Dget_offset(ds);
    b.size = H5Dget_storage_size(ds);
    H5Dclose(ds);
  }
  H5Fclose(f);
  return b;
}

}  // namespace tpinfer::test
