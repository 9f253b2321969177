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

test: all $(TBIN) $(ATBIN)
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
