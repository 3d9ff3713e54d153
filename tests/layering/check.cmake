# Run by layering_test: builds each MUST_FAIL target and expects a compile error saying the
# header was not found (the layer cannot see it), then builds each MUST_BUILD target and
# expects success. Then scans the .h and .cc files of UNNAMED_DIR for an include of a header
# of the layers UNNAMED (which that folder sees only through the headers it may include), and
# expects none, and one in UNNAMED_CONTROL (the scan works).
foreach(t ${MUST_FAIL})
  execute_process(COMMAND ${CMAKE_COMMAND} --build ${BUILD_DIR} --target ${t}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(rc EQUAL 0)
    message(FATAL_ERROR "${t} compiled, but its include crosses the layers and must not")
  endif()
  if(NOT out MATCHES "No such file or directory|file not found")
    message(FATAL_ERROR "${t} failed, but not for the layering (header not found):\n${out}")
  endif()
  message(STATUS "${t}: fails as it must (header not visible to its layer)")
endforeach()
foreach(t ${MUST_BUILD})
  execute_process(COMMAND ${CMAKE_COMMAND} --build ${BUILD_DIR} --target ${t}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${t} must compile (it includes only layers below it):\n${out}")
  endif()
  message(STATUS "${t}: compiles")
endforeach()

# The include lines of FILES that name a header of the layers UNNAMED.
function(unnamed_includes out)
  string(JOIN "|" layers ${UNNAMED})
  set(found "")
  foreach(f ${ARGN})
    file(STRINGS ${f} lines REGEX "^[ \t]*#[ \t]*include[ \t]*[\"<](${layers})/")
    foreach(line ${lines})
      list(APPEND found "${f}: ${line}")
    endforeach()
  endforeach()
  set(${out} "${found}" PARENT_SCOPE)
endfunction()

if(UNNAMED_DIR)
  unnamed_includes(control ${UNNAMED_CONTROL})
  if(NOT control)
    message(FATAL_ERROR "the scan finds no include of ${UNNAMED} in ${UNNAMED_CONTROL}, which has one")
  endif()
  file(GLOB files ${UNNAMED_DIR}/*.h ${UNNAMED_DIR}/*.cc)
  unnamed_includes(found ${files})
  if(found)
    string(REPLACE ";" "\n  " found "${found}")
    message(FATAL_ERROR "${UNNAMED_DIR} names headers of layers it sees only through its own "
                        "dependencies' types (${UNNAMED}):\n  ${found}")
  endif()
  message(STATUS "${UNNAMED_DIR}: includes no header of ${UNNAMED}")
endif()
