# Compiles every ABI header as the main file (not through an #include), as C11 and C++17 with
# -Wall -Wextra -pedantic -Werror: catches what only shows there (e.g. "#pragma once in main file").
# Args: -DC_COMPILER= -DCXX_COMPILER= -DINCLUDE_DIR= -DDLPACK_DIR=
file(GLOB_RECURSE headers "${INCLUDE_DIR}/*.h")
set(failed "")
foreach(h IN LISTS headers)
  foreach(lang IN ITEMS c c++)
    if(lang STREQUAL "c")
      set(cc "${C_COMPILER}")
      set(std -std=c11)
    else()
      set(cc "${CXX_COMPILER}")
      set(std -std=c++17)
    endif()
    execute_process(COMMAND "${cc}" -x ${lang} ${std} -Wall -Wextra -pedantic -Werror -fsyntax-only
                            -I "${INCLUDE_DIR}" -I "${DLPACK_DIR}" "${h}"
                    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
    if(NOT rc EQUAL 0)
      string(APPEND failed "${h} (${lang}):\n${out}\n")
    endif()
  endforeach()
endforeach()
if(failed)
  message(FATAL_ERROR "ABI headers that do not compile alone:\n${failed}")
endif()
list(LENGTH headers n)
message(STATUS "${n} ABI headers compile alone as C11 and C++17")
