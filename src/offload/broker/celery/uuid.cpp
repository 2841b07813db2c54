#include <cstdint>
#include <random>

#include <offload/broker/celery/uuid.hpp>

namespace offload::broker::celery {

std::string uuid4() {
  thread_local std::mt19937_64 gen([] {
    std::random_device rd;
    std::seed_seq seq{rd(), rd(), rd(), rd()};
    return std::mt19937_64(seq);
  }());
  std::uint64_t hi = gen();
  std::uint64_t lo = gen();
  hi = (hi & ~std::uint64_t{0xF000}) | 0x4000;                         // version 4
  lo = (lo & ~(std::uint64_t{0xC} << 60)) | (std::uint64_t{8} << 60);  // variant 10
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(36);
  for (int i = 0; i < 32; ++i) {
    if (i == 8 || i == 12 || i == 16 || i == 20)
      out += '-';
    const std::uint64_t word = i < 16 ? hi : lo;
    out += digits[(word >> (60 - 4 * (i % 16))) & 0xF];
  }
  return out;
}

}  // namespace offload::broker::celery
