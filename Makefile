# medkd: the README's two commands.
#   make demo   install missing Debian packages (as root), build, run the demo job
#   make test   build (release + sanitizer builds) and run every test
.PHONY: all deps build build-asan demo test test-release test-asan clean format

JOBS ?= $(shell nproc 2>/dev/null || echo 2)
BUILD ?= build
ASAN_BUILD ?= build-asan
CMAKE_FLAGS ?=
# CI (CI=true) treats warnings as errors.
ifneq ($(CI),)
CMAKE_FLAGS += -DMK_FATAL_WARNINGS=ON
endif

all: build

deps:
	@sh scripts/install-deps.sh

$(BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

$(ASAN_BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DMK_SANITIZE=ON $(CMAKE_FLAGS)

build-asan: deps $(ASAN_BUILD)/CMakeCache.txt
	cmake --build $(ASAN_BUILD) -j $(JOBS)

demo: build
	sh scripts/demo.sh $(BUILD)

test-release: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-asan: build-asan
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
	  LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j $(JOBS) -LE no-sanitize

test: test-release test-asan

format:
	clang-format -i $$(git ls-files '*.c' '*.h' '*.cpp' | grep -v '^tests/deps_fixture/')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
