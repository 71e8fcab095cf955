// PRIVATE to index/: every byte layout of the RocksDB index, documented in this one place and
// pinned by tests/index/keys_test.cpp. On-disk formats are permanent: change them only by
// bumping kFormatVersion and teaching open() the old layout.
//
// One RocksDB directory is one index. Column families and their records:
//
//   meta                "manifest"                       -> Manifest protobuf
//   (proto/manifest.proto)
//                       "faiss" | be32 generation        -> faiss::write_index of the generation's
//                                                           IndexIVF with empty lists, or of an
//                                                           IndexPreTransform (trained OPQ, PCA,
//                                                           ...) over it (quantizer,
//                                                           PQ/SQ parameters, precomputed tables
//                                                           are rebuilt on load)
//                       "size" | be32 generation | be32 list_no -> be64 entries in that list
//   vectors             be64 id                          -> d x float32, little-endian (raw
//                                                           vector; source of truth for
//                                                           re-clustering)
//   lists.<g>           be32 list_no | be64 id           -> code (code_size bytes)
//   centroids.<g>       be32 list_no                     -> d' x float32, little-endian (d' = d,
//                                                           or the output dimension of the
//                                                           pre-transforms)
//   idmap.<g>           be64 id                          -> be32 list_no
//
// Beside RocksDB's files the directory holds the folder "ingest" (kIngestDir): SST files of
// large adds before RocksDB ingests them (index/store.h, Ingestion); never part of the index,
// emptied by every read-write open.
//
// <g> is the decimal generation number, e.g. "lists.3". Big-endian keys make RocksDB's bytewise
// order equal numeric order, so one list is one contiguous key range sorted by id, and a
// generation's meta records form contiguous ranges. Ids are faiss idx_t values >= 0.
#pragma once

#include <cstdint>
#include <string>

namespace flashkm {
namespace index {

/// Version written in new manifests and the only one open() accepts.
constexpr uint32_t kFormatVersion = 1;

constexpr const char* kMetaCF = "meta";
constexpr const char* kVectorsCF = "vectors";
constexpr const char* kManifestKey = "manifest";
constexpr const char* kIngestDir = "ingest";

/// Column family names of a generation.
std::string lists_cf_name(uint64_t generation);
std::string centroids_cf_name(uint64_t generation);
std::string idmap_cf_name(uint64_t generation);
/// Generation of a per-generation column family name ("lists.7" -> 7); false when name is not
/// one (meta, vectors, default, or anything else).
bool parse_generation_cf(const std::string& name, uint64_t* generation);

void put_be32(std::string* dst, uint32_t v);
void put_be64(std::string* dst, uint64_t v);
uint32_t get_be32(const char* p);
uint64_t get_be64(const char* p);

/// lists.<g> key: be32 list_no | be64 id (12 bytes).
constexpr size_t kListKeySize = 12;
std::string list_key(uint32_t list_no, uint64_t id);
/// First key of list_no and the first key past it (iteration bounds of one list).
std::string list_prefix(uint32_t list_no);
/// Decodes a 12-byte list key; false when the size is wrong.
bool parse_list_key(const char* data, size_t size, uint32_t* list_no, uint64_t* id);

/// vectors / idmap.<g> key: be64 id.
std::string id_key(uint64_t id);
/// centroids.<g> key: be32 list_no.
std::string centroid_key(uint32_t list_no);

/// meta keys of one generation.
std::string faiss_blob_key(uint64_t generation);
std::string list_size_key(uint64_t generation, uint32_t list_no);
/// [begin, end) covering every "size" record of a generation.
std::string size_range_begin(uint64_t generation);
std::string size_range_end(uint64_t generation);

}  // namespace index
}  // namespace flashkm
