# Gears top-level driver. CMake does the building; this file names the jobs.
#   make deps   install every Debian package the build, tests and lab need (idempotent)
#   make        build (build/rel)
#   make test   unit tests (ASan+UBSan build), then unit + lab tests on real Xen
#   make demo   deps, build, boot the lab, run the main job
#   make bench  benchmarks in the lab -> build/bench/results.json + plots
SHELL := /bin/bash
JOBS ?= $(shell nproc)
BUILD ?= build
REL := $(BUILD)/rel
ASAN := $(BUILD)/asan
WERROR ?= ON
CMAKE_COMMON := -DGEARS_WERROR=$(WERROR)

.PHONY: all build asan deps test unit-test lab-test demo bench clean lab-up lab-down format

all: build

$(REL)/CMakeCache.txt:
	cmake -S . -B $(REL) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_COMMON)

$(ASAN)/CMakeCache.txt:
	cmake -S . -B $(ASAN) -DCMAKE_BUILD_TYPE=Debug -DGEARS_SANITIZE=ON $(CMAKE_COMMON)

build: $(REL)/CMakeCache.txt
	cmake --build $(REL) -j $(JOBS)

asan: $(ASAN)/CMakeCache.txt
	cmake --build $(ASAN) -j $(JOBS)

deps:
	./lab/install-deps

# Unit tests run under ASan+UBSan; the whole suite (unit + lab) then runs on the release build.
unit-test: asan
	cd $(ASAN) && ctest -L unit --output-on-failure -j $(JOBS)

lab-test: build
	cd $(REL) && ctest -L 'lab|labtool' --output-on-failure

test: deps
	$(MAKE) asan build
	@start=$$(date +%s); \
	(cd $(ASAN) && ctest -L unit --output-on-failure -j $(JOBS)) || exit 1; \
	(cd $(REL) && ctest --output-on-failure) ; rc=$$?; \
	echo "make test: $$(( $$(date +%s) - start )) s, rc=$$rc"; exit $$rc

demo: deps
	$(MAKE) build
	./lab/demo

bench: build
	./bench/run

lab-up: build
	./lab/labctl up
lab-down:
	./lab/labctl down

clean:
	rm -rf $(BUILD)
