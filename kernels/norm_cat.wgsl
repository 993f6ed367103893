#import prelude

// GroupNorm over the channel concatenation of several NCHW inputs, writing
// one normalised output per input (so the concatenation is never built).
// A group's channels may straddle two or more inputs. Per dispatch the
// uniform block describes one input (its channel count and offset in the
// concatenation); the dispatches of one GroupNorm run in this order:
//
//   gn_cat_shift     per input: the first value of every group that starts in
//                    it (statistics are taken on x - shift, as norm.wgsl does).
//   gn_cat_stats     per input: one workgroup per (sample, group, chunk). The
//                    group's channels in this input are one contiguous span
//                    (its "portion", up to min(cpg, chans) planes), cut into
//                    `nchunks` chunks of `chunk` values; the workgroup writes
//                    its chunk's (count, mean, M2) of x - shift. Chunks past a
//                    short portion, and groups this input does not hold,
//                    write count 0. (Chunking the portion, not each plane,
//                    keeps the workgroups big at SR3's 8x8-32x32 levels.)
//   gn_cat_merge     once: one workgroup per (sample, group) merges the
//                    group's `slots` partials, skipping empty ones (Chan et
//                    al., fixed order, so deterministic) into (mean, 1/std).
//   gn_cat_normalize per input: elementwise, then gamma/beta and Swish.
//
// The scratch `sc` holds the partials (3 per slot; the slots of (sample,
// group) are contiguous, input i's start at its `slot0`), then the shifts
// (N*G), then the statistics (2*N*G).

struct NormCatParams {
    total: u32,    // work items of this dispatch
    hw: u32,
    chans: u32,    // channels of this input
    off: u32,      // its first channel in the concatenation
    groups: u32,
    cpg: u32,      // channels per group (so groups * cpg channels in all)
    chunk: u32,    // values per chunk of this input's portions
    nchunks: u32,  // chunks per portion of this input
    slots: u32,    // partial slots per (sample, group), all inputs
    slot0: u32,    // this input's first slot in them
    sc_shift: u32, // offset of the shifts in sc
    sc_stats: u32, // offset of the statistics in sc
    eps: f32,
}

@group(0) @binding(0) var<uniform> p: NormCatParams;
@group(0) @binding(1) var<storage, read> x: array<x_t>;
// gamma (groups*cpg values) followed by beta (as many).
@group(0) @binding(2) var<storage, read> gb: array<f32>;
@group(0) @binding(3) var<storage, read_write> sc: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<y_t>;
// The same input and output as whole vec4s (the *4 entries).
@group(0) @binding(1) var<storage, read> x4: array<vec4<x4_t>>;
@group(0) @binding(4) var<storage, read_write> y4: array<vec4<y4_t>>;

override SWISH: bool = false;

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

// A gn_cat_stats work item: chunk k of the portion of group (n, g) in this input.
struct StatsItem {
    slot: u32,   // its partial's slot in sc
    start: u32,  // its first value in this input
    cnt: u32,    // its values (0 past the portion)
    shift: f32,  // its group's shift (unused when cnt is 0)
}

fn stats_item(item: u32) -> StatsItem {
    let k = item % p.nchunks;
    let ng = item / p.nchunks;   // n*groups + g
    let n = ng / p.groups;
    let g = ng % p.groups;
    // The group's channels in this input, [lo, hi) of the concatenation.
    let lo = max(g * p.cpg, p.off);
    let hi = min((g + 1u) * p.cpg, p.off + p.chans);
    let len = select(0u, (hi - lo) * p.hw, hi > lo);
    let first = k * p.chunk;
    let cnt = select(0u, min(p.chunk, len - first), len > first);
    let start = (n * p.chans + min(lo - p.off, p.chans)) * p.hw + first;
    return StatsItem(ng * p.slots + p.slot0 + k, start, cnt, sc[p.sc_shift + ng]);
}

fn store_partial(it: StatsItem, mean: f32, m2: f32) {
    sc[3u * it.slot] = f32(it.cnt);
    sc[3u * it.slot + 1u] = mean;
    sc[3u * it.slot + 2u] = m2;
}

@compute @workgroup_size(WG)
fn gn_cat_stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let item = wg_index(wid, nwg);
    if (item >= p.total) { return; } // workgroup-uniform; total = N*G*nchunks
    let it = stats_item(item);
    if (it.cnt == 0u) { // workgroup-uniform
        if (lid == 0u) { store_partial(it, 0.0, 0.0); }
        return;
    }
    let shift = it.shift;
    let start = it.start;
    let cnt = it.cnt;
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
// checks, so every start and count is too): four values per load, the sums
// in vec4 lanes then added up (as norm.wgsl's group_stats4).

@compute @workgroup_size(WG)
fn gn_cat_stats4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let item = wg_index(wid, nwg);
    if (item >= p.total) { return; } // workgroup-uniform; total = N*G*nchunks
    let it = stats_item(item);
    if (it.cnt == 0u) { // workgroup-uniform
        if (lid == 0u) { store_partial(it, 0.0, 0.0); }
        return;
    }
    let shift = vec4<f32>(it.shift);
    let start4 = it.start / 4u;
    let cnt4 = it.cnt / 4u;
    var s = vec4<f32>(0.0);
    for (var j = lid; j < cnt4; j += WG) {
        s += vec4<f32>(x4[start4 + j]) - shift;
    }
    let mean = wg_sum(lid, hsum(s)) / f32(it.cnt);
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
    let base = item * p.slots;
    // Each thread merges slots lid, lid + WG, ... in order, then a fixed tree.
    var cn = 0.0;
    var mean = 0.0;
    var m2 = 0.0;
    for (var j = lid; j < p.slots; j += WG) {
        let nb = sc[3u * (base + j)];
        if (nb > 0.0) {
            let nab = cn + nb;
            let d = sc[3u * (base + j) + 1u] - mean;
            mean += d * (nb / nab);
            m2 += sc[3u * (base + j) + 2u] + d * d * (cn * nb / nab);
            cn = nab;
        }
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
    y[i] = y_t(affine_act(v, gb[ch], gb[p.groups * p.cpg + ch]));
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
    let beta = gb[p.groups * p.cpg + ch];
    let xv = vec4<f32>(x4[i]);
    let v = ((xv - vec4<f32>(shift)) - vec4<f32>(mean)) * rstd;
    y4[i] = vec4<y4_t>(vec4<f32>(affine_act(v.x, gamma, beta), affine_act(v.y, gamma, beta), affine_act(v.z, gamma, beta), affine_act(v.w, gamma, beta)));
}
