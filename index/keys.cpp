#include "index/keys.h"

#include <cstdlib>

namespace flashkm {
namespace index {

std::string lists_cf_name(uint64_t g) { return "lists." + std::to_string(g); }
std::string centroids_cf_name(uint64_t g) { return "centroids." + std::to_string(g); }
std::string idmap_cf_name(uint64_t g) { return "idmap." + std::to_string(g); }

bool parse_generation_cf(const std::string& name, uint64_t* generation) {
  for (const char* prefix : {"lists.", "centroids.", "idmap."}) {
    std::string p(prefix);
    if (name.size() <= p.size() || name.compare(0, p.size(), p) != 0) continue;
    uint64_t g = 0;
    for (size_t i = p.size(); i < name.size(); ++i) {
      char c = name[i];
      if (c < '0' || c > '9' || g > (UINT64_MAX - 9) / 10) return false;
      g = g * 10 + uint64_t(c - '0');
    }
    *generation = g;
    return true;
  }
  return false;
}

void put_be32(std::string* dst, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) dst->push_back(char((v >> s) & 0xff));
}

void put_be64(std::string* dst, uint64_t v) {
  for (int s = 56; s >= 0; s -= 8) dst->push_back(char((v >> s) & 0xff));
}

uint32_t get_be32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | uint8_t(p[i]);
  return v;
}

uint64_t get_be64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | uint8_t(p[i]);
  return v;
}

std::string list_key(uint32_t list_no, uint64_t id) {
  std::string k;
  k.reserve(kListKeySize);
  put_be32(&k, list_no);
  put_be64(&k, id);
  return k;
}

std::string list_prefix(uint32_t list_no) {
  std::string k;
  put_be32(&k, list_no);
  return k;
}

bool parse_list_key(const char* data, size_t size, uint32_t* list_no, uint64_t* id) {
  if (size != kListKeySize) return false;
  *list_no = get_be32(data);
  *id = get_be64(data + 4);
  return true;
}

std::string id_key(uint64_t id) {
  std::string k;
  put_be64(&k, id);
  return k;
}

std::string centroid_key(uint32_t list_no) { return list_prefix(list_no); }

std::string faiss_blob_key(uint64_t generation) {
  std::string k = "faiss";
  put_be32(&k, uint32_t(generation));
  return k;
}

std::string list_size_key(uint64_t generation, uint32_t list_no) {
  std::string k = "size";
  put_be32(&k, uint32_t(generation));
  put_be32(&k, list_no);
  return k;
}

std::string size_range_begin(uint64_t generation) {
  std::string k = "size";
  put_be32(&k, uint32_t(generation));
  return k;
}

std::string size_range_end(uint64_t generation) {
  std::string k = "size";
  put_be32(&k, uint32_t(generation) + 1);
  return k;
}

}  // namespace index
}  // namespace flashkm
