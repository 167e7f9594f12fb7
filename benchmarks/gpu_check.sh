#!/usr/bin/env bash
# The GPU check: does every family train with trainer=gpu, and how fast is the GPU path? (< 4 min on an H200)
#
# Here, online, once:   bash benchmarks/gpu_check.sh prepare
#     copies the small data sets the check reads (MNIST's four .gz files, Tiny Shakespeare, ETTh1, SST-2,
#     Multi30k: 24 MB) from $ZOO_DATA_DIR into benchmarks/.gpu_data, with their lines of the sha256
#     manifest, and fetches the wheels the GPU machine may lack into benchmarks/.gpu_wheels
#     (benchmarks/gpu_wheels.sh; 35 MB). Both folders are git-ignored: carry them to the GPU machine.
#
# On the GPU machine, from the repository root:   bash benchmarks/gpu_check.sh
#   1. install  what of Hydra, OmegaConf, Lightning, torchmetrics, timm, tokenizers, sacreBLEU, ... its Python
#               cannot import, from benchmarks/.gpu_wheels into a temporary folder on PYTHONPATH (no index,
#               no dependencies: its own torch stays)
#   2. families fast_dev_run of every registered family (one run per task kind) with trainer=gpu
#               trainer.precision=bf16-mixed, in one process; each line says where the training data lived
#   3. mnist    time to 99%: `python train.py trainer=gpu` (lenet5 on MNIST, 3 epochs): train_time_s, test/acc
#   4. speed    training samples/s of airbench94 (batch 1024) and resnet20 (batch 256) on random CIFAR-shaped
#               tensors (CIFAR-10 itself is too big to carry), fp32 NCHW and bf16 channels-last
#   5. ratio    Trainer / plain loop on the GPU (benchmarks/trainer_vs_loop.py --device cuda, lenet5/MNIST)
# Full logs and a summary go to $OUT (the device tool brings that folder back) or a temporary folder.
#
# prepare takes --data ROOT (default $ZOO_DATA_DIR), --dest DIR (default benchmarks/.gpu_data), --no-wheels.
# Options: --data ROOT (default benchmarks/.gpu_data, else $ZOO_DATA_DIR), --wheels DIR (default
# benchmarks/.gpu_wheels), --only STAGE[,STAGE] (families, mnist, speed, ratio; install always runs),
# --dry-run (print the commands, run nothing), --cpu (every stage, shrunk, on the CPU: a smoke test of
# this script), --with-compile (6. compile: one epoch of the mnist run with task.compile=true; <= 90 s more).
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

data="" wheels=benchmarks/.gpu_wheels only="" dry=0 cpu=0 mode=run dest=benchmarks/.gpu_data fetch=1 with_compile=0
while [ $# -gt 0 ]; do
    case "$1" in
        prepare) mode=prepare; shift ;;
        --dest) dest="$2"; shift 2 ;;
        --no-wheels) fetch=0; shift ;;
        --data) data="$2"; shift 2 ;;
        --wheels) wheels="$2"; shift 2 ;;
        --only) only="$2"; shift 2 ;;
        --dry-run) dry=1; shift ;;
        --cpu) cpu=1; shift ;;
        --with-compile) with_compile=1; shift ;;
        -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

