#include "io/npy_header.h"

#include <cctype>
#include <cstring>

namespace flashkm {
namespace io_detail {
namespace {

constexpr unsigned char kMagic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};

// The header is a Python dict literal such as
//   {'descr': '<f4', 'fortran_order': False, 'shape': (1000, 128), }
// numpy writes exactly these three keys; this parser accepts any spacing and quote style
// numpy's own reader (ast.literal_eval) would, for the value types those keys can hold.
class DictParser {
 public:
  DictParser(const std::string& path, const std::string& text) : path_(path), s_(text) {}

  NpyHeader parse() {
    NpyHeader h;
    bool have_descr = false, have_order = false, have_shape = false;
    skip_ws();
    expect('{');
    for (;;) {
      skip_ws();
      if (peek() == '}') break;
      std::string key = parse_string();
      skip_ws();
      expect(':');
      skip_ws();
      if (key == "descr") {
        h.dtype = parse_descr(parse_string());
        have_descr = true;
      } else if (key == "fortran_order") {
        bool fortran = parse_bool();
        FLASHKM_THROW_IF_NOT(!fortran,
                             "%s: npy array is in Fortran (column-major) order; expected C order "
                             "(save it with numpy.ascontiguousarray)",
                             path_.c_str());
        have_order = true;
      } else if (key == "shape") {
        h.shape = parse_shape();
        have_shape = true;
      } else {
        fail("unexpected key '" + key + "'");
      }
      skip_ws();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      skip_ws();
      if (peek() != '}') fail("expected ',' or '}'");
    }
    ++pos_;
    skip_ws();
    if (pos_ != s_.size()) fail("unexpected text after the closing '}'");
    if (!have_descr) fail("missing key 'descr'");
    if (!have_order) fail("missing key 'fortran_order'");
    if (!have_shape) fail("missing key 'shape'");
    return h;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    FLASHKM_THROW("%s: malformed npy header: %s at header byte %zu in \"%s\"", path_.c_str(),
                  what.c_str(), pos_, s_.c_str());
  }
  char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  void skip_ws() {
    while (pos_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[pos_]))) ++pos_;
  }
  void expect(char c) {
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++pos_;
  }
  std::string parse_string() {
    char q = peek();
    if (q != '\'' && q != '"') fail("expected a quoted string");
    size_t end = s_.find(q, pos_ + 1);
    if (end == std::string::npos) fail("unterminated string");
    std::string out = s_.substr(pos_ + 1, end - pos_ - 1);
    pos_ = end + 1;
    return out;
  }
  bool parse_bool() {
    if (s_.compare(pos_, 4, "True") == 0) {
      pos_ += 4;
      return true;
    }
    if (s_.compare(pos_, 5, "False") == 0) {
      pos_ += 5;
      return false;
    }
    fail("expected True or False");
  }
  std::vector<int64_t> parse_shape() {
    std::vector<int64_t> shape;
    expect('(');
    for (;;) {
      skip_ws();
      if (peek() == ')') break;
      if (!std::isdigit(static_cast<unsigned char>(peek()))) fail("expected a dimension");
      int64_t v = 0;
      while (std::isdigit(static_cast<unsigned char>(peek()))) {
        if (v > (INT64_MAX - 9) / 10) fail("dimension too large");
        v = v * 10 + (s_[pos_++] - '0');
      }
      shape.push_back(v);
      skip_ws();
      if (peek() == ',') {
        ++pos_;
      } else if (peek() != ')') {
        fail("expected ',' or ')' in shape");
      }
    }
    ++pos_;
    return shape;
  }
  DType parse_descr(const std::string& d) {
    if (d == "<f4") return DType::Float32;
    if (d == "<f2") return DType::Float16;
    if (d == "<f8") return DType::Float64;
    if (d == "|u1" || d == "<u1" || d == "u1") return DType::UInt8;
    if (d == "<i4") return DType::Int32;
    if (d == "<i8") return DType::Int64;
    FLASHKM_THROW(
        "%s: unsupported npy dtype '%s'; expected one of <f4, <f2, <f8, |u1, <i4, <i8 "
        "(little-endian)",
        path_.c_str(), d.c_str());
  }

  const std::string& path_;
  const std::string& s_;
  size_t pos_ = 0;
};

uint32_t load_le(const unsigned char* p, int bytes) {
  uint32_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

size_t dtype_size(DType t) {
  switch (t) {
    case DType::Float32:
    case DType::Int32:
      return 4;
    case DType::Float16:
      return 2;
    case DType::Float64:
    case DType::Int64:
      return 8;
    case DType::UInt8:
      return 1;
  }
  FLASHKM_ASSERT(false);
  return 0;
}

NpyHeader parse_npy_header(const std::string& path, const unsigned char* bytes, size_t size) {
  FLASHKM_THROW_IF_NOT(size >= 10 && std::memcmp(bytes, kMagic, sizeof(kMagic)) == 0,
                       "%s: not a .npy file: it does not start with the magic \\x93NUMPY",
                       path.c_str());
  int major = bytes[6];
  FLASHKM_THROW_IF_NOT(major >= 1 && major <= 3,
                       "%s: unsupported npy format version %d.%d; expected 1.x, 2.x or 3.x",
                       path.c_str(), major, bytes[7]);
  size_t len_bytes = major == 1 ? 2 : 4;
  FLASHKM_THROW_IF_NOT(size >= 8 + len_bytes, "%s: truncated npy header (file has %zu bytes)",
                       path.c_str(), size);
  size_t header_len = load_le(bytes + 8, static_cast<int>(len_bytes));
  size_t offset = 8 + len_bytes + header_len;
  FLASHKM_THROW_IF_NOT(offset <= size,
                       "%s: truncated npy header: it declares %zu header bytes, the file has %zu "
                       "bytes in all",
                       path.c_str(), header_len, size);
  std::string text(reinterpret_cast<const char*>(bytes) + 8 + len_bytes, header_len);
  NpyHeader h = DictParser(path, text).parse();
  h.data_offset = offset;
  return h;
}

std::string format_npy_header(const char* descr, const std::vector<int64_t>& shape) {
  std::string dict = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (";
  for (size_t i = 0; i < shape.size(); ++i) {
    dict += std::to_string(shape[i]);
    if (i + 1 < shape.size() || shape.size() == 1) dict += ",";
    if (i + 1 < shape.size()) dict += " ";
  }
  dict += "), }";
  // numpy pads with spaces and ends with '\n' so the data starts 64-byte aligned.
  size_t total = 10 + dict.size() + 1;
  dict.append((64 - total % 64) % 64, ' ');
  dict += '\n';
  FLASHKM_ASSERT(dict.size() < 65536);
  std::string out(reinterpret_cast<const char*>(kMagic), sizeof(kMagic));
  out += '\x01';
  out += '\x00';
  out += static_cast<char>(dict.size() & 0xff);
  out += static_cast<char>(dict.size() >> 8);
  out += dict;
  return out;
}

}  // namespace io_detail
}  // namespace flashkm
