# mmm build. Targets:
#   make            library (build/libmmm.a) and CLI (build/mmm)
#   make test       install missing Debian packages, build and run the test suite
#   make demo       install missing packages, build, and run the main job (mmm demo; ARGS=--quick)
#   make bench      build and run the CPU micro-benchmarks
#   make deps       install missing Debian packages only
# CUDA=1 (default when nvcc is found) also compiles src/cuda/*.cu and links cudart + cuBLAS.

CC      ?= gcc
BUILD   ?= build
OPT     ?= -O3 -march=native
CFLAGS  ?= $(OPT) -g
CFLAGS  += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -fopenmp -Iinclude \
           -I/usr/include/x86_64-linux-gnu/openblas-openmp -MMD -MP
LDLIBS  += -lopenblas -lcjson -lstb -lz -lm -fopenmp

NVCC    ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
CUDA    ?= $(if $(NVCC),1,0)
CUDA_SRC := $(wildcard src/cuda/*.cu)

LIB_SRC  := $(filter-out src/cli/%,$(wildcard src/*/*.c src/*/*/*.c))
CLI_SRC  := $(wildcard src/cli/*.c)
TEST_SRC := $(wildcard tests/*.c tests/*/*.c)
BENCH_SRC := $(wildcard bench/*.c)

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
ifeq ($(CUDA),1)
ifneq ($(CUDA_SRC),)
CUDA_HOME := $(patsubst %/bin/nvcc,%,$(NVCC))
CFLAGS   += -DMMM_WITH_CUDA -I$(CUDA_HOME)/include
LIB_OBJ  += $(CUDA_SRC:%.cu=$(BUILD)/%.o)
LDLIBS   += -L$(CUDA_HOME)/lib64 -lcudart -lcublas -lcublasLt
endif
endif
LIB := $(BUILD)/libmmm.a

.PHONY: all deps test bench demo clean
all: $(BUILD)/mmm

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
	$(NVCC) -O3 -arch=sm_90 -Iinclude -c -o $@ $<

# Tests: the whole suite, or a subset with `make test T="ssd attention"`.
test: deps
	@$(MAKE) --no-print-directory $(BUILD)/mmm $(BUILD)/mmm_tests
	@MMM_BIN=$(BUILD)/mmm ./$(BUILD)/mmm_tests $(T)

demo: deps
	@$(MAKE) --no-print-directory $(BUILD)/mmm
	./$(BUILD)/mmm demo $(ARGS)

bench: deps
	@$(MAKE) --no-print-directory $(BUILD)/mmm_bench
	./$(BUILD)/mmm_bench $(ARGS)

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
