// Shared WGSL, composed into every kernel by its `#import prelude` line
// (src/gpu/shader.rs). Not a module on its own: WG, CHUNK and the code
// constants (ACT_*, CONV_*, SOFTMAX_*, BIAS_*) are written above this text
// from src/gpu/codes.rs.

// Linear workgroup id of a 1-D grid split over x and y (see grid_1d):
// x * y may exceed what was asked for, so every entry bounds-checks.
fn wg_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

// Linear thread id of a 1-D grid of WG-thread workgroups.
fn flat(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return wg_index(wid, nwg) * WG + lid;
}

// Sample, channel and pixel of flat NCHW index i (c channels of hw pixels).
struct Nchw {
    n: u32,
    ch: u32,
    px: u32,
}

fn nchw(i: u32, c: u32, hw: u32) -> Nchw {
    let q = i / hw;
    return Nchw(q / c, q % c, i - q * hw);
}

// Scratch of the workgroup reductions below. Only entries that call them
// use it, so it costs the others no workgroup memory.
var<workgroup> red: array<f32, WG>;

// Fixed-order tree sum over a WG-thread workgroup: the same result on every
// run (no float atomics). Every invocation must call it (uniform control
// flow); it may be called again right after (it ends with a barrier).
fn wg_sum(lid: u32, v: f32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            red[lid] = red[lid] + red[lid + s];
        }
        workgroupBarrier();
    }
    let total = red[0];
    workgroupBarrier();
    return total;
}

// Scratch of wg_welford (GroupNorm statistics); costs only its callers.
var<workgroup> red_n: array<f32, WG>;
var<workgroup> red_mean: array<f32, WG>;
var<workgroup> red_m2: array<f32, WG>;

// Fixed-order tree merge of per-thread (count, mean, M2) triples (Chan et
// al.'s pairwise update; count 0 = empty): (count, mean, M2) of them all,
// the same bits on every run and in every workgroup given the same inputs.
// Same rules as wg_sum.
fn wg_welford(lid: u32, n: f32, mean: f32, m2: f32) -> vec3<f32> {
    red_n[lid] = n;
    red_mean[lid] = mean;
    red_m2[lid] = m2;
    workgroupBarrier();
    for (var st = WG / 2u; st > 0u; st >>= 1u) {
        if (lid < st) {
            let nb = red_n[lid + st];
            if (nb > 0.0) {
                let na = red_n[lid];
                let nab = na + nb;
                let d = red_mean[lid + st] - red_mean[lid];
                red_mean[lid] += d * (nb / nab);
                red_m2[lid] += red_m2[lid + st] + d * d * (na * nb / nab);
                red_n[lid] = nab;
            }
        }
        workgroupBarrier();
    }
    let r = vec3<f32>(red_n[0], red_mean[0], red_m2[0]);
    workgroupBarrier();
    return r;
}

// Tree maximum over the workgroup, same rules as wg_sum.
fn wg_max(lid: u32, v: f32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            red[lid] = max(red[lid], red[lid + s]);
        }
        workgroupBarrier();
    }
    let m = red[0];
    workgroupBarrier();
    return m;
}

// Activations (the conv epilogue's ACT codes, PixelCNN's gate).
fn act_relu(v: f32) -> f32 {
    return max(v, 0.0);
}

fn act_lrelu(v: f32, slope: f32) -> f32 {
    return select(v * slope, v, v >= 0.0);
}

fn act_swish(v: f32) -> f32 {
    return v / (1.0 + exp(-v));
}

// tanh via exp(-2|v|) so large |v| cannot overflow to inf/inf.
fn act_tanh(v: f32) -> f32 {
    let e = exp(-2.0 * abs(v));
    return sign(v) * (1.0 - e) / (1.0 + e);
}

fn act_sigmoid(v: f32) -> f32 {
    return 1.0 / (1.0 + exp(-v));
}

// Activation `act` (an ACT_* code); `slope` is LeakyReLU's negative slope.
fn apply_act(act: u32, v: f32, slope: f32) -> f32 {
    switch act {
        case ACT_RELU: { return act_relu(v); }
        case ACT_LRELU: { return act_lrelu(v, slope); }
        case ACT_SWISH: { return act_swish(v); }
        case ACT_TANH: { return act_tanh(v); }
        case ACT_SIGMOID: { return act_sigmoid(v); }
        default: { return v; }
    }
}

// The flow couplings' bounded log-scale (flow.wgsl and its gradients in
// grad.wgsl must agree bit for bit, so it lives here).

// atan with ~1 ulp error on every device. The built-in atan may be as coarse
// as 4096 ulp under Vulkan's precision rules, which would show in
// exp(logscale) and in the logdet. Range reduction to |t| <= tan(pi/8), then
// a degree-9 odd minimax polynomial.
fn atan_acc(x: f32) -> f32 {
    let ax = abs(x);
    var off = 0.0;
    var t = ax;
    if (ax > 2.414213562373095) {
        off = 1.5707963267948966;
        t = -1.0 / ax;
    } else if (ax > 0.41421356237309503) {
        off = 0.7853981633974483;
        t = (ax - 1.0) / (ax + 1.0);
    }
    let z = t * t;
    let r = (((0.0805374449538 * z - 0.138776856032) * z + 0.199777106478) * z - 0.333329491539) * z * t + t;
    return sign(x) * (off + r);
}

// The coupling's bounded log-scale: 0.318 * atan(2 * s), in (-0.5, 0.5).
fn logscale(s: f32) -> f32 {
    return 0.318 * atan_acc(2.0 * s);
}

// Sum of a vec4's lanes in a fixed order (the vec4 GroupNorm statistics).
fn hsum(v: vec4<f32>) -> f32 {
    return (v.x + v.y) + (v.z + v.w);
}
