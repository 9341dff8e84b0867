# Reprise: two commands.
#   make run    install what is missing, build, make the demo model (random
#               weights) if absent, start the proxy on proxy.toml
#   make test   install what is missing, build, run every test
#
# Benchmarks (not part of make test; they install wrk and nginx first):
#   make experiments   ToT / FoA / CoT-SC on Game of 24 with and without the cache,
#                      on a simulated LLM; tables and charts in bench/results/
#   make bench-peers   cache hits through Reprise vs nginx vs the Portkey gateway
#   make bench-cluster cache hits through a Redis Cluster store vs the local one,
#                      and 1-3 replicas sharing a cluster (bench/results/cluster.md)
#   make bench-engine  the in-process engine vs llama.cpp on the CPU (prefill, decode;
#                      BENCH_ENGINE_FLAGS="--isa avx2": both sides on AVX2 only)
#   make bench-batching  the engine's paged KV sharing, continuous batching and
#                      self-speculative decoding on the CPU (BATCHING_FLAGS=--quick:
#                      under a minute)
#   make test-gpu      the CUDA backend against the CPU path, plain and under
#                      compute-sanitizer (on a machine with a GPU)
#   make bench-gpu     the CUDA engine's decode speed, bandwidth, batching,
#                      speculation and J/token (on a GPU; bench/results/gpu_decode.md)
#   make gpu-carry     what bench/gpu/device_check.sh needs on the GPU machine
#
# Options: BUILD_DIR (default build), BUILD_TYPE (default Release), SANITIZE=1 for an
# ASan/UBSan build (use with BUILD_DIR=build-asan), JOBS (default: all cores),
# CONFIG (default proxy.toml).

BUILD_DIR  ?= build
BUILD_TYPE ?= Release
CONFIG     ?= proxy.toml
JOBS       ?= $(shell nproc)
SANITIZE   ?= 0

# Every node test, client and benchmark runs on the Node.js that scripts/node pins
# (22 LTS; installed by `make deps`; the README says why), and its npm installs their
# packages.
NODE_BIN = $(CURDIR)/scripts/node/node_modules/.bin
NODE     = $(NODE_BIN)/node
NPM      = PATH="$(NODE_BIN):$$PATH" npm

CMAKE_FLAGS = -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DREPRISE_SANITIZE=$(if $(filter 1,$(SANITIZE)),ON,OFF) \
              -DNODE_EXECUTABLE=$(NODE)

.PHONY: all deps bench-deps configure build run demo-model test sdk-deps experiments bench-peers clean

all: build

deps:
	@bash scripts/install-deps.sh

configure: deps
	@cmake -S . -B $(BUILD_DIR) $(CMAKE_FLAGS) > $(BUILD_DIR).configure.log 2>&1 || (cat $(BUILD_DIR).configure.log; exit 1)

build: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS)

run: build demo-model
	$(BUILD_DIR)/reprise --config $(CONFIG)

# The demo model proxy.toml serves as "reprise-demo": a 1 MB Llama with RANDOM
# weights and a built-in byte-level vocabulary (its answers are gibberish), made once
# so that the in-process engine can be called right away. Serve a real GGUF by
# pointing [engine] model at it.
DEMO_MODEL = data/models/reprise-demo.gguf
demo-model: build
	@[ -f $(DEMO_MODEL) ] || { mkdir -p $(dir $(DEMO_MODEL)) && \
	  $(BUILD_DIR)/reprise-make-model random --vocab builtin --out $(DEMO_MODEL) --dim 128 --hidden 384 \
	    --layers 4 --heads 4 --kv-heads 2 --ctx 2048 --type q8_0 --seed 1 --name reprise-demo && \
	  echo "made $(DEMO_MODEL): a demo model with random weights"; }

bench-deps:
	@bash scripts/install-deps.sh bench

