#!/bin/sh
# llama.cpp comparison (manual, not part of ctest: needs npm and the network once).
#   cd tests/engine/llamacpp && npm install --omit=optional --ignore-scripts \
#       node-llama-cpp@3.22.1 @node-llama-cpp/linux-x64@3.22.1 && ./run.sh ../../../build
# Builds the models with reprise-make-model and compares greedy continuations.
set -e
BUILD=${1:-../../../build}
FIX=${FIXTURES:-../../../../shared/fixtures}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
"$BUILD/reprise-make-model" llama2c --in "$FIX/models/stories260K.bin" --out "$TMP/stories.gguf"
node compare.mjs "$BUILD/engine_greedy" "$TMP/stories.gguf" 48 1
for t in f32 f16 q8_0 q4_0; do
  "$BUILD/reprise-make-model" random --vocab "$FIX/vocab/ggml-vocab-llama-spm.gguf" --out "$TMP/tiny-$t.gguf" --type $t
  node compare.mjs "$BUILD/engine_greedy" "$TMP/tiny-$t.gguf" 32 1 450 4996 17354
done
"$BUILD/reprise-make-model" random --vocab "$FIX/vocab/ggml-vocab-llama-bpe.gguf" --out "$TMP/bpe.gguf" --type q8_0 \
  --dim 128 --hidden 256 --heads 4 --kv-heads 1 --tied
node compare.mjs "$BUILD/engine_greedy" "$TMP/bpe.gguf" 32 128000 9906 1917
