#import prelude

// GroupNorm over the channel concatenation of several NCHW inputs, writing
// one normalised output per input (so the concatenation is never built).
// A group's channels may straddle two or more inputs. Per dispatch the
// uniform block describes one input (its channel count and offset in the
// concatenation); the dispatches of one GroupNorm run in this order:
//
//   gn_cat_shift     per input: the first value of every group that starts in
//                    it (statistics are taken on x - shift, as norm.wgsl does).
//   gn_cat_stats     per input: one workgroup per (sample, channel, chunk of
//                    the plane) writes the chunk's mean and M2 of x - shift.
//   gn_cat_merge     once: one workgroup per (sample, group) merges the
//                    group's chunk partials (Chan et al., fixed order, so
//                    deterministic) into (mean, 1/std).
//   gn_cat_normalize per input: elementwise, then gamma/beta and Swish.
//
// The scratch `sc` holds the partials (2 per chunk, indexed by the
// concatenated channel), then the shifts (N*G), then the statistics (2*N*G).

struct NormCatParams {
    total: u32,    // work items of this dispatch
    hw: u32,
    chans: u32,    // channels of this input
    off: u32,      // its first channel in the concatenation
    ctot: u32,     // channels of the concatenation
    groups: u32,
    cpg: u32,      // channels per group
    chunk: u32,    // values per plane chunk
    pchunks: u32,  // chunks per plane
    sc_shift: u32, // offset of the shifts in sc
    sc_stats: u32, // offset of the statistics in sc
    eps: f32,
}

@group(0) @binding(0) var<uniform> p: NormCatParams;
@group(0) @binding(1) var<storage, read> x: array<x_t>;
// gamma (ctot values) followed by beta (ctot values).
@group(0) @binding(2) var<storage, read> gb: array<f32>;
@group(0) @binding(3) var<storage, read_write> sc: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<y_t>;
// The same input and output as whole vec4s (the *4 entries).
@group(0) @binding(1) var<storage, read> x4: array<vec4<x4_t>>;
@group(0) @binding(4) var<storage, read_write> y4: array<vec4<y4_t>>;

override SWISH: bool = false;


fn chunk_len(k: u32) -> u32 {
    return min(p.chunk, p.hw - k * p.chunk);
}

@compute @workgroup_size(WG)
fn gn_cat_shift(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.total) { return; } // total = N*G
    let n = i / p.groups;
    let c0 = (i % p.groups) * p.cpg;
    if (c0 >= p.off && c0 < p.off + p.chans) {
        sc[p.sc_shift + i] = f32(x[(n * p.chans + c0 - p.off) * p.hw]);
    }
}

// A gn_cat_stats work item: chunk k of one channel plane (n, ch).
struct StatsItem {
    k: u32,
    slot: u32,   // its partial's index in sc (by concatenated channel)
    start: u32,  // its first value in this input
    shift: f32,  // its group's shift
}

fn stats_item(item: u32) -> StatsItem {
    let k = item % p.pchunks;
    let plane = item / p.pchunks;   // n*chans + ci
    let n = plane / p.chans;
    let ch = p.off + plane % p.chans;
    let shift = sc[p.sc_shift + n * p.groups + ch / p.cpg];
    return StatsItem(k, (n * p.ctot + ch) * p.pchunks + k, plane * p.hw + k * p.chunk, shift);
}

fn store_partial(it: StatsItem, mean: f32, m2: f32) {
    sc[2u * it.slot] = mean;
    sc[2u * it.slot + 1u] = m2;
}

@compute @workgroup_size(WG)
fn gn_cat_stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let item = wg_index(wid, nwg);
    if (item >= p.total) { return; } // workgroup-uniform; total = N*chans*pchunks
    let it = stats_item(item);
    let shift = it.shift;
    let start = it.start;
    let cnt = chunk_len(it.k);
    var s = 0.0;
    for (var j = lid; j < cnt; j += WG) {
        s += f32(x[start + j]) - shift;
    }
    let mean = wg_sum(lid, s) / f32(cnt);
    var q = 0.0;
    for (var j = lid; j < cnt; j += WG) {
        let d = (f32(x[start + j]) - shift) - mean;
        q += d * d;
    }
    let m2 = wg_sum(lid, q);
    if (lid == 0u) {
        store_partial(it, mean, m2);
    }
}

// gn_cat_stats on whole vec4s (hw and the chunk multiples of 4, norm_cat.rs
// checks): four values per load, the sums in vec4 lanes then added up (as
// norm.wgsl's group_stats4).

