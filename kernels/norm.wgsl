#import prelude

// GroupNorm over NCHW, optionally followed by Swish (x * sigmoid(x)).
//
// The channels of one (sample, group) pair are contiguous, so each group is a
// flat span of L = (C/G)*H*W values starting at group_index * L. A span is cut
// into `nchunks` chunks of `chunk` values (the last may be shorter) so big
// maps spread over many workgroups:
//
//   group_stats:     one workgroup per (group, chunk) writes the chunk's mean
//                    and sum of squared deviations (M2), two-pass over the chunk.
//   group_normalize: one workgroup per (group, chunk) merges the group's
//                    partials (Chan et al. pairwise formula, fixed tree order,
//                    so every workgroup gets bit-identical statistics) and
//                    normalises its chunk.
//
// All statistics are taken on x - x[group start]: the shift makes the sums
// small when the data has a large mean (e.g. 100 +- 0.1), where a plain
// E[x^2] - E[x]^2 or even an f32 mean of the raw values would lose digits.
// No atomics anywhere, so results are deterministic.

struct NormParams {
    total: u32,     // number of (group, chunk) work items = N*G*nchunks
    nchunks: u32,
    chunk: u32,
    group_len: u32, // L
    groups: u32,    // G
    cpg: u32,       // channels per group
    hw: u32,
    eps: f32,
}

@group(0) @binding(0) var<uniform> p: NormParams;
@group(0) @binding(1) var<storage, read> x: array<x_t>;
// group_stats writes partials; group_normalize reads them (bindings differ
// per entry point, see norm.rs).
@group(0) @binding(2) var<storage, read_write> part_out: array<f32>;
// gamma (C values) followed by beta (C values).
@group(0) @binding(2) var<storage, read> gb: array<f32>;
@group(0) @binding(3) var<storage, read> part_in: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<y_t>;

override SWISH: bool = false;

// group_normalize merges (count, mean, M2) partials with the prelude's
// wg_welford; group_stats sums with wg_sum.

fn chunk_len(c: u32) -> u32 {
    return min(p.chunk, p.group_len - c * p.chunk);
}

@compute @workgroup_size(WG)
fn group_stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let item = wg_index(wid, nwg);
    if (item >= p.total) {
        return; // workgroup-uniform
    }
    let grp = item / p.nchunks;
    let c = item % p.nchunks;
    let gbase = grp * p.group_len;
    let shift = f32(x[gbase]);
    let start = gbase + c * p.chunk;
    let cnt = chunk_len(c);

    var s = 0.0;
    for (var i = lid; i < cnt; i += WG) {
        s += f32(x[start + i]) - shift;
    }
    let mean = wg_sum(lid, s) / f32(cnt);

    var q = 0.0;
    for (var i = lid; i < cnt; i += WG) {
        let d = (f32(x[start + i]) - shift) - mean;
        q += d * d;
    }
    let m2 = wg_sum(lid, q);

    if (lid == 0u) {
        part_out[2u * item] = mean;
        part_out[2u * item + 1u] = m2;
    }
}

@compute @workgroup_size(WG)
fn group_normalize(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let item = wg_index(wid, nwg);
    if (item >= p.total) {
        return; // workgroup-uniform
    }
    let grp = item / p.nchunks;
    let c = item % p.nchunks;
    let gbase = grp * p.group_len;
    let st = merged_stats(grp, lid);
    let g_mean = st.x;
    let rstd = st.y;

    let shift = f32(x[gbase]);
    let ch0 = (grp % p.groups) * p.cpg;
    let start = c * p.chunk;
    let cnt = chunk_len(c);
    let nc = p.groups * p.cpg;
    for (var i = lid; i < cnt; i += WG) {
        let off = start + i;
        let ch = ch0 + off / p.hw;
        let v = ((f32(x[gbase + off]) - shift) - g_mean) * rstd;
        y[gbase + off] = y_t(affine_act(v, gb[ch], gb[nc + ch]));
    }
}

