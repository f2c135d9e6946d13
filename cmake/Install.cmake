# Installs megahost, the plugins, abi/ and sdk/ headers and a CMake package so that an
# out-of-tree plugin builds with find_package(megahost).
include(CMakePackageConfigHelpers)
install(DIRECTORY abi/include/ sdk/include/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS megahost_abi megahost_sdk megahost_sdk_torch EXPORT megahostTargets)
install(EXPORT megahostTargets NAMESPACE megahost:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/megahost)
configure_package_config_file(cmake/megahostConfig.cmake.in
  "${CMAKE_CURRENT_BINARY_DIR}/megahostConfig.cmake"
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/megahost)
write_basic_package_version_file("${CMAKE_CURRENT_BINARY_DIR}/megahostConfigVersion.cmake"
  COMPATIBILITY SameMajorVersion)
install(FILES "${CMAKE_CURRENT_BINARY_DIR}/megahostConfig.cmake"
  "${CMAKE_CURRENT_BINARY_DIR}/megahostConfigVersion.cmake"
  cmake/MegahostPlugin.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/megahost)
