#import prelude

// Roofline probes for the kernel bench: the adapter's multiply-add rate and
// copy bandwidth, measured with the same pipeline path as every kernel.
// fma_peak: each thread runs 8 independent vec4 multiply-add chains in
// registers (plain a*b+c, the form the kernels use: lavapipe lowers WGSL
// fma() to a slow exact call) and stores one value so nothing is dead code.
// Four steps per loop trip: llvmpipe blends every loop-carried value with
// the loop's lane mask once per trip, and a one-step loop measured half the
// rate (52-63 vs 97-112 GFLOP/s on a 2-core AVX-512 VM), which understated
// the peak every kernel row is reported against.
// copy_peak: vec4 copy, one element a thread.

struct Params {
    n: u32,      // threads (fma_peak) or vec4 elements (copy_peak)
    iters: u32,  // fma_peak: loop trips
    a: f32,      // multiplier, from the host so the compiler cannot fold it
    b: f32,      // addend
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> src: array<vec4<f32>>;

@compute @workgroup_size(WG)
fn fma_peak(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.n) { return; }
    let s = f32(i) * 1e-9;
    var c0 = vec4<f32>(s, s + 1.0, s + 2.0, s + 3.0);
    var c1 = c0 + 0.1; var c2 = c0 + 0.2; var c3 = c0 + 0.3;
    var c4 = c0 + 0.4; var c5 = c0 + 0.5; var c6 = c0 + 0.6; var c7 = c0 + 0.7;
    let a = vec4<f32>(p.a);
    let b = vec4<f32>(p.b);
    var k = 0u;
    for (; k + 4u <= p.iters; k += 4u) {
        c0 = c0 * a + b; c1 = c1 * a + b; c2 = c2 * a + b; c3 = c3 * a + b;
        c4 = c4 * a + b; c5 = c5 * a + b; c6 = c6 * a + b; c7 = c7 * a + b;
        c0 = c0 * a + b; c1 = c1 * a + b; c2 = c2 * a + b; c3 = c3 * a + b;
        c4 = c4 * a + b; c5 = c5 * a + b; c6 = c6 * a + b; c7 = c7 * a + b;
        c0 = c0 * a + b; c1 = c1 * a + b; c2 = c2 * a + b; c3 = c3 * a + b;
        c4 = c4 * a + b; c5 = c5 * a + b; c6 = c6 * a + b; c7 = c7 * a + b;
        c0 = c0 * a + b; c1 = c1 * a + b; c2 = c2 * a + b; c3 = c3 * a + b;
        c4 = c4 * a + b; c5 = c5 * a + b; c6 = c6 * a + b; c7 = c7 * a + b;
    }
    for (; k < p.iters; k++) {
        c0 = c0 * a + b; c1 = c1 * a + b; c2 = c2 * a + b; c3 = c3 * a + b;
        c4 = c4 * a + b; c5 = c5 * a + b; c6 = c6 * a + b; c7 = c7 * a + b;
    }
    dst[i] = ((c0 + c1) + (c2 + c3)) + ((c4 + c5) + (c6 + c7));
}

@compute @workgroup_size(WG)
fn copy_peak(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.n) { return; }
    dst[i] = src[i];
}
