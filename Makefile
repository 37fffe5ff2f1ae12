# mmm build. Targets:
#   make            install missing packages, build the library (build/libmmm.a) and CLI (build/mmm)
#   make test       install missing Debian packages, build and run the test suite
#   make demo       install missing packages, build, and run the main job (mmm demo; ARGS=--quick)
#   make bench      build and run the CPU micro-benchmarks
#   make deps       install missing Debian packages only
# CUDA=1 (default when nvcc is found) also compiles src/cuda/*.cu: cudart is linked statically and
# cuBLAS is loaded on first use, so binaries start on machines without a GPU driver.

CC      ?= gcc
BUILD   ?= build
OPT     ?= -O3 -march=native
# SANITIZE=1: AddressSanitizer + UBSan build (CPU only), as `make test` runs it in build-asan/
ifeq ($(SANITIZE),1)
OPT     := -O1 -fsanitize=address,undefined -fno-omit-frame-pointer
LDLIBS  += -fsanitize=address,undefined
CUDA    := 0
endif
CFLAGS  ?= $(OPT) -g
# -fno-math-errno: nothing reads errno after a math call, and with it loops over expf vectorise
# into glibc's vector math library (libmvec; see src/ops/cpu/activation.c)
CFLAGS  += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -fopenmp -fno-math-errno -Iinclude \
           -I/usr/include/x86_64-linux-gnu/openblas-openmp -MMD -MP
LDLIBS  += -lopenblas -lcjson -lstb -ljpeg -lwebpdemux -lwebp -lonig -lmicrohttpd -lz -lmvec -lm -fopenmp

NVCC    ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
# nvcc may be a link or wrapper outside the toolkit (/usr/local/bin/nvcc): the toolkit is the first
# candidate that holds the static cudart; without one the build is CPU-only rather than broken.
NVCC_TOP := $(if $(NVCC),$(shell $(NVCC) --dryrun -x cu /dev/null -o /dev/null 2>&1 | sed -n 's/^#\$$ TOP=//p'))
CUDA_CANDIDATES := $(CUDA_HOME) $(NVCC_TOP) $(patsubst %/bin/nvcc,%,$(realpath $(NVCC))) /usr/local/cuda
CUDA_STATIC_LIB := $(firstword $(foreach d,$(CUDA_CANDIDATES),$(wildcard $(d)/lib64/libcudart_static.a $(d)/lib/libcudart_static.a $(d)/targets/*/lib/libcudart_static.a)))
CUDA_LIBDIR := $(patsubst %/,%,$(dir $(CUDA_STATIC_LIB)))
CUDA    ?= $(if $(and $(NVCC),$(CUDA_STATIC_LIB)),1,0)
CUDA_SRC := $(wildcard src/cuda/*.cu)

# src/gpu is the model runtime on CUDA; without CUDA, src/gpu/none stands in for it
LIB_SRC  := $(filter-out src/cli/% src/gpu/%,$(wildcard src/*/*.c src/*/*/*.c))
CLI_SRC  := $(wildcard src/cli/*.c)
TEST_SRC := $(wildcard tests/*.c tests/*/*.c)
BENCH_SRC := $(wildcard bench/*.c)

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
ifeq ($(CUDA)$(if $(CUDA_SRC),y),1y)
CFLAGS   += -DMMM_WITH_CUDA -I$(CUDA_LIBDIR)/../include
LIB_OBJ  += $(CUDA_SRC:%.cu=$(BUILD)/%.o) $(patsubst %.c,$(BUILD)/%.o,$(wildcard src/gpu/*.c))
LDLIBS   += -L$(CUDA_LIBDIR) -lcudart_static -ldl -lrt -lpthread -lstdc++
else
LIB_OBJ  += $(BUILD)/src/gpu/none/gpu.o
endif
# Hopper machine code, plus sm_80 PTX that the driver compiles for any other GPU from Ampere on.
NVCCFLAGS ?= -O3 -std=c++17 -gencode arch=compute_90,code=sm_90 -gencode arch=compute_80,code=compute_80
NVCCFLAGS += -Iinclude -Xcompiler -Wall,-Wextra -DMMM_CUDA_LIBDIR='"$(CUDA_LIBDIR)"' -MMD -MP
LIB := $(BUILD)/libmmm.a

.PHONY: all deps test crash-test fuzz bench demo clean
all: deps ; @$(MAKE) --no-print-directory $(BUILD)/mmm

deps:
	@bash scripts/deps.sh

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/mmm: $(CLI_SRC:%.c=$(BUILD)/%.o) $(LIB)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/mmm_tests: $(TEST_SRC:%.c=$(BUILD)/%.o) $(LIB)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/mmm_bench: $(BENCH_SRC:%.c=$(BUILD)/%.o) $(LIB)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c -o $@ $<

# the CUDA benchmark (bench/run_gpu.sh builds, checks and times everything on a GPU machine)
$(BUILD)/bench_cuda: $(BUILD)/bench/cuda/bench_cuda.o $(LIB)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

# Tests: unit tests, the same under ASan + UBSan, kill-and-resume, small hostile inputs (tests/run_all.sh);
# `make test T="ssd attention"` runs only the unit tests whose names contain those words.
test: deps
	@$(MAKE) --no-print-directory $(BUILD)/mmm $(BUILD)/mmm_tests
	@if [ -z "$(T)" ]; then $(MAKE) --no-print-directory BUILD=build-asan SANITIZE=1 build-asan/mmm build-asan/mmm_tests; fi
	@bash tests/run_all.sh $(T)

# SIGKILL mmm train / mmm distill at random points, resume, verify checkpoints and final weights
crash-test: deps
	@$(MAKE) --no-print-directory $(BUILD)/mmm
	@bash tests/crash/kill_resume.sh $(BUILD)/mmm

# libFuzzer harnesses, each run for FUZZ_SECONDS (default 30), FUZZ_JOBS at a time (default 1)
fuzz:
	@bash scripts/deps.sh fuzz
	@FUZZ_JOBS=$(FUZZ_JOBS) bash tests/fuzz/run.sh $(FUZZ_SECONDS)

demo: deps
	@$(MAKE) --no-print-directory $(BUILD)/mmm
	./$(BUILD)/mmm demo $(ARGS)

bench: deps
	@$(MAKE) --no-print-directory $(BUILD)/mmm_bench
	./$(BUILD)/mmm_bench $(ARGS)

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
