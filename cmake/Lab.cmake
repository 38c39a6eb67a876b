# Lab tests: run on a real Xen host booted under QEMU by lab/labctl (see docs/LAB.md).
#
#   gears_lab_test(NAME lab.<feature>.<what> COMMAND <cmd...> [TIMEOUT <s>] [LABELS <extra labels...>]
#                  [PENDING <why>])
#
# PENDING marks a test whose feature does not pass its acceptance yet (or was never verified on real Xen): it
# gets the label `lab-pending` instead of `lab`, so `make test` (CI) leaves it out and `make lab-pending` runs it.
# The reason is printed at configure time; the open issue's note says the same.
#
# A lab fault (QEMU gone, dom0 hung, a guest dead: nested Xen under TCG does that now and then) costs one
# reboot and one retry of the test it hit, never the rest of the run; see `labctl run` and docs/LAB.md.
# Every lab test shares ONE boot (fixture `gears_lab`: lab.setup = `labctl up`, lab.teardown = `labctl down`,
# both in tests/lab/CMakeLists.txt), never runs in parallel with another (RESOURCE_LOCK gears_lab), and sees:
#   GEARS_LABCTL  path of lab/labctl      GEARS_REPO  source tree      GEARS_BIN  ${CMAKE_BINARY_DIR}/bin
# Commands run on the host; use `$GEARS_LABCTL exec dom0|<guest> -- CMD` to act inside the lab.
# Default guests: pv1 (PV) and pvh1 (PVH).
# One lab (one QEMU) per lab directory; default build/lab. Give a build tree its own lab with
# -DGEARS_LAB_DIR=<dir> so its ctest fixture never tears down a lab that another build tree is using.
set(GEARS_LAB_DIR "" CACHE PATH "lab directory for this build's lab tests (empty: <repo>/build/lab)")
set(GEARS_LABCTL ${PROJECT_SOURCE_DIR}/lab/labctl)
set(GEARS_LAB_ENV
    "GEARS_BIN=${CMAKE_BINARY_DIR}/bin" "GEARS_LABCTL=${GEARS_LABCTL}" "GEARS_REPO=${PROJECT_SOURCE_DIR}")
if(GEARS_LAB_DIR)
  list(APPEND GEARS_LAB_ENV "GEARS_LAB_DIR=${GEARS_LAB_DIR}")
endif()

function(gears_lab_test)
  cmake_parse_arguments(T "" "NAME;TIMEOUT;PENDING" "COMMAND;LABELS" ${ARGN})
  if(NOT T_NAME MATCHES "^lab\\.[A-Za-z0-9_]+\\.[A-Za-z0-9_.]+$")
    message(FATAL_ERROR "gears_lab_test: NAME must be lab.<feature>.<what>, got '${T_NAME}'")
  endif()
  if(NOT T_COMMAND)
    message(FATAL_ERROR "gears_lab_test(${T_NAME}): COMMAND is required")
  endif()
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  set(kind lab)
  if(T_PENDING)
    set(kind lab-pending)
    message(STATUS "lab test ${T_NAME} is pending (not in make test): ${T_PENDING}")
  endif()
  # `labctl run` limits one attempt to TIMEOUT, reboots a faulted lab and retries ONCE when the lab (not the
  # test) failed; CTest's own limit covers two attempts plus a reboot.
  add_test(NAME ${T_NAME} COMMAND ${GEARS_LABCTL} run --name ${T_NAME} --timeout ${T_TIMEOUT} -- ${T_COMMAND})
  math(EXPR ctest_timeout "2 * ${T_TIMEOUT} + 900")
  set_tests_properties(${T_NAME} PROPERTIES
    LABELS "${kind};${T_LABELS}"
    FIXTURES_REQUIRED gears_lab
    RESOURCE_LOCK gears_lab
    TIMEOUT ${ctest_timeout}
    ENVIRONMENT "${GEARS_LAB_ENV}")
endfunction()
