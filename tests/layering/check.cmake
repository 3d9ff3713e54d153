# Run by layering_test: builds each MUST_FAIL target and expects a compile error saying the
# header was not found (the layer cannot see it), then builds each MUST_BUILD target and
# expects success.
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
