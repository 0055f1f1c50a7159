# voxd build. `make` builds build/voxd; `make run` and `make test` are the
# README's two commands (both install missing Debian packages first).
# Sanitizer build: build-asan/ (make asan). Nothing here downloads at build time.

CC      ?= cc
PKGS    := libmicrohttpd jansson sqlite3 libsodium libavformat libavcodec libswresample libavutil libebur128 pocketsphinx sphinxbase libcurl libpq hiredis zlib
CFLAGS_BASE := -std=c17 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter \
               -Wstrict-prototypes -Wmissing-prototypes -fno-strict-aliasing -pthread -MMD -MP
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lwslay -lm -pthread

BUILD   ?= build
OPT     ?= -O2 -g
SAN     ?=
CFLAGS  += $(CFLAGS_BASE) $(OPT) $(SAN) $(PKG_CFLAGS)
LDFLAGS += $(SAN)

SRC_ALL  := $(shell find src -name '*.c' | sort)
SRC_LIB  := $(filter-out src/main.c,$(SRC_ALL))
SQL      := $(shell find src/store/schema -name '*.sql' | sort)
GEN_SCHEMA := $(BUILD)/gen/schema.c
OBJ_LIB  := $(SRC_LIB:%.c=$(BUILD)/%.o) $(BUILD)/gen/schema.o $(BUILD)/gen/openapi.o
TEST_SRC := $(sort $(wildcard tests/unit/test_*.c))
TEST_BIN := $(TEST_SRC:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all deps run test unit asan unit-asan api-test bench clean fuzz
all: $(BUILD)/voxd

deps:
	@scripts/deps.sh

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC $<"
	@$(CC) $(CFLAGS) -c $< -o $@

$(GEN_SCHEMA): $(SQL) scripts/embed_sql.sh
	@mkdir -p $(dir $@)
	@scripts/embed_sql.sh $(SQL) > $@

$(BUILD)/gen/openapi.c: src/api/openapi.json scripts/embed_text.sh
	@mkdir -p $(dir $@)
	@scripts/embed_text.sh vx_openapi_json $< > $@

$(BUILD)/gen/%.o: $(BUILD)/gen/%.c
	@$(CC) $(CFLAGS) -Isrc -c $< -o $@

$(BUILD)/gen/schema.o: $(GEN_SCHEMA)
	@$(CC) $(CFLAGS) -Isrc -c $< -o $@

$(BUILD)/libvoxd.a: $(OBJ_LIB)
	@rm -f $@
	@ar rcs $@ $^

$(BUILD)/voxd: $(BUILD)/src/main.o $(BUILD)/libvoxd.a
	@echo "  LD $@"
	@$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(BUILD)/tests/test.o: tests/unit/test.c tests/unit/test.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/tests/test.o $(BUILD)/libvoxd.a
	@mkdir -p $(dir $@)
	@echo "  TEST $@"
	@$(CC) $(CFLAGS) -Isrc -o $@ $< $(BUILD)/tests/test.o $(BUILD)/libvoxd.a $(LDFLAGS) $(PKG_LIBS) -lcurl

unit: $(TEST_BIN) $(BUILD)/voxd
	@scripts/run_unit.sh $(BUILD)

asan:
	$(MAKE) BUILD=build-asan OPT="-O1 -g -fno-omit-frame-pointer" \
	    SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined" all $(patsubst build/%,build-asan/%,$(TEST_BIN))

unit-asan: asan
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    scripts/run_unit.sh build-asan

api-test: all
	@scripts/run_api_tests.sh build/voxd

test: deps
	@$(MAKE) --no-print-directory all $(TEST_BIN)
	@scripts/test.sh

run: deps
	@$(MAKE) --no-print-directory all
	./$(BUILD)/voxd serve --allow-self-top-up

fuzz:
	@scripts/fuzz.sh $(FUZZ_SECONDS)

clean:
	rm -rf build build-asan

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