# The official client SDKs, at the versions each package-lock.json pins: the client
# tests, and the experiments (whose smoke run is a test); installed again whenever the
# lock file changes. And llama.cpp as the engine's
# reference (node-llama-cpp with its prebuilt linux-x64 CPU build, ~85 MB; no optional
# GPU/other-platform packages, no install scripts): the test "engine: matches llama.cpp"
# and bench-engine.
sdk-deps: deps
	@for d in tests/sdk bench/experiments; do \
	  (cd $$d && { cmp -s package-lock.json node_modules/.installed-lock.json || \
	    { $(NPM) ci --no-audit --no-fund --loglevel=error && cp package-lock.json node_modules/.installed-lock.json; }; }) || exit 1; \
	done
	@cd tests/engine/llamacpp && { [ -f node_modules/@node-llama-cpp/linux-x64/package.json ] || \
	  $(NPM) ci --omit=optional --ignore-scripts --no-audit --no-fund --loglevel=error; }

# The engine vs llama.cpp on the CPU: prefill and decode tokens/s of one generated
# ~100M-parameter model (Q8_0, Q4_0) at 1 and 2 threads; writes
# bench/results/engine_vs_llamacpp.md. Not part of make test. BENCH_ENGINE_FLAGS="--isa
# avx2": both capped at AVX2 (the engine's --isa, llama.cpp's haswell variant), into
# bench/results/engine_vs_llamacpp_avx2.md.
.PHONY: bench-engine
BENCH_ENGINE_FLAGS ?=
bench-engine: build sdk-deps
	$(NODE) bench/engine/run.mjs --build $(BUILD_DIR) $(BENCH_ENGINE_FLAGS)

# The engine's scheduler on the CPU (bench/engine/batching.cpp): n samples sharing a
# prompt's KV blocks vs n separate requests, batched decode vs batch size, LayerSkip
# self-speculative decoding by exit layer and draft length (a synthetic early-exit
# model, and stories260K's trained weights); writes bench/results/engine_batching.md
# and, with gnuplot (make deps installs it), engine_batching.png. ~5-10 minutes on 2 cores.
# Not part of make test.
BATCHING_FLAGS ?=
.PHONY: bench-batching
bench-batching: build
	$(BUILD_DIR)/engine_batching_bench $(BATCHING_FLAGS) --out bench/results/engine_batching.md --json $(BUILD_DIR)/engine_batching.json
	$(NODE) bench/engine/batching_plot.mjs $(BUILD_DIR)/engine_batching.json bench/results/engine_batching.png

test: build sdk-deps
	@cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)

# The CUDA backend (needs a GPU; `make test` runs the same binary, which reports
# itself skipped without one).
.PHONY: test-gpu bench-gpu gpu-carry
test-gpu: build
	$(BUILD_DIR)/engine_cuda_tests
	compute-sanitizer --tool memcheck --error-exitcode 1 $(BUILD_DIR)/engine_cuda_tests -tc="cuda kernel*,cuda model: greedy*"

GPU_VOCAB ?= ../shared/fixtures/vocab/ggml-vocab-llama-bpe.gguf
bench-gpu: build
	$(BUILD_DIR)/engine_gpu_bench --vocab $(GPU_VOCAB) --out bench/results/gpu_decode.md

# The GPU machine has no doctest and no fixtures: bench/gpu/device_check.sh reads them
# from .gpu-carry/ (git-ignored), which the device tool carries.
gpu-carry:
	mkdir -p .gpu-carry/doctest/cmake
	cp /usr/include/doctest/doctest.h .gpu-carry/doctest/
	cp /usr/lib/cmake/doctest/*.cmake .gpu-carry/doctest/cmake/
	cp $(GPU_VOCAB) .gpu-carry/

experiments: build sdk-deps bench-deps
	REPRISE_BIN=$(BUILD_DIR)/reprise FAKE_OPENAI_BIN=$(BUILD_DIR)/fake_openai $(NODE) bench/experiments/run.mjs --out bench/results

bench-peers: build bench-deps
	PATH="$(NODE_BIN):$$PATH" BUILD_DIR=$(BUILD_DIR) bash bench/peers.sh

# Needs redis-server (make deps installs it; no service is started); ~4 minutes.
.PHONY: bench-cluster
bench-cluster: build bench-deps
	BUILD_DIR=$(BUILD_DIR) bash bench/cluster.sh

clean:
	rm -rf $(BUILD_DIR) $(BUILD_DIR).configure.log
