# medkd: the README's two commands.
#   make demo   install missing Debian packages (as root), build, run the demo job
#   make test   build (release + sanitizer builds) and run every test, then the fuzzers briefly
#   make fuzz   build the libFuzzer targets (clang, ASan + UBSan); by default in the sanitizer
#               build, which is a clang build with the fuzzers (one build for both). Long fuzz
#               runs: make fuzz FUZZ_BUILD=build-fuzz FUZZ_TYPE=RelWithDebInfo (docs/reliability.md)
.PHONY: all deps build build-asan demo test test-release test-asan fuzz test-fuzz clean format

JOBS ?= $(shell nproc 2>/dev/null || echo 2)
BUILD ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= $(ASAN_BUILD)
FUZZ_TYPE ?= Debug
# seconds each fuzz target runs in make test (docs/reliability.md has the long runs)
FUZZ_SECONDS ?= 5
CMAKE_FLAGS ?=
# CI (CI=true) treats warnings as errors.
ifneq ($(CI),)
CMAKE_FLAGS += -DMK_FATAL_WARNINGS=ON
endif

all: build

deps:
	@sh scripts/install-deps.sh

$(BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

# the sanitizer build: clang, ASan + UBSan, and the libFuzzer targets (MK_FUZZ); -O1 as ASan
# recommends (at -O0 the sanitizer suite took 2.5 times as long: 401 s against 160 s). It is also
# the build without MPI (MK_MPI=OFF: the one-process binary, ctest no_mpi_build); the MPI tests
# run in the release build.
$(ASAN_BUILD)/CMakeCache.txt: | deps
	CC=clang CXX=clang++ cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DMK_SANITIZE=ON \
	  -DMK_MPI=OFF -DMK_FUZZ=ON -DCMAKE_C_FLAGS_DEBUG="-g -O1" -DCMAKE_CXX_FLAGS_DEBUG="-g -O1" $(CMAKE_FLAGS)

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

ifneq ($(FUZZ_BUILD),$(ASAN_BUILD))
$(FUZZ_BUILD)/CMakeCache.txt: | deps
	CC=clang CXX=clang++ cmake -S . -B $(FUZZ_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=$(FUZZ_TYPE) -DMK_FUZZ=ON \
	  $(CMAKE_FLAGS)
endif

fuzz: deps $(FUZZ_BUILD)/CMakeCache.txt
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzzers

test-fuzz: fuzz
	sh fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

test: test-release test-asan test-fuzz

format:
	clang-format -i $$(git ls-files '*.c' '*.h' '*.cpp' | grep -v '^tests/deps_fixture/')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
