# Reprise: two commands.
#   make run    install what is missing, build, start the proxy on proxy.toml
#   make test   install what is missing, build, run every test
#
# Options: BUILD_DIR (default build), BUILD_TYPE (default Release), SANITIZE=1 for an
# ASan/UBSan build (use with BUILD_DIR=build-asan), JOBS (default: all cores),
# CONFIG (default proxy.toml).

BUILD_DIR  ?= build
BUILD_TYPE ?= Release
CONFIG     ?= proxy.toml
JOBS       ?= $(shell nproc)
SANITIZE   ?= 0

CMAKE_FLAGS = -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DREPRISE_SANITIZE=$(if $(filter 1,$(SANITIZE)),ON,OFF)

.PHONY: all deps configure build run test sdk-deps clean

all: build

deps:
	@bash scripts/install-deps.sh

configure: deps
	@cmake -S . -B $(BUILD_DIR) $(CMAKE_FLAGS) > $(BUILD_DIR).configure.log 2>&1 || (cat $(BUILD_DIR).configure.log; exit 1)

build: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS)

run: build
	$(BUILD_DIR)/reprise --config $(CONFIG)

# The official openai SDK for the client tests, at the version package-lock.json pins.
sdk-deps: deps
	@cd tests/sdk && { [ -d node_modules/openai ] || npm ci --no-audit --no-fund --loglevel=error; }

test: build sdk-deps
	@cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)

clean:
	rm -rf $(BUILD_DIR) $(BUILD_DIR).configure.log
