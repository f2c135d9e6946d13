# cmake -DBUILD_DIR=... -DEXAMPLE_DIR=... -DWORK_DIR=... [-DGENERATOR=...] -P install_test.cmake
#
# 1. cmake --install BUILD_DIR --prefix WORK_DIR/prefix
# 2. configure + build EXAMPLE_DIR against it (-DCMAKE_PREFIX_PATH=WORK_DIR/prefix)
# 3. WORK_DIR/prefix/bin/megahost plugins --json --plugin-path <example build dir>:
#    the example's tokenizer is listed, and the shipped plugins come from WORK_DIR/prefix
# 4. WORK_DIR/prefix/bin/megahost preprocess with the example tokenizer writes a .bin/.idx pair
#    whose sizes match the words of the sample (through the installed mmap-indexed plugin)
cmake_minimum_required(VERSION 3.22)  # policies (quoted if() arguments) for script mode
foreach(v BUILD_DIR EXAMPLE_DIR WORK_DIR)
  if(NOT ${v})
    message(FATAL_ERROR "install_test.cmake: -D${v}=... is required")
  endif()
endforeach()

# Only the folders this test names: a developer's MEGAHOST_PLUGIN_PATH would add duplicates.
unset(ENV{MEGAHOST_PLUGIN_PATH})
set(prefix "${WORK_DIR}/prefix")
set(plugin_build "${WORK_DIR}/example-build")
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

# True when `path` lies under folder `dir` (both resolved, so symlinks do not matter).
function(is_under path dir out)
  file(REAL_PATH "${path}" p)
  file(REAL_PATH "${dir}" d)
  string(FIND "${p}" "${d}/" pos)
  if(pos EQUAL 0)
    set(${out} TRUE PARENT_SCOPE)
  else()
    set(${out} FALSE PARENT_SCOPE)
  endif()
endfunction()

# Runs a command; on failure prints what it said and stops the test.
function(run_step name)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${name} failed (${rc}):\n${ARGN}\n--- stdout\n${out}\n--- stderr\n${err}")
  endif()
  set(step_output "${out}" PARENT_SCOPE)
endfunction()

# 1. install
run_step("cmake --install" ${CMAKE_COMMAND} --install "${BUILD_DIR}" --prefix "${prefix}")
foreach(f bin/megahost lib/cmake/megahost/megahostConfig.cmake include/megahost/megahost.h
          include/megahost/sdk/plugin.h)
  if(NOT EXISTS "${prefix}/${f}")
    message(FATAL_ERROR "the install lacks ${prefix}/${f}")
  endif()
endforeach()

# 2. the out-of-tree plugin, against the installed package only
set(configure_args -S "${EXAMPLE_DIR}" -B "${plugin_build}" "-DCMAKE_PREFIX_PATH=${prefix}"
    -DCMAKE_BUILD_TYPE=Release)
if(GENERATOR)
  list(APPEND configure_args -G "${GENERATOR}")
endif()
if(MAKE_PROGRAM)
  list(APPEND configure_args "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
endif()
if(CXX_COMPILER)
  list(APPEND configure_args "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}")
endif()
run_step("configure examples/out_of_tree_plugin" ${CMAKE_COMMAND} ${configure_args})
run_step("build examples/out_of_tree_plugin" ${CMAKE_COMMAND} --build "${plugin_build}")

# 3. the installed host lists it, and finds its own plugins beside itself
set(megahost "${prefix}/bin/megahost")
run_step("megahost plugins --json" "${megahost}" plugins --json --plugin-path "${plugin_build}")
set(json "${step_output}")
string(JSON n LENGTH "${json}" plugins)
# The folder compiled in as the install location comes first in the search path; when megahost
# was really installed there, its plugins win over this prefix's and the prefix checks are moot.
string(JSON first_dir GET "${json}" search_path 0)
file(GLOB system_plugins "${first_dir}/lib*.so")
set(check_prefix TRUE)
if(system_plugins)
  set(check_prefix FALSE)
  message(STATUS "plugins installed in ${first_dir} take precedence: not checking where mmap-indexed comes from")
endif()
set(found_example FALSE)
set(found_installed FALSE)
if(n GREATER 0)
  math(EXPR last "${n} - 1")
  foreach(i RANGE ${last})
    string(JSON id GET "${json}" plugins ${i} id)
    string(JSON path GET "${json}" plugins ${i} path)
    string(JSON kind GET "${json}" plugins ${i} kind)
    if(id STREQUAL "com.example.whitespace")
      set(found_example TRUE)
      is_under("${path}" "${plugin_build}" ok)
      if(NOT kind STREQUAL "tokenizer" OR NOT ok)
        message(FATAL_ERROR "com.example.whitespace is listed as ${kind} from ${path}\n${json}")
      endif()
      string(JSON schema_type GET "${json}" plugins ${i} config_schema vocab_file type)
      if(NOT schema_type STREQUAL "path")
        message(FATAL_ERROR "com.example.whitespace: config_schema.vocab_file.type is '${schema_type}'\n${json}")
      endif()
    elseif(id STREQUAL "mmap-indexed")
      is_under("${path}" "${prefix}" ok)
      if(check_prefix AND NOT ok)
        message(FATAL_ERROR "the installed megahost loaded mmap-indexed from ${path}, not from ${prefix}\n${json}")
      endif()
      set(found_installed TRUE)
    endif()
  endforeach()
endif()
if(NOT found_example)
  message(FATAL_ERROR "the installed megahost does not list com.example.whitespace\n${json}")
endif()
if(check_prefix AND NOT found_installed)
  message(FATAL_ERROR "the installed megahost found no mmap-indexed plugin beside it\n${json}")
endif()
string(JSON n_refused LENGTH "${json}" refused)
if(check_prefix AND NOT n_refused EQUAL 0)
  message(FATAL_ERROR "the installed megahost refused ${n_refused} libraries\n${json}")
endif()

# 4. the new tokenizer does real work in the installed host
run_step("megahost preprocess" "${megahost}" preprocess --input "${EXAMPLE_DIR}/sample.jsonl"
         --output-prefix "${WORK_DIR}/sample" --tokenizer-type com.example.whitespace
         --vocab-file "${EXAMPLE_DIR}/vocab.txt" --append-eod --plugin-path "${plugin_build}")
# sample.jsonl: 8 + 5 words, + 1 eod each = 15 uint16 tokens; .idx = 34 + 12*2 + 8*3 bytes.
file(SIZE "${WORK_DIR}/sample_text_document.bin" bin_size)
file(SIZE "${WORK_DIR}/sample_text_document.idx" idx_size)
if(NOT bin_size EQUAL 30 OR NOT idx_size EQUAL 82)
  message(FATAL_ERROR "preprocess wrote ${bin_size} + ${idx_size} bytes, expected 30 + 82\n${step_output}")
endif()
message(STATUS "install_out_of_tree_plugin: OK (${n} plugins listed)")
