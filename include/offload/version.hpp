#pragma once

/// @file version.hpp
/// @brief The library version; the single source CMake reads it from.

#define OFFLOAD_VERSION_MAJOR (0)
#define OFFLOAD_VERSION_MINOR (1)
#define OFFLOAD_VERSION_PATCH (0)
