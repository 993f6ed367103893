#!/usr/bin/env bash
# All the GPU work of a session in one call (a lent machine with a real GPU,
# e.g. through the device tool): build, the kernel roofline table, the model
# benches (HCFlow and SR3 in f32 and f16 storage, PixelCNN, HCD), in under 8 minutes. Results go to $OUT (or ./device-out).
#
#   bash benches/device.sh            # on the GPU machine, from the repo root
#
# Vulkan needs the loader there: carry .gl/ (Debian's libvulkan1 and friends,
# downloaded once on the dev machine as the device README describes); this
# script unpacks it when present. Each step has its own time limit so one
# slow bench cannot eat the whole budget.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/device-out}"
mkdir -p "$OUT"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/wgsr-xdg}"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"

if [ -d .gl ] && ! ldconfig -p | grep -q libvulkan; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
export WGSR_ADAPTER="${WGSR_ADAPTER:-nvidia}"

step() { # step NAME SECONDS CMD...
  local name=$1 secs=$2; shift 2
  echo "== $name (limit ${secs}s)" | tee -a "$OUT/summary.txt"
  local t0=$SECONDS
  timeout "$secs" "$@" > "$OUT/$name.txt" 2>&1
  local rc=$?
  echo "   exit $rc after $((SECONDS - t0)) s" | tee -a "$OUT/summary.txt"
  tail -n 40 "$OUT/$name.txt"
}

# At most 8 files come back from a device run: summary + one per step below.
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv >> "$OUT/summary.txt" 2>&1 || true
step build 240 cargo build --release --benches --bin wgsr
timeout 20 ./target/release/wgsr info >> "$OUT/summary.txt" 2>&1
step kernels 120 cargo bench --bench kernels
# f32 then f16 storage in one file each (the f16 runs measure what halving
# the bytes buys on a bandwidth-bound GPU; on lavapipe it buys nothing).
step hcflow 90 bash -c 'cargo bench --bench hcflow -- sr_x4 64 5; WGSR_PRECISION=f16 cargo bench --bench hcflow -- sr_x4 64 5'
step hcflow256 90 bash -c 'cargo bench --bench hcflow -- sr_x4 256 3; WGSR_PRECISION=f16 cargo bench --bench hcflow -- sr_x4 256 3'
step sr3 60 bash -c 'SR3_BENCH_STEPS=10 cargo bench --bench sr3; WGSR_PRECISION=f16 SR3_BENCH_STEPS=10 cargo bench --bench sr3'
step pixelcnn 60 cargo bench --bench pixelcnn
step hcd 40 cargo bench --bench hcd -- 128
echo "results in $OUT" | tee -a "$OUT/summary.txt"
