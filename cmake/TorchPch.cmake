# megahost_torch_pch(<target> [TEST])
#
# The target's C++ files reuse one precompiled <ATen/ATen.h> (and <gtest/gtest.h> for TEST
# executables) instead of parsing it again: ~5-8 s of each libtorch translation unit, about a
# third of the CPU build (docs/architecture.md, "Build time"). GCC only reuses a header built with
# the same -fPIC / -fPIE and visibility, so there is one owner target per kind, made on first use;
# a header that does not fit (-Winvalid-pch says so) is parsed as usual, so this never changes
# what compiles. Off for CUDA builds (nvcc units) and with -DMEGAHOST_PCH=OFF.
option(MEGAHOST_PCH "Reuse a precompiled <ATen/ATen.h> across the libtorch targets (CPU builds)" ON)

function(megahost_torch_pch target)
  cmake_parse_arguments(ARG "TEST" "" "" ${ARGN})
  if(NOT MEGAHOST_PCH OR MEGAHOST_WITH_CUDA)
    return()
  endif()
  get_target_property(_vis ${target} CXX_VISIBILITY_PRESET)
  if(ARG_TEST)
    set(_owner megahost_pch_test)
  elseif(_vis STREQUAL "hidden")
    set(_owner megahost_pch_pic_hidden)
  else()
    set(_owner megahost_pch_pic)
  endif()
  if(NOT TARGET ${_owner})
    if(ARG_TEST)
      add_executable(${_owner} EXCLUDE_FROM_ALL "${PROJECT_SOURCE_DIR}/cmake/pch/anchor_main.cpp")
      target_link_libraries(${_owner} PRIVATE ${TORCH_LIBRARIES} GTest::gtest)
      target_precompile_headers(${_owner} PRIVATE <ATen/ATen.h> <gtest/gtest.h>)
    else()
      add_library(${_owner} STATIC EXCLUDE_FROM_ALL "${PROJECT_SOURCE_DIR}/cmake/pch/anchor.cpp")
      target_link_libraries(${_owner} PRIVATE ${TORCH_LIBRARIES})
      target_precompile_headers(${_owner} PRIVATE <ATen/ATen.h>)
      if(_vis STREQUAL "hidden")
        set_target_properties(${_owner} PROPERTIES CXX_VISIBILITY_PRESET hidden VISIBILITY_INLINES_HIDDEN ON)
      endif()
    endif()
    target_compile_options(${_owner} PRIVATE -Winvalid-pch)
  endif()
  target_precompile_headers(${target} REUSE_FROM ${_owner})
  target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-Winvalid-pch>)
endfunction()