// gamma * v + beta (of v's channel), then Swish when enabled.
fn affine_act(v: f32, gamma: f32, beta: f32) -> f32 {
    var o = v * gamma + beta;
    if (SWISH) {
        // sigmoid via exp(-|o|) <= 1 so nothing overflows for large |o|.
        let e = exp(-abs(o));
        o = o * select(e / (1.0 + e), 1.0 / (1.0 + e), o >= 0.0);
    }
    return o;
}

// (mean, 1/std) of group grp from its chunks' partials: a pairwise merge
// (nchunks <= 256, one per thread) in a fixed tree order, so every
// workgroup of the group gets bit-identical statistics.
fn merged_stats(grp: u32, lid: u32) -> vec2<f32> {
    var n = 0.0;
    var mean = 0.0;
    var m2 = 0.0;
    if (lid < p.nchunks) {
        let pi = 2u * (grp * p.nchunks + lid);
        n = f32(chunk_len(lid));
        mean = part_in[pi];
        m2 = part_in[pi + 1u];
    }
    let m = wg_welford(lid, n, mean, m2);
    // Biased variance, as torch.nn.GroupNorm.
    return vec2<f32>(m.y, inverseSqrt(m.z / f32(p.group_len) + p.eps));
}

// ------------------------------------------------------------ vec4 variants
// Memory-bound: on llvmpipe a per-lane scalar load is a scalar loop over the
// lanes, so four values per load matter. Used when the group length, the
// chunk and H*W are multiples of 4 (norm.rs checks), so every vec4 lies in
// one chunk and one channel.
@group(0) @binding(1) var<storage, read> x4: array<vec4<x4_t>>;
@group(0) @binding(4) var<storage, read_write> y4: array<vec4<y4_t>>;

@compute @workgroup_size(WG)
fn group_stats4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let item = wg_index(wid, nwg);
    if (item >= p.total) {
        return; // workgroup-uniform
    }
    let grp = item / p.nchunks;
    let c = item % p.nchunks;
    let gbase = grp * p.group_len;
    let shift = vec4<f32>(f32(x4[gbase / 4u].x));
    let start4 = (gbase + c * p.chunk) / 4u;
    let cnt = chunk_len(c);
    let cnt4 = cnt / 4u;
    var s = vec4<f32>(0.0);
    for (var i = lid; i < cnt4; i += WG) {
        s += vec4<f32>(x4[start4 + i]) - shift;
    }
    let mean = wg_sum(lid, hsum(s)) / f32(cnt);
    var q = vec4<f32>(0.0);
    for (var i = lid; i < cnt4; i += WG) {
        let d = (vec4<f32>(x4[start4 + i]) - shift) - vec4<f32>(mean);
        q += d * d;
    }
    let m2 = wg_sum(lid, hsum(q));
    if (lid == 0u) {
        part_out[2u * item] = mean;
        part_out[2u * item + 1u] = m2;
    }
}

@compute @workgroup_size(WG)
fn group_normalize4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let item = wg_index(wid, nwg);
    if (item >= p.total) {
        return; // workgroup-uniform
    }
    let grp = item / p.nchunks;
    let c = item % p.nchunks;
    let gbase = grp * p.group_len;
    let st = merged_stats(grp, lid);
    let shift = vec4<f32>(x4[gbase / 4u]).x;
    let ch0 = (grp % p.groups) * p.cpg;
    let start = c * p.chunk;
    let cnt4 = chunk_len(c) / 4u;
    let nc = p.groups * p.cpg;
    for (var i = lid; i < cnt4; i += WG) {
        let off = start + 4u * i;
        let ch = ch0 + off / p.hw;
        let v = ((vec4<f32>(x4[(gbase + off) / 4u]) - vec4<f32>(shift)) - vec4<f32>(st.x)) * st.y;
        // One gamma / beta load per vec4 (its four values share the channel):
        // on llvmpipe each load is a loop over the lanes.
        let gamma = gb[ch];
        let beta = gb[nc + ch];
        y4[(gbase + off) / 4u] = vec4<y4_t>(vec4<f32>(affine_act(v.x, gamma, beta), affine_act(v.y, gamma, beta), affine_act(v.z, gamma, beta), affine_act(v.w, gamma, beta)));
    }
}
