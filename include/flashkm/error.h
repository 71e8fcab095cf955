// PUBLIC: errors thrown by flashkm.
//
// Caller mistakes (bad shapes, NaN input, k > n, malformed files) throw flashkm::Error with a
// message that names the bad value and what was expected. Broken internal invariants abort
// through FLASHKM_ASSERT: they are bugs, not input errors.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace flashkm {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
// printf-style formatting into a std::string; used by the macros below.
std::string format_message(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
[[noreturn]] void throw_error(const char* file, int line, const std::string& msg);
[[noreturn]] void assert_fail(const char* file, int line, const char* cond);
}  // namespace detail

}  // namespace flashkm

/// Throws flashkm::Error("<message> (<file>:<line>)") unless cond holds.
#define FLASHKM_THROW_IF_NOT(cond, ...)                                                    \
  do {                                                                                     \
    if (!(cond)) {                                                                         \
      ::flashkm::detail::throw_error(__FILE__, __LINE__,                                   \
                                     ::flashkm::detail::format_message(__VA_ARGS__));      \
    }                                                                                      \
  } while (0)

/// Throws flashkm::Error unconditionally.
#define FLASHKM_THROW(...) \
  ::flashkm::detail::throw_error(__FILE__, __LINE__, ::flashkm::detail::format_message(__VA_ARGS__))

/// Aborts with a message when an internal invariant is broken (a bug, never bad input).
#define FLASHKM_ASSERT(cond)                                         \
  do {                                                               \
    if (!(cond)) ::flashkm::detail::assert_fail(__FILE__, __LINE__, #cond); \
  } while (0)
