# Nano Browser LLM — plain Makefile. Outputs go under $(B)/.
#   make          library + CLI ($(B)/nbl)
#   make test     every test: C unit/golden tests, the same under ASan+UBSan, then JS tests
#   make bench    benchmarks (print figures and ratios)
B       ?= build
CC      ?= gcc
OPT     ?= -O2
CFLAGS  ?=
WARN    := -std=c11 -Wall -Wextra -Werror
BASEFLAGS := $(WARN) $(OPT) -g -D_DEFAULT_SOURCE -D_FILE_OFFSET_BITS=64 -Iinclude -Isrc -pthread
LDLIBS  := -lm -pthread

SRC   := $(sort $(wildcard src/*.c))
OBJ   := $(SRC:src/%.c=$(B)/obj/%.o)
ASOBJ := $(SRC:src/%.c=$(B)/asan/obj/%.o)
TSRC  := $(sort $(wildcard tests/test_*.c))
TBIN  := $(TSRC:tests/%.c=$(B)/tests/%)
ATBIN := $(TSRC:tests/%.c=$(B)/asan/tests/%)
CLI   := $(sort $(wildcard cli/*.c))
SAN   := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer

.PHONY: all test test-c test-asan test-js bench clean
# A recipe that fails leaves no target behind (the relaxed builds are written, then rewritten).
.DELETE_ON_ERROR:
all: $(B)/nbl

$(B)/obj/%.o: src/%.c src/nbl_impl.h include/nbl.h $(wildcard src/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) $(CFLAGS) -c $< -o $@

$(B)/libnbl.a: $(OBJ)
	@rm -f $@
	ar rcs $@ $^

$(B)/nbl: $(CLI) $(B)/libnbl.a $(wildcard cli/*.h)
	$(CC) $(BASEFLAGS) $(CFLAGS) $(CLI) $(B)/libnbl.a -o $@ $(LDLIBS)

$(B)/tests/%: tests/%.c tests/test.h $(B)/libnbl.a
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) $(CFLAGS) $< $(B)/libnbl.a -o $@ $(LDLIBS)

$(B)/asan/obj/%.o: src/%.c src/nbl_impl.h include/nbl.h $(wildcard src/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) -O1 $(SAN) $(CFLAGS) -c $< -o $@

$(B)/asan/libnbl.a: $(ASOBJ)
	@rm -f $@
	ar rcs $@ $^

$(B)/asan/tests/%: tests/%.c tests/test.h $(B)/asan/libnbl.a
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) -O1 $(SAN) $(CFLAGS) $< $(B)/asan/libnbl.a -o $@ $(LDLIBS)

# AArch64: the kernel and golden tests built with the cross compiler (statically), for baseline
# ARMv8 NEON and for ARMv8.2 with the dot-product and f16 extensions; tests/run.sh runs them
# under qemu-user.
ARM_CC   ?= aarch64-linux-gnu-gcc
ARM_TESTS := tests/test_kernels.c tests/test_golden.c
ARM_BIN  := $(foreach v,base dot,$(ARM_TESTS:tests/%.c=$(B)/arm/$(v)/%))
ARM_FLAGS_base := -march=armv8-a
ARM_FLAGS_dot  := -march=armv8.2-a+dotprod+fp16
$(B)/arm/base/%: tests/%.c tests/test.h $(SRC) src/nbl_impl.h include/nbl.h $(wildcard src/*.h)
	@mkdir -p $(dir $@)
	$(ARM_CC) $(WARN) -O2 $(ARM_FLAGS_base) -D_DEFAULT_SOURCE -Iinclude -Isrc -static $< $(SRC) -o $@ $(LDLIBS)
$(B)/arm/dot/%: tests/%.c tests/test.h $(SRC) src/nbl_impl.h include/nbl.h $(wildcard src/*.h)
	@mkdir -p $(dir $@)
	$(ARM_CC) $(WARN) -O2 $(ARM_FLAGS_dot) -D_DEFAULT_SOURCE -Iinclude -Isrc -static $< $(SRC) -o $@ $(LDLIBS)
.PHONY: arm
arm: $(ARM_BIN)

test: all $(TBIN) $(ATBIN) wasm $(B)/wasm/tests/test_kernels.js $(B)/wasm/tests/test_kernels_rs.js \
  $(B)/wasm/tests/test_kernels_rs_web.js $(ARM_BIN)
	@B=$(B) bash tests/run.sh

test-c: all $(TBIN)
	@B=$(B) NBL_SKIP_ASAN=1 NBL_SKIP_JS=1 bash tests/run.sh

bench: all
	@bash bench/run.sh

clean:
	rm -rf build

# make fuzz [FUZZ_SECONDS=60]: libFuzzer on the GGUF reader/writer (clang; seeds in tests/fuzz_seeds,
# the growing corpus in $(B)/fuzz/corpus, crash inputs in $(B)/fuzz/).
FUZZ_SECONDS ?= 60
FUZZ_SRC := src/gguf.c src/quant.c src/util.c
.PHONY: fuzz
$(B)/fuzz/fuzz_gguf: tests/fuzz_gguf.c $(FUZZ_SRC) src/nbl_impl.h include/nbl.h
	@mkdir -p $(dir $@)
	clang -std=c11 -g -O1 -D_DEFAULT_SOURCE -Iinclude -Isrc -fsanitize=fuzzer,address,undefined \
	  -fno-sanitize-recover=all $< $(FUZZ_SRC) -o $@ -lm

fuzz: $(B)/fuzz/fuzz_gguf
	@mkdir -p $(B)/fuzz/corpus
	$(B)/fuzz/fuzz_gguf -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -artifact_prefix=$(B)/fuzz/ \
	  $(B)/fuzz/corpus tests/fuzz_seeds

# make wasm: the WebAssembly builds of the library (Emscripten), written to $(WASM_OUT):
#   nbl-st.mjs/.wasm  single-threaded, SIMD128: runs anywhere
#   nbl-mt.mjs/.wasm  pthreads + SIMD128: used when the page is cross-origin isolated
# Objects go under $(B)/wasm/. web/core.js picks one at run time.
EMCC     ?= emcc
WASM_OUT ?= web/dist
export NODE_PATH ?= /usr/share/nodejs
# clang's -Wstring-concatenation flags adjacent literals that deliberately spell one token.
WASM_CFLAGS := $(WARN) -Wno-string-concatenation -O3 -msimd128 -D_DEFAULT_SOURCE -Iinclude -Isrc
WASM_LDFLAGS := -O3 -msimd128 -sALLOW_MEMORY_GROWTH=1 -sINITIAL_MEMORY=64MB -sMAXIMUM_MEMORY=4GB \
  -sTOTAL_STACK=1MB -sMODULARIZE=1 -sEXPORT_ES6=1 -sEXPORT_NAME=createNblModule \
  -sENVIRONMENT=web,worker,node -sNODEJS_CATCH_EXIT=0 -sNODEJS_CATCH_REJECTION=0 -sFILESYSTEM=0 -sEXPORTED_FUNCTIONS=_malloc,_free \
  -sEXPORTED_RUNTIME_METHODS=UTF8ToString,stringToUTF8,lengthBytesUTF8
# The pool of pthread workers is started with the module (Module.nblPoolSize of them, set by
# web/core.js to the thread count minus the caller), since a thread created later would only
# start once the caller yields to the event loop, and the kernels' pool waits for its workers.
WASM_MT_LDFLAGS := -pthread -sPTHREAD_POOL_SIZE='Module["nblPoolSize"]||0' -sPTHREAD_POOL_SIZE_STRICT=0 -Wno-pthreads-mem-growth
# The GPU build: single-threaded, with Asyncify so that C (the generation loop, the tasks) can wait
# for the WebGPU forward pass in JavaScript (wasm_api.c's nblw_js_forward). Asyncify costs size
# and some speed, so the CPU-only builds stay without it.
WASM_GPU_LDFLAGS := -sASYNCIFY=1 -sASYNCIFY_STACK_SIZE=262144 -sEXPORTED_RUNTIME_METHODS=UTF8ToString,stringToUTF8,lengthBytesUTF8,ccall
WASM_ST_OBJ := $(SRC:src/%.c=$(B)/wasm/st/%.o)
WASM_GPU_OBJ := $(SRC:src/%.c=$(B)/wasm/gpu/%.o)
WASM_MT_OBJ := $(SRC:src/%.c=$(B)/wasm/mt/%.o)
# The relaxed-SIMD builds (nbl-st-rs, nbl-mt-rs): the same objects but the kernels, compiled with
# -DNBL_WASM_RELAXED and linked with the stand-in exported, then rewritten by
# scripts/wasm-relaxed.mjs. web/core.js loads them where the browser validates relaxed SIMD.
WASM_RS_OBJ := $(filter-out $(B)/wasm/st/cpu_wasm.o,$(WASM_ST_OBJ)) $(B)/wasm/st/cpu_wasm_rs.o
WASM_MTRS_OBJ := $(filter-out $(B)/wasm/mt/cpu_wasm.o,$(WASM_MT_OBJ)) $(B)/wasm/mt/cpu_wasm_rs.o
WASM_GPURS_OBJ := $(filter-out $(B)/wasm/gpu/cpu_wasm.o,$(WASM_GPU_OBJ)) $(B)/wasm/gpu/cpu_wasm_rs.o
WASM_RS_LDFLAGS := -sEXPORTED_FUNCTIONS=_malloc,_free,_nbl_relaxed_dot_i8x16_i7x16_add_s
# Node 20 validates relaxed SIMD behind a flag; later versions have it on and may drop the flag.
NODE_RELAXED := $(shell node --experimental-wasm-relaxed-simd -e 0 >/dev/null 2>&1 && echo --experimental-wasm-relaxed-simd)
WASM_RELAX = node $(NODE_RELAXED) scripts/wasm-relaxed.mjs $(B)/wasm/link/$(1).wasm $(B)/wasm/link/$(1).wasm $(B)/wasm/link/$(1).mjs

# The kernel tests on the SIMD128 table, run by node (tests/run.sh).
$(B)/wasm/tests/test_kernels.js: tests/test_kernels.c tests/test.h $(WASM_ST_OBJ)
	@mkdir -p $(dir $@)
	$(EMCC) $(WASM_CFLAGS) $< $(WASM_ST_OBJ) -o $@ -sALLOW_MEMORY_GROWTH=1 -sEXIT_RUNTIME=1 \
	  -sENVIRONMENT=node -sNODERAWFS=1 -sSINGLE_FILE=1

# The same tests on the relaxed-SIMD kernels: under node with the stand-in's exact body (node 20's
# engine runs an earlier draft of the instruction), and rewritten like the shipped module for
# Chromium (tests/js/wasm-relaxed.test.mjs runs it there).
$(B)/wasm/tests/test_kernels_rs.js: tests/test_kernels.c tests/test.h $(WASM_RS_OBJ)
	@mkdir -p $(dir $@)
	$(EMCC) $(WASM_CFLAGS) $< $(WASM_RS_OBJ) -o $@ -sALLOW_MEMORY_GROWTH=1 -sEXIT_RUNTIME=1 \
	  -sENVIRONMENT=node -sNODERAWFS=1 -sSINGLE_FILE=1

$(B)/wasm/tests/test_kernels_rs_web.js: tests/test_kernels.c tests/test.h $(WASM_RS_OBJ) scripts/wasm-relaxed.mjs
	@mkdir -p $(dir $@)
	$(EMCC) $(WASM_CFLAGS) $< $(WASM_RS_OBJ) -o $@ -sALLOW_MEMORY_GROWTH=1 -sEXIT_RUNTIME=1 \
	  -sENVIRONMENT=web -sSINGLE_FILE=1 -sEXPORTED_FUNCTIONS=_main,_nbl_relaxed_dot_i8x16_i7x16_add_s
	node $(NODE_RELAXED) scripts/wasm-relaxed.mjs $@ $@

.PHONY: wasm
wasm: $(WASM_OUT)/nbl-st.mjs $(WASM_OUT)/nbl-mt.mjs $(WASM_OUT)/nbl-st-rs.mjs $(WASM_OUT)/nbl-mt-rs.mjs \
  $(WASM_OUT)/nbl-gpu.mjs $(WASM_OUT)/nbl-gpu-rs.mjs $(WASM_OUT)/package.json

$(B)/wasm/st/%.o: src/%.c src/nbl_impl.h include/nbl.h $(wildcard src/*.h)
	@mkdir -p $(dir $@)
	$(EMCC) $(WASM_CFLAGS) -c $< -o $@

$(B)/wasm/mt/%.o: src/%.c src/nbl_impl.h include/nbl.h $(wildcard src/*.h)
	@mkdir -p $(dir $@)
	$(EMCC) $(WASM_CFLAGS) -pthread -c $< -o $@

$(B)/wasm/st/cpu_wasm_rs.o: src/cpu_wasm.c src/nbl_impl.h include/nbl.h $(wildcard src/*.h)
	@mkdir -p $(dir $@)
	$(EMCC) $(WASM_CFLAGS) -DNBL_WASM_RELAXED -c $< -o $@

$(B)/wasm/mt/cpu_wasm_rs.o: src/cpu_wasm.c src/nbl_impl.h include/nbl.h $(wildcard src/*.h)
	@mkdir -p $(dir $@)
	$(EMCC) $(WASM_CFLAGS) -pthread -DNBL_WASM_RELAXED -c $< -o $@

$(B)/wasm/gpu/cpu_wasm_rs.o: src/cpu_wasm.c src/nbl_impl.h include/nbl.h $(wildcard src/*.h)
	@mkdir -p $(dir $@)
	$(EMCC) $(WASM_CFLAGS) -DNBL_WASM_GPU -DNBL_WASM_RELAXED -c $< -o $@

$(B)/wasm/gpu/%.o: src/%.c src/nbl_impl.h include/nbl.h $(wildcard src/*.h)
	@mkdir -p $(dir $@)
	$(EMCC) $(WASM_CFLAGS) -DNBL_WASM_GPU -c $< -o $@

# Linked under $(B), then renamed into $(WASM_OUT) file by file (the .wasm before the script that
# loads it), so builds from several build directories never leave a half-written pair behind.
WASM_INSTALL = for f in $(1).wasm $(1).worker.js $(1).mjs; do [ -f $(B)/wasm/link/$$f ] || continue; \
  cp -f $(B)/wasm/link/$$f $(WASM_OUT)/.$$f.$$$$ && mv -f $(WASM_OUT)/.$$f.$$$$ $(WASM_OUT)/$$f; done

$(WASM_OUT)/nbl-st.mjs: $(WASM_ST_OBJ)
	@mkdir -p $(dir $@) $(B)/wasm/link
	$(EMCC) $(WASM_LDFLAGS) $^ -o $(B)/wasm/link/nbl-st.mjs
	@$(call WASM_INSTALL,nbl-st)

$(WASM_OUT)/nbl-mt.mjs: $(WASM_MT_OBJ)
	@mkdir -p $(dir $@) $(B)/wasm/link
	$(EMCC) $(WASM_LDFLAGS) $(WASM_MT_LDFLAGS) $^ -o $(B)/wasm/link/nbl-mt.mjs
	@$(call WASM_INSTALL,nbl-mt)

$(WASM_OUT)/nbl-st-rs.mjs: $(WASM_RS_OBJ) scripts/wasm-relaxed.mjs
	@mkdir -p $(dir $@) $(B)/wasm/link
	$(EMCC) $(WASM_LDFLAGS) $(WASM_RS_LDFLAGS) $(WASM_RS_OBJ) -o $(B)/wasm/link/nbl-st-rs.mjs
	$(call WASM_RELAX,nbl-st-rs)
	@$(call WASM_INSTALL,nbl-st-rs)

$(WASM_OUT)/nbl-mt-rs.mjs: $(WASM_MTRS_OBJ) scripts/wasm-relaxed.mjs
	@mkdir -p $(dir $@) $(B)/wasm/link
	$(EMCC) $(WASM_LDFLAGS) $(WASM_MT_LDFLAGS) $(WASM_RS_LDFLAGS) $(WASM_MTRS_OBJ) -o $(B)/wasm/link/nbl-mt-rs.mjs
	$(call WASM_RELAX,nbl-mt-rs)
	@$(call WASM_INSTALL,nbl-mt-rs)

$(WASM_OUT)/nbl-gpu.mjs: $(WASM_GPU_OBJ)
	@mkdir -p $(dir $@) $(B)/wasm/link
	$(EMCC) $(WASM_LDFLAGS) $(WASM_GPU_LDFLAGS) $^ -o $(B)/wasm/link/nbl-gpu.mjs
	@$(call WASM_INSTALL,nbl-gpu)

# The GPU build's CPU kernels (what a session runs after the GPU is lost) with relaxed SIMD.
$(WASM_OUT)/nbl-gpu-rs.mjs: $(WASM_GPURS_OBJ) scripts/wasm-relaxed.mjs
	@mkdir -p $(dir $@) $(B)/wasm/link
	$(EMCC) $(WASM_LDFLAGS) $(WASM_GPU_LDFLAGS) $(WASM_RS_LDFLAGS) $(WASM_GPURS_OBJ) -o $(B)/wasm/link/nbl-gpu-rs.mjs
	$(call WASM_RELAX,nbl-gpu-rs)
	@$(call WASM_INSTALL,nbl-gpu-rs)

# web/ is an ES-module package; the pthread worker script Emscripten writes is a classic script.
$(WASM_OUT)/package.json:
	@mkdir -p $(dir $@)
	printf '{ "type": "commonjs" }\n' > $@

# Tokenizer throughput on 1 MiB of mixed text with the Qwen2.5 vocabulary.
.PHONY: bench-tokenize
bench-tokenize: $(B)/bench/tokenize
	$(B)/bench/tokenize

$(B)/bench/tokenize: bench/tokenize.c $(B)/libnbl.a
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) $(CFLAGS) $< $(B)/libnbl.a -o $@ $(LDLIBS)

# make bench-wasm: decode speed of the wasm builds in headless Chromium vs the native build and vs
# wllama (bench/wasm.mjs). The model is a random-weight Qwen2.5-0.5B Q4_0 with the real Qwen2.5
# tokenizer (vocabulary padded to the embedding rows, as llama.cpp requires) from a fixture.
BENCH_MODEL ?= $(B)/bench/qwen2.5-0.5b-q4_0.gguf
BENCH_THREADS ?= 2
.PHONY: bench-wasm
$(BENCH_MODEL): | $(B)/nbl
	@mkdir -p $(dir $@)
	$(B)/nbl synth qwen2.5-0.5b-instruct -t q4_0 --vocab ../shared/fixtures/models/qwen2-tiny-realvocab-q8_0.gguf -o $@

bench-wasm: all wasm $(BENCH_MODEL)
	node bench/wasm.mjs --model $(BENCH_MODEL) --nbl $(B)/nbl --threads $(BENCH_THREADS)
