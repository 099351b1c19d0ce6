# cmake -P script: drives `strand jobs` against a fresh SQLite store; each step checks the exit
# code and the output.
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")
set(STORE "sqlite://${WORK_DIR}/jobs.db")

# run(<expected exit code> <regex the output must match> args...)
function(run expected_rc expected_out)
  execute_process(COMMAND ${STRAND} ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out
                  ERROR_VARIABLE err)
  if(NOT rc EQUAL expected_rc)
    message(FATAL_ERROR "strand ${ARGN}: exit ${rc}, expected ${expected_rc}\n${out}${err}")
  endif()
  if(NOT "${out}${err}" MATCHES "${expected_out}")
    message(FATAL_ERROR "strand ${ARGN}: output does not match '${expected_out}':\n${out}${err}")
  endif()
  message(STATUS "ok: strand ${ARGN}")
endfunction()

run(0 "KEY +STATUS +FUNCTION.*0 jobs in sqlite://" jobs ls --store ${STORE})
run(0 "job-1 cancelled" jobs cancel job-1 --store ${STORE})
run(0 "job-1 cancelled" jobs cancel job-1 --store ${STORE})  # as Handle::cancel: still true
run(0 "job-1 +cancelled .*1 job in" jobs ls --store ${STORE})
run(0 "\"status\": \"cancelled\"" jobs show job-1 --store ${STORE})
run(1 "job-1 cancelled" jobs wait job-1 --store ${STORE} --timeout 5)
run(0 "removed 0 expired jobs" jobs cleanup --store ${STORE})
run(0 "removed job-1" jobs rm job-1 --store ${STORE})
run(1 "strand: no job job-1 in sqlite://" jobs rm job-1 --store ${STORE})
run(1 "strand: no job nope in sqlite://" jobs show nope --store ${STORE})
run(2 "never-written still pending after 0.1s" jobs wait never-written --store ${STORE}
    --timeout 0.1)
# Bad input: a key that is a path, an unknown scheme, a file that is not a database.
run(3 "strand: invalid store key \"../x\": it contains a path separator"
    jobs show ../x --store ${STORE})
run(3 "strand: cannot open store \"bogus://x\": unknown scheme \"bogus\"; valid URLs are memory:, file:///path, sqlite:///path.db"
    jobs ls --store bogus://x)
file(WRITE "${WORK_DIR}/not-a-db" "hello, I am text")
run(3 "not-a-db" jobs ls --store sqlite://${WORK_DIR}/not-a-db)
