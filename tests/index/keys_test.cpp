// Pins the on-disk byte layout documented in index/keys.h.
#include "index/keys.h"

#include <gtest/gtest.h>

namespace flashkm {
namespace index {
namespace {

std::string hex(const std::string& s) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}

TEST(Keys, ListKeyIsBigEndianListThenId) {
  EXPECT_EQ(hex(list_key(0x01020304u, 0x05060708090a0b0cull)), "0102030405060708090a0b0c");
  EXPECT_EQ(hex(list_key(0, 0)), "000000000000000000000000");
  EXPECT_EQ(list_key(7, 1).size(), kListKeySize);
  uint32_t l;
  uint64_t id;
  std::string k = list_key(4000000000u, 0xfedcba9876543210ull);
  ASSERT_TRUE(parse_list_key(k.data(), k.size(), &l, &id));
  EXPECT_EQ(l, 4000000000u);
  EXPECT_EQ(id, 0xfedcba9876543210ull);
  EXPECT_FALSE(parse_list_key(k.data(), 11, &l, &id));
}

TEST(Keys, BytewiseOrderIsNumericOrder) {
  // One list is one contiguous range sorted by id: (1, max id) < (2, 0) and (1, 255) < (1, 256).
  EXPECT_LT(list_key(1, ~0ull), list_key(2, 0));
  EXPECT_LT(list_key(1, 255), list_key(1, 256));
  EXPECT_LT(list_key(1, 0), list_prefix(2));
  EXPECT_GE(list_key(1, 0), list_prefix(1));
  EXPECT_LT(id_key(255), id_key(256));
}

TEST(Keys, OtherRecords) {
  EXPECT_EQ(hex(id_key(0x0102030405060708ull)), "0102030405060708");
  EXPECT_EQ(hex(centroid_key(258)), "00000102");
  EXPECT_EQ(list_size_key(3, 5), std::string("size") + std::string("\0\0\0\3\0\0\0\5", 8));
  EXPECT_EQ(faiss_blob_key(3), std::string("faiss") + std::string("\0\0\0\3", 4));
  EXPECT_GE(list_size_key(3, 0xffffffffu), size_range_begin(3));
  EXPECT_LT(list_size_key(3, 0xffffffffu), size_range_end(3));
  EXPECT_LT(list_size_key(2, 0xffffffffu), size_range_begin(3));
  EXPECT_STREQ(kMetaCF, "meta");
  EXPECT_STREQ(kVectorsCF, "vectors");
  EXPECT_STREQ(kManifestKey, "manifest");
  EXPECT_EQ(kFormatVersion, 1u);
}

TEST(Keys, GenerationColumnFamilies) {
  EXPECT_EQ(lists_cf_name(12), "lists.12");
  EXPECT_EQ(centroids_cf_name(0), "centroids.0");
  EXPECT_EQ(idmap_cf_name(3), "idmap.3");
  uint64_t g = 0;
  EXPECT_TRUE(parse_generation_cf("idmap.42", &g));
  EXPECT_EQ(g, 42u);
  EXPECT_FALSE(parse_generation_cf("meta", &g));
  EXPECT_FALSE(parse_generation_cf("lists.", &g));
  EXPECT_FALSE(parse_generation_cf("lists.4x", &g));
  EXPECT_FALSE(parse_generation_cf("vectors", &g));
}

TEST(Keys, FixedWidthIntegers) {
  std::string s;
  put_be32(&s, 0xdeadbeefu);
  put_be64(&s, 0x0123456789abcdefull);
  EXPECT_EQ(hex(s), "deadbeef0123456789abcdef");
  EXPECT_EQ(get_be32(s.data()), 0xdeadbeefu);
  EXPECT_EQ(get_be64(s.data() + 4), 0x0123456789abcdefull);
}

}  // namespace
}  // namespace index
}  // namespace flashkm
