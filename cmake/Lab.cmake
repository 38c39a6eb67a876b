# Lab tests: run on a real Xen host booted under QEMU by lab/labctl (see docs/LAB.md).
#
#   gears_lab_test(NAME lab.<feature>.<what> COMMAND <cmd...> [TIMEOUT <s>] [LABELS <extra labels...>]
#                  [LAB a|b] [PENDING <why>])
#
# PENDING marks a test whose feature does not pass its acceptance yet (or was never verified on real Xen): it
# gets the label `lab-pending` instead of `lab`, so `make test` (CI) leaves it out and `make lab-pending` runs it.
# The reason is printed at configure time; the open issue's note says the same.
#
# A lab fault (QEMU gone, dom0 hung, a guest dead: nested Xen under TCG does that now and then) costs one
# reboot and one retry of the test it hit, never the rest of the run; see `labctl run` and docs/LAB.md.
#
# Two labs, two lanes. QEMU TCG keeps one host core busy per lab, and the host has two: `ctest -j2` runs lab
# `a` (fixture `gears_lab`: lab.setup / lab.teardown) and lab `b` (fixture `gears_lab_b`: lab.setup.b /
# lab.teardown.b) side by side, in their own lab directories. Within one lab, tests run one at a time
# (RESOURCE_LOCK on the fixture) and share its boot. LAB picks the lab (default: GEARS_LAB_LANE, which
# tests/lab/CMakeLists.txt sets per feature directory to balance the lanes; else a). A test sees:
#   GEARS_LABCTL  path of lab/labctl      GEARS_REPO  source tree      GEARS_BIN  ${CMAKE_BINARY_DIR}/bin
#   GEARS_LAB_DIR its lab's directory
# Commands run on the host; use `$GEARS_LABCTL exec dom0|<guest> -- CMD` to act inside the lab.
# Default guests: pv1 (PV) and pvh1 (PVH).
# One lab (one QEMU) per lab directory; default build/lab and build/lab-b. Give a build tree its own labs with
# -DGEARS_LAB_DIR=<dir> (lab b: <dir>-b) so its ctest fixtures never tear down labs another build tree uses.
set(GEARS_LAB_DIR "" CACHE PATH "lab directory for this build's lab tests (empty: <repo>/build/lab)")
set(GEARS_LABCTL ${PROJECT_SOURCE_DIR}/lab/labctl)
if(GEARS_LAB_DIR)
  set(gears_lab_dir_a ${GEARS_LAB_DIR})
else()
  set(gears_lab_dir_a ${PROJECT_SOURCE_DIR}/build/lab)
endif()
set(GEARS_LAB_ENV_COMMON
    "GEARS_BIN=${CMAKE_BINARY_DIR}/bin" "GEARS_LABCTL=${GEARS_LABCTL}" "GEARS_REPO=${PROJECT_SOURCE_DIR}")
set(GEARS_LAB_ENV ${GEARS_LAB_ENV_COMMON} "GEARS_LAB_DIR=${gears_lab_dir_a}")
set(GEARS_LAB_ENV_B ${GEARS_LAB_ENV_COMMON} "GEARS_LAB_DIR=${gears_lab_dir_a}-b")

# gears_lab_select(<a|b>): sets `fixture`, `suffix` (of lab.setup / lab.teardown) and `env` for that lab.
macro(gears_lab_select lab)
  if("${lab}" STREQUAL "a")
    set(fixture gears_lab)
    set(suffix "")
    set(env ${GEARS_LAB_ENV})
  elseif("${lab}" STREQUAL "b")
    set(fixture gears_lab_b)
    set(suffix ".b")
    set(env ${GEARS_LAB_ENV_B})
  else()
    message(FATAL_ERROR "lab must be a or b, got '${lab}'")
  endif()
endmacro()

# gears_lab_fixture(<a|b>): the boot (labctl up) and the poweroff (labctl down) of one lab.
function(gears_lab_fixture lab)
  gears_lab_select(${lab})
  # CTest runs the cleanup even when a test fails.
  add_test(NAME lab.setup${suffix} COMMAND ${GEARS_LABCTL} up)
  set_tests_properties(lab.setup${suffix} PROPERTIES
    FIXTURES_SETUP ${fixture} RESOURCE_LOCK ${fixture} LABELS lab TIMEOUT 900 ENVIRONMENT "${env}")
  add_test(NAME lab.teardown${suffix} COMMAND ${GEARS_LABCTL} down)
  set_tests_properties(lab.teardown${suffix} PROPERTIES
    FIXTURES_CLEANUP ${fixture} RESOURCE_LOCK ${fixture} LABELS lab TIMEOUT 120 ENVIRONMENT "${env}")
endfunction()

function(gears_lab_test)
  cmake_parse_arguments(T "" "NAME;TIMEOUT;PENDING;LAB" "COMMAND;LABELS" ${ARGN})
  if(NOT T_NAME MATCHES "^lab\\.[A-Za-z0-9_]+\\.[A-Za-z0-9_.]+$")
    message(FATAL_ERROR "gears_lab_test: NAME must be lab.<feature>.<what>, got '${T_NAME}'")
  endif()
  if(NOT T_COMMAND)
    message(FATAL_ERROR "gears_lab_test(${T_NAME}): COMMAND is required")
  endif()
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  if(NOT T_LAB)
    set(T_LAB ${GEARS_LAB_LANE})  # set per directory in tests/lab/CMakeLists.txt
  endif()
  if(NOT T_LAB)
    set(T_LAB a)
  endif()
  gears_lab_select(${T_LAB})
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
    FIXTURES_REQUIRED ${fixture}
    RESOURCE_LOCK ${fixture}
    TIMEOUT ${ctest_timeout}
    ENVIRONMENT "${env}")
  # A lab's tests run in the order they are declared (DEPENDS orders, it does not require a pass): later tests
  # may reuse what earlier ones set up (a guest's vif, a running gearsd), and `ctest -j` would reorder them.
  get_property(prev GLOBAL PROPERTY gears_lab_last_${fixture})
  if(prev)
    set_tests_properties(${T_NAME} PROPERTIES DEPENDS ${prev})
  endif()
  set_property(GLOBAL PROPERTY gears_lab_last_${fixture} ${T_NAME})
endfunction()
