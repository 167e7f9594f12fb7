#!/usr/bin/env bash
# Wheels for a GPU machine whose Python has torch and torchvision but not the rest of what the project
# imports (Hydra, OmegaConf, Lightning, torchmetrics, timm, tokenizers, sacreBLEU, ...): run HERE, online.
#
#   bash benchmarks/gpu_wheels.sh [DEST] [--python "3.10 3.11 3.12 3.13"]
#
# DEST (default benchmarks/.gpu_wheels, git-ignored) receives, at the versions installed here (the ones
# the tests ran with; benchmarks/gpu_check.py `packages`):
#   - pure-Python wheels (py3-none-any), downloaded with `pip download --no-deps`;
#   - antlr4-python3-runtime 4.9.3 (Hydra's pin; PyPI has only its sdist) built into a wheel here;
#   - compiled wheels (PyYAML, regex, lxml: one per CPython in --python; tokenizers: one abi3 wheel) for
#     manylinux x86_64.
# Nothing that depends on torch is fetched with its dependencies (--no-deps everywhere), so the GPU
# machine's own torch stays. benchmarks/gpu_check.sh installs from DEST only what is missing there.
set -euo pipefail
cd "$(dirname "$0")/.."

dest=benchmarks/.gpu_wheels
pythons="3.10 3.11 3.12 3.13"
while [ $# -gt 0 ]; do
    case "$1" in
        --python) pythons="$2"; shift 2 ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) dest="$1"; shift ;;
    esac
done
mkdir -p "$dest"

compiled="PyYAML regex lxml tokenizers"   # per-interpreter wheels (tokenizers: abi3, one serves all)
mapfile -t pins < <(python benchmarks/gpu_check.py packages)
pip_dl=(python -m pip download --quiet --disable-pip-version-check --no-deps --dest "$dest")

for pin in "${pins[@]}"; do
    dist=${pin%%==*}
    if [ "$dist" = "antlr4-python3-runtime" ]; then
        python -m pip wheel --quiet --disable-pip-version-check --no-deps --wheel-dir "$dest" "$pin"
    elif [[ " $compiled " == *" $dist "* ]]; then
        for py in $pythons; do
            "${pip_dl[@]}" --only-binary=:all: --python-version "$py" --implementation cp \
                --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
                --platform manylinux_2_28_x86_64 "$pin" \
                || echo "WARNING: no $pin wheel for CPython $py" >&2
        done
    else
        "${pip_dl[@]}" --only-binary=:all: "$pin"
    fi
done
echo "$(ls "$dest"/*.whl | wc -l) wheels, $(du -sh "$dest" | cut -f1) in $dest"
