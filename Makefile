# Nano Browser LLM — plain Makefile. Outputs go under build/.
#   make          library + CLI (build/nbl)
#   make test     every test: C unit/golden tests, the same under ASan+UBSan, then JS tests
#   make bench    benchmarks (print figures and ratios)
CC      ?= gcc
OPT     ?= -O2
CFLAGS  ?=
WARN    := -std=c11 -Wall -Wextra -Werror
BASEFLAGS := $(WARN) $(OPT) -g -D_DEFAULT_SOURCE -D_FILE_OFFSET_BITS=64 -Iinclude -Isrc -pthread
LDLIBS  := -lm -pthread

SRC   := $(sort $(wildcard src/*.c))
OBJ   := $(SRC:src/%.c=build/obj/%.o)
ASOBJ := $(SRC:src/%.c=build/asan/obj/%.o)
TSRC  := $(sort $(wildcard tests/test_*.c))
TBIN  := $(TSRC:tests/%.c=build/tests/%)
ATBIN := $(TSRC:tests/%.c=build/asan/tests/%)
CLI   := $(sort $(wildcard cli/*.c))
SAN   := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer

.PHONY: all test test-c test-asan test-js bench clean
all: build/nbl

build/obj/%.o: src/%.c src/nbl_impl.h include/nbl.h $(wildcard src/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) $(CFLAGS) -c $< -o $@

build/libnbl.a: $(OBJ)
	@rm -f $@
	ar rcs $@ $^

build/nbl: $(CLI) build/libnbl.a $(wildcard cli/*.h)
	$(CC) $(BASEFLAGS) $(CFLAGS) $(CLI) build/libnbl.a -o $@ $(LDLIBS)

build/tests/%: tests/%.c tests/test.h build/libnbl.a
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) $(CFLAGS) $< build/libnbl.a -o $@ $(LDLIBS)

build/asan/obj/%.o: src/%.c src/nbl_impl.h include/nbl.h $(wildcard src/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) -O1 $(SAN) $(CFLAGS) -c $< -o $@

build/asan/libnbl.a: $(ASOBJ)
	@rm -f $@
	ar rcs $@ $^

build/asan/tests/%: tests/%.c tests/test.h build/asan/libnbl.a
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) -O1 $(SAN) $(CFLAGS) $< build/asan/libnbl.a -o $@ $(LDLIBS)

test: all $(TBIN) $(ATBIN)
	@bash tests/run.sh

test-c: all $(TBIN)
	@NBL_SKIP_ASAN=1 NBL_SKIP_JS=1 bash tests/run.sh

bench: all
	@bash bench/run.sh

clean:
	rm -rf build
