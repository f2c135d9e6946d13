# megahost_add_plugin(<target> SOURCES <files...> [TORCH] [LANG_C])
#
# Builds a plugin as a MODULE library that exports exactly one symbol (megahost_plugin_v1),
# hides everything else, and lands in the build tree's plugin folder so the host finds it
# without installing. TORCH links libtorch and the SDK's torch helpers; without it the plugin
# depends only on the C/C++ runtime (tokenizers, formats).
# Used in-tree and by out-of-tree plugins through find_package(megahost).
function(megahost_add_plugin target)
  cmake_parse_arguments(ARG "TORCH;LANG_C;NO_INSTALL" "" "SOURCES;LIBS" ${ARGN})
  add_library(${target} MODULE ${ARG_SOURCES})
  # End-to-end tests depend on every plugin of the build.
  set_property(GLOBAL APPEND PROPERTY MEGAHOST_PLUGIN_TARGETS ${target})
  set_target_properties(${target} PROPERTIES
    PREFIX "lib"
    C_VISIBILITY_PRESET hidden
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  if(DEFINED MEGAHOST_BUILD_PLUGIN_DIR)
    set_target_properties(${target} PROPERTIES LIBRARY_OUTPUT_DIRECTORY "${MEGAHOST_BUILD_PLUGIN_DIR}")
  endif()
  if(ARG_LANG_C)
    target_link_libraries(${target} PRIVATE megahost::abi)
  else()
    target_link_libraries(${target} PRIVATE megahost::sdk)
  endif()
  if(ARG_TORCH)
    target_link_libraries(${target} PRIVATE megahost::sdk_torch)
    if(COMMAND megahost_torch_pch)  # in-tree builds only (cmake/TorchPch.cmake)
      megahost_torch_pch(${target})
    endif()
  endif()
  if(ARG_LIBS)
    target_link_libraries(${target} PRIVATE ${ARG_LIBS})
  endif()
  if(NOT APPLE)
    # Export exactly the entry symbol: no STL template instances or SDK symbols leak between
    # plugins (each carries its own copy of the SDK).
    set(_vs "${CMAKE_CURRENT_BINARY_DIR}/${target}.exports.map")
    # CONFIGURE writes only when the text changes: a rewritten script relinked every plugin on
    # each configure.
    file(CONFIGURE OUTPUT "${_vs}" CONTENT "{ global: megahost_plugin_v1; local: *; };\n")
    target_link_options(${target} PRIVATE "-Wl,--no-undefined" "-Wl,--exclude-libs,ALL"
      "-Wl,--version-script=${_vs}")
    set_property(TARGET ${target} APPEND PROPERTY LINK_DEPENDS "${_vs}")
  endif()
  if(NOT ARG_NO_INSTALL AND DEFINED MEGAHOST_PLUGIN_INSTALL_DIR)
    install(TARGETS ${target} LIBRARY DESTINATION "${MEGAHOST_PLUGIN_INSTALL_DIR}")
  endif()
endfunction()

# megahost_use_zlib_crc32(<target>): sdk/crc32.h through zlib (several GB/s) when its headers
# exist; boost's byte-wise CRC otherwise (same values, ~0.35 GB/s).
function(megahost_use_zlib_crc32 target)
  find_package(ZLIB QUIET)
  if(ZLIB_FOUND)
    target_link_libraries(${target} PRIVATE ZLIB::ZLIB)
    target_compile_definitions(${target} PRIVATE MH_SDK_WITH_ZLIB=1)
  endif()
endfunction()
