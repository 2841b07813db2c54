// Compiled into every consumer next to README.md's first example: the defines the consumer got
// are those of the offload it was built against (EXPECT_* come from tests/install).
#include <offload/offload.hpp>

#if EXPECT_HWLOC && !defined(OFFLOAD_HAS_HWLOC)
#error "offload was installed with hwloc, but the consumer did not get OFFLOAD_HAS_HWLOC"
#endif
#if !EXPECT_HWLOC && defined(OFFLOAD_HAS_HWLOC)
#error "offload was installed with OFFLOAD_WITH_HWLOC=OFF, but the consumer got OFFLOAD_HAS_HWLOC"
#endif
#if EXPECT_MEMBARRIER && defined(OFFLOAD_NO_MEMBARRIER)
#error "offload was installed with membarrier, but the consumer got OFFLOAD_NO_MEMBARRIER"
#endif
#if !EXPECT_MEMBARRIER && !defined(OFFLOAD_NO_MEMBARRIER)
#error "offload was installed with OFFLOAD_MEMBARRIER=OFF, but the consumer did not get it"
#endif
