# cmake -P script: compiling SOURCE must fail, and the compiler must say EXPECTED (a readable
# static_assert message, not only a template wall).
execute_process(
  COMMAND ${COMPILER} -std=c++20 -fsyntax-only -I${INCLUDE_DIR} ${SOURCE}
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc EQUAL 0)
  message(FATAL_ERROR "${SOURCE} compiled, but it is a misuse that must be refused")
endif()
string(FIND "${err}${out}" "${EXPECTED}" at)
if(at EQUAL -1)
  message(FATAL_ERROR "${SOURCE} was refused without the message \"${EXPECTED}\":\n${err}")
endif()
message("refused with: ${EXPECTED}")
