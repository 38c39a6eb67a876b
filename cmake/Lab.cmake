# Lab tests: run on a real Xen host booted under QEMU by lab/labctl (see docs/LAB.md).
#
#   gears_lab_test(NAME lab.<feature>.<what> COMMAND <cmd...> [TIMEOUT <s>] [LABELS <extra labels...>])
#
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
