# Strict warnings for project code, applied per target with gears_strict(<target>).
set(GEARS_WARNINGS
  -Wall -Wextra -Wpedantic -Wconversion -Wsign-conversion -Wshadow -Wold-style-cast
  -Wcast-align -Wnon-virtual-dtor -Woverloaded-virtual
  -Wdouble-promotion -Wformat=2 -Wimplicit-fallthrough -Wmissing-declarations
  -Wduplicated-cond -Wlogical-op -Wuseless-cast)

function(gears_strict target)
  target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:${GEARS_WARNINGS}>)
  if(GEARS_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()

if(GEARS_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
endif()
