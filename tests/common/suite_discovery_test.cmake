# ctest entry `ctest_suite_discovery`: cmake/gtest_suites_impl.cmake turns a GoogleTest listing
# (plain, parameterized and typed suites; comments holding list separators) into one add_test per
# suite, and a listing without suites into no test; cmake/gtest_suite_run.sh reports a suite
# whose tests all skipped as skipped (77) and never hides a failure.
# Runs with -D IMPL=... -D RUNNER=... -D WORK=<scratch dir>.
file(MAKE_DIRECTORY "${WORK}")
file(WRITE "${WORK}/fake_gtest.sh" [=[#!/bin/sh
echo "Running main() from gtest_main.cc"
echo "Recipe."
echo "  LoadsKeys"
echo "  RefusesBad"
echo "Shapes/Param."
echo "  Works/0  # GetParam() = (1; 2)"
echo "Typed/0.  # TypeParam = float"
echo "  Adds"
]=])
file(WRITE "${WORK}/no_tests.sh" "#!/bin/sh\necho 'Running main() from gtest_main.cc'\n")
file(CHMOD "${WORK}/fake_gtest.sh" "${WORK}/no_tests.sh" PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE)

function(discover exe out)
  execute_process(COMMAND "${CMAKE_COMMAND}" -D "TEST_EXECUTABLE=${WORK}/${exe}" -D "TEST_WORKING_DIR=${WORK}"
    -D TEST_TIMEOUT=900 -D "TEST_ENVIRONMENT=OMP_WAIT_POLICY=PASSIVE" -D "CTEST_FILE=${WORK}/${exe}.cmake"
    -D "RUNNER=${RUNNER}"
    -P "${IMPL}" RESULT_VARIABLE rc ERROR_QUIET)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "discovery of ${exe} failed: ${rc}")
  endif()
  file(READ "${WORK}/${exe}.cmake" text)
  set(${out} "${text}" PARENT_SCOPE)
endfunction()

discover(fake_gtest.sh text)
string(REGEX MATCHALL "add_test\\(" adds "${text}")
list(LENGTH adds n)
if(NOT n EQUAL 3)
  message(FATAL_ERROR "expected 3 suite entries, got ${n}:\n${text}")
endif()
foreach(suite Recipe Shapes/Param Typed/0)
  string(FIND "${text}" "add_test([==[${suite}]==] /bin/sh [==[${RUNNER}]==] [==[${WORK}/fake_gtest.sh]==] [==[--gtest_filter=${suite}.*]==])" at)
  if(at LESS 0)
    message(FATAL_ERROR "no entry for suite ${suite}:\n${text}")
  endif()
endforeach()
string(FIND "${text}" "ENVIRONMENT [==[OMP_WAIT_POLICY=PASSIVE]==]" at)
if(at LESS 0)
  message(FATAL_ERROR "the environment did not reach the entries:\n${text}")
endif()

string(FIND "${text}" "SKIP_RETURN_CODE 77" at)
if(at LESS 0)
  message(FATAL_ERROR "the entries do not mark skipped suites:\n${text}")
endif()

# The runner on runs that end each way: its exit status.
function(run_case name exit_code summary want)
  file(WRITE "${WORK}/${name}.sh" "#!/bin/sh\nprintf '%b\\n' '${summary}'\nexit ${exit_code}\n")
  execute_process(COMMAND /bin/sh "${RUNNER}" /bin/sh "${WORK}/${name}.sh" RESULT_VARIABLE rc OUTPUT_QUIET)
  if(NOT rc EQUAL want)
    message(FATAL_ERROR "runner on ${name}: exit ${rc}, want ${want}")
  endif()
endfunction()
run_case(all_passed 0 "[  PASSED  ] 2 tests." 0)
run_case(all_skipped 0 "[  PASSED  ] 0 tests.\\n[  SKIPPED ] 2 tests, listed below:" 77)
run_case(failed_rest_skipped 1 "[  PASSED  ] 0 tests.\\n[  SKIPPED ] 1 test, listed below:\\n[  FAILED  ] 1 test, listed below:" 1)
run_case(crashed 139 "" 139)

discover(no_tests.sh text)
if(NOT text STREQUAL "")
  message(FATAL_ERROR "a listing without suites gave entries:\n${text}")
endif()
message(STATUS "suite discovery: 3 suites from the listing, none from an empty one; the runner's exit codes")
