# megahost_discover_test_suites(<target> TIMEOUT <s> ENVIRONMENT <VAR=value>)
#
# One CTest entry per GoogleTest suite of <target> (`ctest -R Suite` runs
# `<target> --gtest_filter=Suite.*`) instead of gtest_discover_tests' one per test. Every entry is
# a process, and a process of a libtorch test spends ~0.7 s of CPU loading libtorch before its
# first test: 123 entries instead of 626 took ctest -j2 on the 2-core CI from 563 to 341 s
# (docs/performance.md, "Build and test time"). A failing entry's output names the failing tests;
# a suite whose tests all skipped (the GPU ones on CPU) is reported Skipped (gtest_suite_run.sh;
# a failure never is). Like gtest_discover_tests (POST_BUILD mode), the list is taken from
# `--gtest_list_tests` after each build. -DMEGAHOST_CTEST_PER_TEST=ON: one entry per test as before.
option(MEGAHOST_CTEST_PER_TEST "One CTest entry per test (gtest_discover_tests) instead of per suite" OFF)
set(_MEGAHOST_SUITES_IMPL "${CMAKE_CURRENT_LIST_DIR}/gtest_suites_impl.cmake")
set(_MEGAHOST_SUITE_RUNNER "${CMAKE_CURRENT_LIST_DIR}/gtest_suite_run.sh")

function(megahost_discover_test_suites target)
  cmake_parse_arguments(ARG "" "TIMEOUT;ENVIRONMENT" "" ${ARGN})
  if(MEGAHOST_CTEST_PER_TEST)
    gtest_discover_tests(${target} DISCOVERY_TIMEOUT 120
      PROPERTIES TIMEOUT ${ARG_TIMEOUT} ENVIRONMENT "${ARG_ENVIRONMENT}")
    return()
  endif()
  set(base "${CMAKE_CURRENT_BINARY_DIR}/${target}_suites")
  add_custom_command(TARGET ${target} POST_BUILD
    BYPRODUCTS "${base}_tests.cmake"
    COMMAND "${CMAKE_COMMAND}" -D "TEST_EXECUTABLE=$<TARGET_FILE:${target}>"
            -D "TEST_WORKING_DIR=${CMAKE_CURRENT_BINARY_DIR}" -D "TEST_TIMEOUT=${ARG_TIMEOUT}"
            -D "TEST_ENVIRONMENT=${ARG_ENVIRONMENT}" -D "CTEST_FILE=${base}_tests.cmake"
            -D "RUNNER=${_MEGAHOST_SUITE_RUNNER}"
            -P "${_MEGAHOST_SUITES_IMPL}"
    VERBATIM)
  file(WRITE "${base}_include.cmake"
    "if(EXISTS \"${base}_tests.cmake\")\n"
    "  include(\"${base}_tests.cmake\")\n"
    "else()\n"
    "  add_test(${target}_NOT_BUILT ${target}_NOT_BUILT)\n"
    "endif()\n")
  set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES "${base}_include.cmake")
endfunction()
