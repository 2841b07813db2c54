#pragma once

/// @file task_id.hpp
/// @brief task_id: a random (version 4) UUID as 128 bits, with its text form, as Celery's task
/// ids are.

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

#include <sys/random.h>
#include <sys/types.h>

namespace offload::detail {

/// A task id (result_store's, the Celery client's): a random version 4 UUID, kept as its 128
/// bits.
struct task_id {
  std::uint64_t hi = 0;
  std::uint64_t lo = 0;

  bool operator==(const task_id&) const = default;

  /// A new id from the kernel's random generator (getrandom, read 4 KiB at a time per
  /// thread), so that one holder of ids cannot work out the others.
  static task_id random() {
    struct random_words {
      std::uint64_t words[512];
      std::size_t next = 512;
      std::uint64_t take() {
        if (next == 512) {
          std::size_t got = 0;
          auto* bytes = reinterpret_cast<unsigned char*>(words);
          while (got < sizeof words) {
            const ssize_t n = ::getrandom(bytes + got, sizeof words - got, 0);
            if (n > 0)
              got += static_cast<std::size_t>(n);
            else if (errno != EINTR)
              throw std::system_error(errno, std::generic_category(), "offload: getrandom");
          }
          next = 0;
        }
        return words[next++];
      }
    };
    thread_local random_words p;
    task_id id{p.take(), p.take()};
    id.hi = (id.hi & ~std::uint64_t{0xF000}) | 0x4000;                         // version 4
    id.lo = (id.lo & ~(std::uint64_t{0xC} << 60)) | (std::uint64_t{8} << 60);  // variant 10
    return id;
  }

  /// The 36-character text form, as Celery's task ids are ("8-4-4-4-12" lower-case hex).
  std::string text() const {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    out.reserve(36);
    for (unsigned i = 0; i < 32; ++i) {
      if (i == 8 || i == 12 || i == 16 || i == 20)
        out += '-';
      const std::uint64_t word = i < 16 ? hi : lo;
      out += digits[(word >> (60 - 4 * (i % 16))) & 0xF];
    }
    return out;
  }

  /// The id a text form names; nothing for text that is not one.
  static std::optional<task_id> parse(std::string_view text) noexcept {
    if (text.size() != 36)
      return std::nullopt;
    task_id id;
    unsigned digit = 0;
    for (std::size_t i = 0; i < text.size(); ++i) {
      const char c = text[i];
      if (i == 8 || i == 13 || i == 18 || i == 23) {
        if (c != '-')
          return std::nullopt;
        continue;
      }
      std::uint64_t v = 0;
      if (c >= '0' && c <= '9')
        v = static_cast<std::uint64_t>(c - '0');
      else if (c >= 'a' && c <= 'f')
        v = static_cast<std::uint64_t>(c - 'a' + 10);
      else
        return std::nullopt;
      std::uint64_t& word = digit < 16 ? id.hi : id.lo;
      word = (word << 4) | v;
      ++digit;
    }
    return id;
  }
};

/// The random bits spread already: a multiply mixes the two words.
struct task_id_hash {
  std::size_t operator()(const task_id& id) const noexcept {
    return static_cast<std::size_t>((id.hi ^ (id.lo * 0x9E3779B97F4A7C15ull)) >> 1);
  }
};

}  // namespace offload::detail
