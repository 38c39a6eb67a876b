# Every dependency comes from Debian packages (installed by `make deps`).
find_package(PkgConfig REQUIRED)
pkg_check_modules(XENSTORE REQUIRED IMPORTED_TARGET xenstore)
pkg_check_modules(XENGNTTAB REQUIRED IMPORTED_TARGET xengnttab)
pkg_check_modules(XENEVTCHN REQUIRED IMPORTED_TARGET xenevtchn)
pkg_check_modules(XENFOREIGNMEMORY REQUIRED IMPORTED_TARGET xenforeignmemory)
pkg_check_modules(XENCTRL REQUIRED IMPORTED_TARGET xencontrol)
pkg_check_modules(XENVCHAN REQUIRED IMPORTED_TARGET xenvchan)
pkg_check_modules(XENLIGHT REQUIRED IMPORTED_TARGET xenlight)
find_library(XLUTIL_LIB xlutil REQUIRED)

find_package(fmt REQUIRED)
find_package(spdlog REQUIRED)
find_package(CLI11 CONFIG REQUIRED)
find_package(nlohmann_json REQUIRED)
find_package(GTest REQUIRED)
find_package(benchmark REQUIRED)
find_package(Threads REQUIRED)
pkg_check_modules(XXHASH REQUIRED IMPORTED_TARGET libxxhash)
pkg_check_modules(LIBXDP REQUIRED IMPORTED_TARGET libxdp libbpf)

# The real hypervisor libraries. Unit tests link gears::fakexen instead (a link seam):
# the RAII layer in common/xen is compiled once and never knows which one it gets.
add_library(gears_xenlibs INTERFACE)
target_link_libraries(gears_xenlibs INTERFACE
  PkgConfig::XENSTORE PkgConfig::XENGNTTAB PkgConfig::XENEVTCHN
  PkgConfig::XENFOREIGNMEMORY PkgConfig::XENCTRL)
add_library(gears::xenlibs ALIAS gears_xenlibs)