if [ "$mode" = prepare ]; then
    src=${data:-${ZOO_DATA_DIR:-}}
    [ -n "$src" ] && [ -d "$src" ] || { echo "prepare: set ZOO_DATA_DIR (or --data) to the data root" >&2; exit 2; }
    mapfile -t files < <(python -c "import sys; sys.path.insert(0, 'benchmarks'); import gpu_check; print('\n'.join(gpu_check.DATA_FILES))")
    for f in "${files[@]}"; do
        mkdir -p "$dest/$(dirname "$f")"
        cp "$src/$f" "$dest/$f" || exit 1
    done
    if [ -f "$src/checksums.sha256" ]; then  # the manifest lines of the copied files: they are verified there too
        printf '%s\n' "${files[@]}" | awk 'NR == FNR { want[$0] = 1; next } ($2 in want)' - "$src/checksums.sha256" \
            > "$dest/checksums.sha256"
    fi
    echo "data: $(du -sh "$dest" | cut -f1) in $dest"
    if [ "$fetch" = 0 ]; then
        :
    elif ls "$wheels"/*.whl > /dev/null 2>&1; then
        echo "wheels: $(ls "$wheels"/*.whl | wc -l) already in $wheels (delete them to fetch again)"
    else
        bash benchmarks/gpu_wheels.sh "$wheels" || exit 1
    fi
    echo "carry: benchmarks/.gpu_data benchmarks/.gpu_wheels   then run: bash benchmarks/gpu_check.sh"
    exit 0
fi

if [ -z "$data" ]; then
    if [ -d benchmarks/.gpu_data ]; then data=benchmarks/.gpu_data; else data=${ZOO_DATA_DIR:-./data}; fi
fi
data=$(cd "$data" 2>/dev/null && pwd) || { echo "gpu_check.sh: no data root at $data (run prepare here)" >&2; exit 2; }
work=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
[ "$dry" = 1 ] && trap 'rm -rf "$work"' EXIT
out=${OUT:-$work/out}
mkdir -p "$out/logs"
site=$work/site
export ZOO_DATA_DIR=$data ZOO_CACHE_DIR=$work/cache PYTHONPATH="$repo:$site" PYTHONUNBUFFERED=1 HYDRA_FULL_ERROR=1
summary=$out/gpu_check.txt

if [ "$cpu" = 1 ]; then
    families=(--accelerator cpu --precision 32-true --only lenet,word2vec threads=1)
    mnist=(trainer=cpu threads=1 trainer.max_epochs=1 trainer.limit_train_batches=20 trainer.limit_val_batches=2
           trainer.limit_test_batches=2)
    speed=(--device cpu --threads 1 --steps 1 --repeats 1 --configs "fp32 NCHW")
    speed_a=(--batch 64) speed_r=(--batch 32)
    ratio=(--device cpu --threads 1 --cases lenet5:mnist:10 --repeats 1)
    limit=300
else
    families=(--accelerator gpu --precision bf16-mixed)
    mnist=(trainer=gpu)
    speed=(--device cuda --steps 50 --repeats 3 --configs "fp32 NCHW" "bf16-mixed channels_last")
    speed_a=(--batch 1024) speed_r=(--batch 256)
    ratio=(--device cuda --cases lenet5:mnist:300 --repeats 3)
    limit=1  # the stage limits below, as they are
fi

say() { echo "$*" | tee -a "$summary"; }

# stage NAME SECONDS FILTER CMD...: run CMD (capped at SECONDS; --cpu: at least $limit) into logs/NAME.log,
# show the lines matching FILTER (the whole tail when it fails)
stage() {
    local name=$1 secs=$2 filter=$3; shift 3
    if [ -n "$only" ] && [ "$name" != install ] && [[ ",$only," != *",${name%%-*},"* ]]; then return 0; fi
    [ "$secs" -lt "$limit" ] && secs=$limit
    say ""
    say "== $name: $*"
    if [ "$dry" = 1 ]; then return 0; fi
    local t0=$SECONDS rc
    timeout "$secs" "$@" > "$out/logs/$name.log" 2>&1
    rc=$?
    grep -E "$filter" "$out/logs/$name.log" | tee -a "$summary"
    if [ $rc -ne 0 ]; then
        [ $rc -eq 124 ] && say "   (stopped at its limit of ${secs}s)"
        tail -n 15 "$out/logs/$name.log" | sed 's/^/   | /' | tee -a "$summary"
    fi
    say "-- $name: exit $rc, $((SECONDS - t0)) s"
}

say "gpu_check $(date -u +%FT%TZ)  repo=$repo  data=$data  logs=$out/logs"
if [ "$dry" = 0 ]; then
    command -v nvidia-smi > /dev/null && nvidia-smi -L | tee -a "$summary"
fi
t_all=$SECONDS
stage install 60 "." python benchmarks/gpu_check.py install --wheels "$wheels" --target "$site"
if [ "$dry" = 0 ]; then
    python -c "import torch, torchvision, lightning, hydra; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available(), '| torchvision', torchvision.__version__, '| lightning', lightning.__version__, '| hydra', hydra.__version__)" 2>&1 | tee -a "$summary"
fi
stage families 110 "^(ok|FAIL) |^fast_dev_run|fast_dev_runs \(" python benchmarks/gpu_check.py families "${families[@]}" --out "$work/families"
stage mnist 60 "^\[[a-z0-9_]+ on |^\[selection\]" python train.py "${mnist[@]}" callbacks.progress_bar=null hydra.run.dir="$work/mnist"
if [ "$dry" = 0 ] && [ -f "$work/mnist/metrics.json" ]; then
    python benchmarks/gpu_check.py metrics "$work/mnist/metrics.json" | tee -a "$summary"
fi
stage speed-airbench94 25 "GFLOPs|samples/s|best rate" python benchmarks/airbench_speed.py --model airbench94 "${speed[@]}" "${speed_a[@]}"
stage speed-resnet20 25 "GFLOPs|samples/s" python benchmarks/airbench_speed.py --model resnet20 "${speed[@]}" "${speed_r[@]}"
stage ratio 45 "threads=|ratio" python benchmarks/trainer_vs_loop.py "${ratio[@]}"
if [ "$with_compile" = 1 ]; then  # torch.compile's pause and its speed after it: lenet5/MNIST, one epoch
    stage compile 90 "^\[[a-z0-9_]+ on " python train.py "${mnist[@]}" task.compile=true trainer.max_epochs=1 \
        callbacks.progress_bar=null hydra.run.dir="$work/compile"
fi
say ""
say "gpu_check done in $((SECONDS - t_all)) s; summary $summary"
