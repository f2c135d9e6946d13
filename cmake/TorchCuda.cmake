# After find_package(Torch): which CUDA the linked libtorch runs on.
#   MEGAHOST_WITH_CUDA       ON when libtorch has its CUDA half (PyTorch 2.x wheels), OFF for CPU builds
#   MEGAHOST_TORCH_CUDA      "major.minor" of the CUDA toolkit torch's CMake found, "" for CPU builds
# The same string goes into the host (MEGAHOST_CUDA_VERSION) and into every plugin's build
# fingerprint (MH_SDK_CUDA_VERSION): core/src/plugins.cpp refuses a plugin whose CUDA differs.
set(MEGAHOST_WITH_CUDA OFF)
set(MEGAHOST_TORCH_CUDA "")
if(TARGET torch_cuda OR TARGET c10_cuda)
  set(MEGAHOST_WITH_CUDA ON)
  if(NOT DEFINED CUDAToolkit_VERSION_MAJOR)
    find_package(CUDAToolkit REQUIRED)  # torch's cuda.cmake normally did this already
  endif()
  set(MEGAHOST_TORCH_CUDA "${CUDAToolkit_VERSION_MAJOR}.${CUDAToolkit_VERSION_MINOR}")
endif()
add_compile_definitions(MEGAHOST_CUDA_VERSION="${MEGAHOST_TORCH_CUDA}" MH_SDK_CUDA_VERSION="${MEGAHOST_TORCH_CUDA}")
message(STATUS "megahost: libtorch ${Torch_VERSION}, CUDA '${MEGAHOST_TORCH_CUDA}'")


# An installed megahost must find a libtorch that lives outside the system folders (PyTorch
# wheels: site-packages/torch/lib) without LD_LIBRARY_PATH: keep such link folders in the
# install RPATH. No effect for Debian's libtorch in /usr/lib.
set(CMAKE_INSTALL_RPATH_USE_LINK_PATH ON)
