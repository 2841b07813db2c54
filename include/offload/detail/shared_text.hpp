#pragma once

/// @file shared_text.hpp
/// @brief shared_text: an immutable, reference-counted string (a task's name or key), and
/// text_ref, the owning handle. Lives while a task, plan, timer entry or table refers to it.

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

namespace offload::detail {

/// The text never changes once made; only the count does.
struct shared_text {
  explicit shared_text(std::string_view t) : text(t) {}
  std::atomic<std::uint32_t> refs{1};
  const std::string text;

  void add_ref() noexcept { refs.fetch_add(1, std::memory_order_relaxed); }
  void release() noexcept {
    // acq_rel; the last owner sees every other owner's reads of the text before deleting it.
    if (refs.fetch_sub(1, std::memory_order_acq_rel) == 1)
      delete this;
  }
};

/// Owns one reference to a shared_text (or none).
class text_ref {
 public:
  text_ref() noexcept = default;
  /// Adopts one reference the caller holds.
  static text_ref adopt(shared_text* t) noexcept { return text_ref(t); }
  /// A new reference to `t` (which the caller keeps alive meanwhile).
  static text_ref share(shared_text* t) noexcept {
    if (t != nullptr)
      t->add_ref();
    return text_ref(t);
  }
  text_ref(const text_ref& o) noexcept : text_ref(share(o.m_text)) {}
  text_ref(text_ref&& o) noexcept : m_text(std::exchange(o.m_text, nullptr)) {}
  text_ref& operator=(text_ref o) noexcept {
    std::swap(m_text, o.m_text);
    return *this;
  }
  ~text_ref() {
    if (m_text != nullptr)
      m_text->release();
  }

  shared_text* get() const noexcept { return m_text; }
  /// Gives the reference up to the caller.
  shared_text* release() noexcept { return std::exchange(m_text, nullptr); }
  /// The text, or null.
  const std::string* text() const noexcept { return m_text != nullptr ? &m_text->text : nullptr; }
  explicit operator bool() const noexcept { return m_text != nullptr; }

 private:
  explicit text_ref(shared_text* t) noexcept : m_text(t) {}
  shared_text* m_text = nullptr;
};

}  // namespace offload::detail
