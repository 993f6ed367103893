#import prelude

// Softmax family over the channel axis of [N, C, H, W], C = G * K: each
// (n, g, pixel) row of K channels (channel = g * K + k, stride H*W apart in
// memory) is normalised on its own.
//
// Work split: a workgroup owns P = WG / TPR consecutive pixels of one (n, g);
// TPR threads cooperate on each row, thread t taking the contiguous channel
// chunk [t*cs, min((t+1)*cs, K)), cs = ceil(K / TPR). Lanes p = lid % P are
// neighbouring pixels, so every load is coalesced across the workgroup. Row
// statistics are combined across the TPR threads in shared memory.
//
// Temperature is a uniform (rewritten between replays): logits are scaled by
// inv = 1/T, with inv clamped to the largest f32 so T -> 0 degrades to a
// one-hot (ties share the mass) instead of producing inf * 0.

struct Params {
    hw: u32,     // H * W
    k: u32,      // channels per group
    groups: u32, // G
    tiles: u32,  // ceil(hw / P)
    total: u32,  // N * G * tiles workgroups
    temp: f32,   // temperature (>= 0)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<x_t>;
@group(0) @binding(2) var<storage, read_write> y: array<y_t>;
// sample_categorical only: one uniform in (0, 1) per (n, g, pixel).
@group(0) @binding(3) var<storage, read> u: array<u_t>;

// Threads per row, a power of two dividing WG (chosen by the wrapper from K).
override TPR: u32 = 16u;
// softmax_rows: SOFTMAX_PLAIN = softmax(x / T), SOFTMAX_LOG = log_softmax(x).
override MODE: u32 = SOFTMAX_PLAIN;

const FMAX: f32 = 3.4028234663852886e38;
// exp(-87) is still a normal f32; below it exp may hit (flushed) denormals.
const EXP_FLOOR: f32 = -87.0;

var<workgroup> sm_m: array<f32, WG>;
var<workgroup> sm_s: array<f32, WG>;
var<workgroup> sm_i: array<u32, WG>;
var<workgroup> sm_pre: array<f32, WG>;

struct Row {
    ok: bool,   // pixel inside the image
    base: u32,  // index of channel 0 of this row's group
    out: u32,   // index into the [N, G, H, W] per-row tensors
    k0: u32,
    k1: u32,
    lane: u32,  // pixel slot p within the workgroup
    t: u32,     // thread within the row
}

fn row_of(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> Row {
    let P = WG / TPR;
    let wg = wg_index(wid, nwg);
    let ng = wg / p.tiles;
    let tile = wg % p.tiles;
    let lane = lid % P;
    let t = lid / P;
    let pix = tile * P + lane;
    let n = ng / p.groups;
    let g = ng % p.groups;
    let cs = (p.k + TPR - 1u) / TPR;
    var r: Row;
    r.ok = pix < p.hw;
    r.base = ((n * p.groups + g) * p.k) * p.hw + pix;
    r.out = ng * p.hw + pix;
    r.k0 = min(t * cs, p.k);
    r.k1 = min(r.k0 + cs, p.k);
    if (!r.ok) {
        r.k1 = r.k0; // empty chunk: the thread still joins every barrier
    }
    r.lane = lane;
    r.t = t;
    return r;
}

fn inv_temp() -> f32 {
    // 1/T overflows (or divides by zero) for T below 1/FMAX.
    return select(1.0 / p.temp, FMAX, p.temp < 1.0 / FMAX);
}

// exp(d) for d <= 0, flushed to exactly 0 below EXP_FLOOR (d may be -inf
// after (x - m) * inv overflows; exp never sees it).
fn ex(d: f32) -> f32 {
    return select(exp(max(d, EXP_FLOOR)), 0.0, d < EXP_FLOOR);
}

// Row maximum of the raw logits, broadcast to every thread of the row.
fn row_max(r: Row, lid: u32) -> f32 {
    let P = WG / TPR;
    var m = -FMAX;
    for (var k = r.k0; k < r.k1; k++) {
        m = max(m, f32(x[r.base + k * p.hw]));
    }
    sm_m[lid] = m;
    workgroupBarrier();
    for (var s = TPR / 2u; s > 0u; s = s / 2u) {
        if (r.t < s) {
            sm_m[lid] = max(sm_m[lid], sm_m[lid + s * P]);
        }
        workgroupBarrier();
    }
    let out = sm_m[r.lane];
    workgroupBarrier(); // sm_m may be reused after this
    return out;
}

// Sum of exp((x - m) * inv) over the thread's chunk, in channel order.
fn chunk_sum(r: Row, m: f32, inv: f32) -> f32 {
    var s = 0.0;
    for (var k = r.k0; k < r.k1; k++) {
        s += ex((f32(x[r.base + k * p.hw]) - m) * inv);
    }
    return s;
}

@compute @workgroup_size(WG)
fn softmax_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let wg = wg_index(wid, nwg);
    if (wg >= p.total) { return; } // uniform across the workgroup
    let P = WG / TPR;
    let r = row_of(wid, nwg, lid);
    let inv = select(inv_temp(), 1.0, MODE == SOFTMAX_LOG);
    let m = row_max(r, lid);
    sm_s[lid] = chunk_sum(r, m, inv);
    workgroupBarrier();
    for (var s = TPR / 2u; s > 0u; s = s / 2u) {
        if (r.t < s) {
            sm_s[lid] = sm_s[lid] + sm_s[lid + s * P];
        }
        workgroupBarrier();
    }
    let total = sm_s[r.lane];
    if (MODE == SOFTMAX_LOG) {
        let ls = log(total);
        for (var k = r.k0; k < r.k1; k++) {
            let i = r.base + k * p.hw;
            y[i] = y_t((f32(x[i]) - m) - ls);
        }
    } else {
        let rs = 1.0 / total;
        for (var k = r.k0; k < r.k1; k++) {
            let i = r.base + k * p.hw;
            y[i] = y_t(ex((f32(x[i]) - m) * inv) * rs);
        }
    }
}

// First index of the row maximum (ties -> smallest k), valid on thread t == 0.
fn row_argmax(r: Row, lid: u32) -> u32 {
    let P = WG / TPR;
    var bv = -FMAX;
    var bi = 0xFFFFFFFFu;
    for (var k = r.k0; k < r.k1; k++) {
        let v = f32(x[r.base + k * p.hw]);
        if (k == r.k0 || v > bv) {
            bv = v;
            bi = k;
        }
    }
    sm_m[lid] = bv;
    sm_i[lid] = bi;
    workgroupBarrier();
    for (var s = TPR / 2u; s > 0u; s = s / 2u) {
        if (r.t < s) {
            let v2 = sm_m[lid + s * P];
            let i2 = sm_i[lid + s * P];
            if (v2 > sm_m[lid] || (v2 == sm_m[lid] && i2 < sm_i[lid])) {
                sm_m[lid] = v2;
                sm_i[lid] = i2;
            }
        }
        workgroupBarrier();
    }
    return sm_i[lid];
}

@compute @workgroup_size(WG)
fn argmax_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let wg = wg_index(wid, nwg);
    if (wg >= p.total) { return; }
    let r = row_of(wid, nwg, lid);
    let idx = row_argmax(r, lid);
    if (r.t == 0u && r.ok) {
        y[r.out] = y_t(f32(idx));
    }
}

