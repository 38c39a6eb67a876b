# Lab tests: run on a real Xen host booted under QEMU by lab/labctl (see docs/LAB.md).
#
#   gears_lab_test(NAME lab.<feature>.<what> COMMAND <cmd...> [TIMEOUT <s>] [LABELS <extra labels...>])
#
# Every lab test shares ONE boot (fixture `gears_lab`: lab.setup = `labctl up`, lab.teardown = `labctl down`,
# both in tests/lab/CMakeLists.txt), never runs in parallel with another (RESOURCE_LOCK gears_lab), and sees:
#   GEARS_LABCTL  path of lab/labctl      GEARS_REPO  source tree      GEARS_BIN  ${CMAKE_BINARY_DIR}/bin
# Commands run on the host; use `$GEARS_LABCTL exec dom0|<guest> -- CMD` to act inside the lab.
# Default guests: pv1 (PV) and pvh1 (PVH).
set(GEARS_LABCTL ${PROJECT_SOURCE_DIR}/lab/labctl)
set(GEARS_LAB_ENV
    "GEARS_BIN=${CMAKE_BINARY_DIR}/bin" "GEARS_LABCTL=${GEARS_LABCTL}" "GEARS_REPO=${PROJECT_SOURCE_DIR}")

function(gears_lab_test)
  cmake_parse_arguments(T "" "NAME;TIMEOUT" "COMMAND;LABELS" ${ARGN})
  if(NOT T_NAME MATCHES "^lab\\.[A-Za-z0-9_]+\\.[A-Za-z0-9_.]+$")
    message(FATAL_ERROR "gears_lab_test: NAME must be lab.<feature>.<what>, got '${T_NAME}'")
  endif()
  if(NOT T_COMMAND)
    message(FATAL_ERROR "gears_lab_test(${T_NAME}): COMMAND is required")
  endif()
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  add_test(NAME ${T_NAME} COMMAND ${T_COMMAND})
  set_tests_properties(${T_NAME} PROPERTIES
    LABELS "lab;${T_LABELS}"
    FIXTURES_REQUIRED gears_lab
    RESOURCE_LOCK gears_lab
    TIMEOUT ${T_TIMEOUT}
    ENVIRONMENT "${GEARS_LAB_ENV}")
endfunction()
