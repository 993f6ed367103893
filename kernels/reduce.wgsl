#import prelude

// Deterministic per-sample reductions and small in-place updates.
//
// A per-sample sum runs in two passes with a fixed summation order (no float
// atomics), so repeated runs give bit-identical results:
//   partial_sum: workgroup g covers CHUNK = 4096 consecutive elements of one
//                sample (sample g / parts, chunk g % parts) and writes one
//                partial sum; kernels/flow.wgsl writes partials the same way.
//   finish:      one workgroup per sample sums its `parts` partials and writes
//                (or adds, times alpha) the sample's total.
// Grids are split over x and y (grid_1d); every entry bounds-checks.
// WG, PER_THREAD, CHUNK (= WG * PER_THREAD) and wg_sum come from the prelude.

struct Params {
    n: u32,           // samples
    m: u32,           // elements per sample (partial_sum) / total elements (add_scalar)
    parts: u32,       // partial sums per sample
    accumulate: u32,  // finish: 1 = dst[n] += alpha * sum, 0 = dst[n] = alpha * sum
    alpha: f32,
    value: f32,       // add_scalar
}

@group(0) @binding(0) var<uniform> p: Params;
// The output comes first so add_scalar can bind only the tensor it updates
// (one buffer may not be bound read-only and read-write in one dispatch).
@group(0) @binding(1) var<storage, read_write> dst: array<dst_t>;
@group(0) @binding(2) var<storage, read> src: array<src_t>;

@compute @workgroup_size(WG)
fn partial_sum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let g = wg_index(wid, nwg);
    if (g >= p.n * p.parts) { return; }
    let n = g / p.parts;
    let chunk = g - n * p.parts;
    let base = n * p.m;
    var acc = 0.0;
    for (var r = 0u; r < PER_THREAD; r++) {
        let e = chunk * CHUNK + r * WG + lid;
        if (e < p.m) {
            acc += f32(src[base + e]);
        }
    }
    let t = wg_sum(lid, acc);
    if (lid == 0u) {
        dst[g] = dst_t(t);
    }
}

@compute @workgroup_size(WG)
fn finish(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let n = wg_index(wid, nwg);
    if (n >= p.n) { return; }
    var acc = 0.0;
    for (var j = lid; j < p.parts; j += WG) {
        acc += f32(src[n * p.parts + j]);
    }
    let t = wg_sum(lid, acc);
    if (lid == 0u) {
        var prev = 0.0;
        if (p.accumulate != 0u) {
            prev = f32(dst[n]);
        }
        dst[n] = dst_t(prev + p.alpha * t);
    }
}

// dst[i] += value, in place.
@compute @workgroup_size(WG)
fn add_scalar(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.m) { return; }
    dst[i] = dst_t(f32(dst[i]) + p.value);
}
