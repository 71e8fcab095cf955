#include "flashkm/error.h"

#include <cstdarg>
#include <vector>

namespace flashkm {
namespace detail {

std::string format_message(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  va_list ap2;
  va_copy(ap2, ap);
  int len = std::vsnprintf(nullptr, 0, fmt, ap);
  va_end(ap);
  std::vector<char> buf(len > 0 ? len + 1 : 1);
  std::vsnprintf(buf.data(), buf.size(), fmt, ap2);
  va_end(ap2);
  return std::string(buf.data());
}

void throw_error(const char* file, int line, const std::string& msg) {
  // Strip the directory: users need the message, developers the file name.
  const char* base = file;
  for (const char* p = file; *p; ++p)
    if (*p == '/') base = p + 1;
  throw Error(msg + " (" + base + ":" + std::to_string(line) + ")");
}

void assert_fail(const char* file, int line, const char* cond) {
  std::fprintf(stderr, "flashkm: internal error: %s failed at %s:%d\n", cond, file, line);
  std::abort();
}

}  // namespace detail
}  // namespace flashkm