// Inverse-CDF sampling: the smallest k with cumsum(e)[k] > u * sum(e), where
// e = exp((x - max) / T). T == 0 is greedy argmax.
@compute @workgroup_size(WG)
fn sample_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let wg = wg_index(wid, nwg);
    if (wg >= p.total) { return; }
    let P = WG / TPR;
    let r = row_of(wid, nwg, lid);
    if (p.temp == 0.0) {
        let idx = row_argmax(r, lid);
        if (r.t == 0u && r.ok) {
            y[r.out] = y_t(f32(idx));
        }
        return;
    }
    let inv = inv_temp();
    let m = row_max(r, lid);
    let s_own = chunk_sum(r, m, inv);
    sm_s[lid] = s_own;
    workgroupBarrier();
    // One thread per row walks the TPR chunk sums in order, so every thread
    // sees the same prefixes and the same owner chunk.
    if (r.t == 0u && r.ok) {
        var total = 0.0;
        for (var j = 0u; j < TPR; j++) {
            sm_pre[lid + j * P] = total;
            total += sm_s[lid + j * P];
        }
        let thr = f32(u[r.out]) * total;
        var owner = 0u;
        var pre = 0.0;
        for (var j = 0u; j < TPR; j++) {
            let sj = sm_s[lid + j * P];
            if (sj > 0.0) {
                owner = j;
                if (thr < pre + sj) { break; }
            }
            pre += sj;
        }
        // Rounding can leave thr >= total; then the last non-empty chunk wins.
        sm_i[r.lane] = owner;
        sm_m[r.lane] = thr;
    }
    workgroupBarrier();
    if (r.ok && sm_i[r.lane] == r.t) {
        let thr = sm_m[r.lane] - sm_pre[lid];
        var c = 0.0;
        var pick = r.k0;
        var last_pos = r.k0;
        var found = false;
        for (var k = r.k0; k < r.k1; k++) {
            let e = ex((f32(x[r.base + k * p.hw]) - m) * inv);
            if (e > 0.0) { last_pos = k; }
            c += e;
            if (thr < c) {
                pick = k;
                found = true;
                break;
            }
        }
        y[r.out] = y_t(f32(select(last_pos, pick, found)));
    }
}
