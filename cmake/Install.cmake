# Installs megahost (host/ installs the executable), the plugins (megahost_add_plugin installs
# them into MEGAHOST_PLUGIN_INSTALL_DIR), the abi/ and sdk/ headers and a CMake package so that
# an out-of-tree plugin builds with find_package(megahost) (examples/out_of_tree_plugin).
#
#   <prefix>/bin/megahost
#   <prefix>/lib/megahost/plugins/lib*.so          found by the host next to its executable
#   <prefix>/include/megahost/...                  abi/ and sdk/ headers
#   <prefix>/lib/libmegahost_sdk_torch.a           the SDK's torch half (static, PIC)
#   <prefix>/lib/cmake/megahost/                   megahostConfig.cmake, targets, MegahostPlugin.cmake
include(CMakePackageConfigHelpers)

install(DIRECTORY abi/include/ sdk/include/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})

# Exported as megahost::abi, megahost::sdk, megahost::sdk_torch: the names megahost_add_plugin
# links in-tree (aliases) and out-of-tree (imported targets) alike.
set_target_properties(megahost_abi PROPERTIES EXPORT_NAME abi)
set_target_properties(megahost_sdk PROPERTIES EXPORT_NAME sdk)
set_target_properties(megahost_sdk_torch PROPERTIES EXPORT_NAME sdk_torch)
install(TARGETS megahost_abi megahost_sdk megahost_sdk_torch EXPORT megahostTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(EXPORT megahostTargets NAMESPACE megahost:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/megahost)

# PATH_VARS makes the plugin folder absolute for wherever the prefix ends up (relocatable).
configure_package_config_file(cmake/megahostConfig.cmake.in
  "${CMAKE_CURRENT_BINARY_DIR}/megahostConfig.cmake"
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/megahost
  PATH_VARS MEGAHOST_PLUGIN_INSTALL_DIR)
write_basic_package_version_file("${CMAKE_CURRENT_BINARY_DIR}/megahostConfigVersion.cmake"
  COMPATIBILITY SameMajorVersion)
install(FILES "${CMAKE_CURRENT_BINARY_DIR}/megahostConfig.cmake"
  "${CMAKE_CURRENT_BINARY_DIR}/megahostConfigVersion.cmake"
  cmake/MegahostPlugin.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/megahost)
