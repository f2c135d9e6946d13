# Run by megahost_discover_test_suites (GTestSuites.cmake) after a test executable is built:
# writes CTEST_FILE with one add_test per suite that `TEST_EXECUTABLE --gtest_list_tests` lists,
# each run through RUNNER (gtest_suite_run.sh: exit 77, "skipped", when no test of it passed
# and none failed).
execute_process(COMMAND "${TEST_EXECUTABLE}" --gtest_list_tests
  WORKING_DIRECTORY "${TEST_WORKING_DIR}" TIMEOUT 120
  OUTPUT_VARIABLE listing ERROR_VARIABLE errors RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  file(REMOVE "${CTEST_FILE}")
  message(FATAL_ERROR "listing the tests of ${TEST_EXECUTABLE} failed (${rc}):\n${listing}${errors}")
endif()
# Suite lines are "Suite." (typed / parameterized: "Prefix/Suite.  # TypeParam = ..."), test lines
# start with two spaces. Comments may hold anything, list separators included: drop them first.
string(REGEX REPLACE "#[^\n]*" "" listing "${listing}")
string(REPLACE ";" "" listing "${listing}")
string(REGEX MATCHALL "[^\n]+" lines "${listing}")
set(content "")
set(suites 0)
foreach(line IN LISTS lines)
  if(line MATCHES "^([^ ]+)\\.[ ]*$")
    set(suite "${CMAKE_MATCH_1}")
    math(EXPR suites "${suites} + 1")
    string(APPEND content
      "add_test([==[${suite}]==] /bin/sh [==[${RUNNER}]==] [==[${TEST_EXECUTABLE}]==] [==[--gtest_filter=${suite}.*]==])\n"
      "set_tests_properties([==[${suite}]==] PROPERTIES WORKING_DIRECTORY [==[${TEST_WORKING_DIR}]==]"
      " TIMEOUT ${TEST_TIMEOUT} ENVIRONMENT [==[${TEST_ENVIRONMENT}]==] SKIP_RETURN_CODE 77)\n")
  endif()
endforeach()
if(suites EQUAL 0)  # e.g. every test compiled out in this build: nothing for ctest, as gtest_discover_tests
  message(WARNING "${TEST_EXECUTABLE} lists no test suite:\n${listing}")
endif()
file(WRITE "${CTEST_FILE}" "${content}")