@compute @workgroup_size(WG)
fn gn_cat_stats4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let item = wg_index(wid, nwg);
    if (item >= p.total) { return; } // workgroup-uniform; total = N*chans*pchunks
    let it = stats_item(item);
    let shift = vec4<f32>(it.shift);
    let start4 = it.start / 4u;
    let cnt = chunk_len(it.k);
    let cnt4 = cnt / 4u;
    var s = vec4<f32>(0.0);
    for (var j = lid; j < cnt4; j += WG) {
        s += vec4<f32>(x4[start4 + j]) - shift;
    }
    let mean = wg_sum(lid, hsum(s)) / f32(cnt);
    var q = vec4<f32>(0.0);
    for (var j = lid; j < cnt4; j += WG) {
        let d = (vec4<f32>(x4[start4 + j]) - shift) - vec4<f32>(mean);
        q += d * d;
    }
    let m2 = wg_sum(lid, hsum(q));
    if (lid == 0u) {
        store_partial(it, mean, m2);
    }
}

@compute @workgroup_size(WG)
fn gn_cat_merge(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let item = wg_index(wid, nwg);
    if (item >= p.total) { return; } // workgroup-uniform; total = N*G
    let n = item / p.groups;
    let g = item % p.groups;
    // The group's partials are contiguous: channels g*cpg .. +cpg, pchunks each.
    let base = (n * p.ctot + g * p.cpg) * p.pchunks;
    let count = p.cpg * p.pchunks;
    // Each thread merges partials lid, lid + WG, ... in order, then a fixed tree.
    var cn = 0.0;
    var mean = 0.0;
    var m2 = 0.0;
    for (var j = lid; j < count; j += WG) {
        let nb = f32(chunk_len(j % p.pchunks));
        let nab = cn + nb;
        let d = sc[2u * (base + j)] - mean;
        mean += d * (nb / nab);
        m2 += sc[2u * (base + j) + 1u] + d * d * (cn * nb / nab);
        cn = nab;
    }
    let m = wg_welford(lid, cn, mean, m2);
    if (lid == 0u) {
        // Biased variance, as torch.nn.GroupNorm.
        sc[p.sc_stats + 2u * item] = m.y;
        sc[p.sc_stats + 2u * item + 1u] = inverseSqrt(m.z / f32(p.cpg * p.hw) + p.eps);
    }
}

@compute @workgroup_size(WG)
fn gn_cat_normalize(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.total) { return; } // total = N*chans*hw
    let t = nchw(i, p.chans, p.hw);
    let ch = p.off + t.ch;
    let ng = t.n * p.groups + ch / p.cpg;
    let v = ((f32(x[i]) - sc[p.sc_shift + ng]) - sc[p.sc_stats + 2u * ng]) * sc[p.sc_stats + 2u * ng + 1u];
    y[i] = y_t(affine_act(v, gb[ch], gb[p.ctot + ch]));
}

// gamma * v + beta, then Swish when enabled.
fn affine_act(v: f32, gamma: f32, beta: f32) -> f32 {
    var o = v * gamma + beta;
    if (SWISH) {
        // sigmoid via exp(-|o|) <= 1 so nothing overflows for large |o| (as norm.wgsl).
        let e = exp(-abs(o));
        o = o * select(e / (1.0 + e), 1.0 / (1.0 + e), o >= 0.0);
    }
    return o;
}

// gn_cat_normalize on whole vec4s (hw % 4 == 0, norm_cat.rs checks, so a
// vec4 lies in one channel): the statistics, gamma and beta are loaded once
// per four values (on llvmpipe every load is a loop over the lanes), the
// arithmetic per value is gn_cat_normalize's.

@compute @workgroup_size(WG)
fn gn_cat_normalize4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.total) { return; } // total = N*chans*hw/4
    let t = nchw(4u * i, p.chans, p.hw);
    let ch = p.off + t.ch;
    let ng = t.n * p.groups + ch / p.cpg;
    let shift = sc[p.sc_shift + ng];
    let mean = sc[p.sc_stats + 2u * ng];
    let rstd = sc[p.sc_stats + 2u * ng + 1u];
    let gamma = gb[ch];
    let beta = gb[p.ctot + ch];
    let xv = vec4<f32>(x4[i]);
    let v = ((xv - vec4<f32>(shift)) - vec4<f32>(mean)) * rstd;
    y4[i] = vec4<y4_t>(vec4<f32>(affine_act(v.x, gamma, beta), affine_act(v.y, gamma, beta), affine_act(v.z, gamma, beta), affine_act(v.w, gamma, beta)));
}
