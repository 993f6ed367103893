#import prelude

// Normalizing-flow layers of HCFlow: ActNorm, invertible 1x1 convolution,
// affine / additive couplings and the split-off conditional Gaussian.
// Tensors are NCHW f32; "hw" is H*W. Channel layouts follow the official
// code: split(z) = first k channels / the rest; cross(h) = even / odd channels.
//
// Entries that produce a per-sample sum (affine coupling logdet, Gaussian
// log-likelihood) write one partial sum per workgroup of CHUNK elements of
// one sample, exactly like reduce.wgsl's partial_sum, so reduce.wgsl's
// `finish` completes them deterministically (no float atomics).
//
// In-place variants (INPLACE) read the input from `dst` itself: a buffer may
// not be bound read-only and read-write in one dispatch, so the wrapper then
// binds some other read-only tensor at binding 1.

struct Params {
    n: u32,      // samples
    c: u32,      // channels of the main tensor (z / x)
    hw: u32,     // pixels per channel
    k: u32,      // affine: split point; additive: shifted channels; invconv: matrix offset
    parts: u32,  // reducing entries: partial sums per sample; invconv: pixel chunks
    total: u32,  // n * c * hw
    a: f32,      // gaussian_sample: heat
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<src_t>;
// aux: the layer's f32 parameters (ActNorm, 1x1 conv); h: the same binding
// when it holds the conditioning net's output (couplings, Gaussian), an
// activation stored like src and dst.
@group(0) @binding(2) var<storage, read> aux: array<f32>;
@group(0) @binding(2) var<storage, read> h: array<h_t>;
@group(0) @binding(3) var<storage, read_write> dst: array<dst_t>;
@group(0) @binding(4) var<storage, read_write> part: array<f32>;

override REVERSE: bool = false;
override INPLACE: bool = false;
// Gaussian scale: false = the conv output is log(sigma) itself (SR model);
// true = log(sigma) = 0.318 * atan(2 * scale) (rescaling model).
override RESCALE: bool = false;

// WG, PER_THREAD, CHUNK (shared with reduce.wgsl), flat, wg_sum and the
// coupling's logscale (atan_acc) come from the prelude.
const LOG_2PI: f32 = 1.8378770664093453;

fn load_in(i: u32) -> f32 {
    if (INPLACE) {
        return f32(dst[i]);
    }
    return f32(src[i]);
}

// ---------------------------------------------------------------- ActNorm
// aux = [bias (c), exp(logs) (c), exp(-logs) (c)], exponentials from the host.
// forward: (x + bias) * exp(logs); reverse: x * exp(-logs) - bias.
@compute @workgroup_size(WG)
fn actnorm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.total) { return; }
    let ch = (i / p.hw) % p.c;
    let v = load_in(i);
    if (REVERSE) {
        dst[i] = dst_t(v * aux[2u * p.c + ch] - aux[ch]);
    } else {
        dst[i] = dst_t((v + aux[ch]) * aux[p.c + ch]);
    }
}

// ActNorm on vec4s when H*W is a multiple of 4 (a vec4 stays in one channel):
// per-lane scalar accesses are the cost on CPU drivers. Same fields.
@group(0) @binding(1) var<storage, read> src4: array<vec4<src4_t>>;
@group(0) @binding(3) var<storage, read_write> dst4: array<vec4<dst4_t>>;

@compute @workgroup_size(WG)
fn actnorm4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (4u * i >= p.total) { return; }
    let ch = (4u * i / p.hw) % p.c;
    var v: vec4<f32>;
    if (INPLACE) {
        v = vec4<f32>(dst4[i]);
    } else {
        v = vec4<f32>(src4[i]);
    }
    if (REVERSE) {
        dst4[i] = vec4<dst4_t>(v * aux[2u * p.c + ch] - vec4<f32>(aux[ch]));
    } else {
        dst4[i] = vec4<dst4_t>((v + vec4<f32>(aux[ch])) * aux[p.c + ch]);
    }
}

// ------------------------------------------------- invertible 1x1 convolution
// y[o] = sum_i W[o][i] x[i] per pixel. aux holds W and W^-1, each stored
// input-major with the output index padded to a multiple of 4:
// aux[k + i * cp + o]. One invocation computes 4 output channels of one
// pixel; the workgroup shares the output block, so the W loads are uniform.
// Workgroup g of either invconv entry: sample n, output block ob (4
// channels), pixel chunk `chunk` of p.parts.
struct InvconvGroup {
    n: u32,
    ob: u32,
    chunk: u32,
}

fn invconv_group(g: u32) -> InvconvGroup {
    let nob = (p.c + 3u) / 4u;
    let rest = g / p.parts;
    return InvconvGroup(rest / nob, rest % nob, g % p.parts);
}

@compute @workgroup_size(WG)
fn invconv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let gr = invconv_group(wg_index(wid, nwg));
    let n = gr.n;
    let ob = gr.ob;
    let chunk = gr.chunk;
    if (n >= p.n) { return; }
    let nob = (p.c + 3u) / 4u;
    let px = chunk * WG + lid;
    if (px >= p.hw) { return; }
    let cp = nob * 4u;
    let o0 = ob * 4u;
    let xbase = n * p.c * p.hw + px;
    var acc = vec4<f32>(0.0);
    for (var i = 0u; i < p.c; i++) {
        let xi = f32(src[xbase + i * p.hw]);
        let wb = p.k + i * cp + o0;
        acc += vec4<f32>(aux[wb], aux[wb + 1u], aux[wb + 2u], aux[wb + 3u]) * xi;
    }
    for (var j = 0u; j < 4u; j++) {
        let o = o0 + j;
        if (o < p.c) {
            dst[xbase + o * p.hw] = dst_t(acc[j]);
        }
    }
}

// invconv on pixel quads when H*W is a multiple of 4 (a vec4 stays in one
// channel): on CPU drivers every per-lane load is a loop over the lanes,
// and here one vec4 of x serves 16 multiply-adds instead of one scalar 4,
// the 4 weights one vec4 load. Same products summed in the same order as
// `invconv`, so the same bits.
@group(0) @binding(2) var<storage, read> aux4: array<vec4<f32>>;

@compute @workgroup_size(WG)
fn invconv4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let gr = invconv_group(wg_index(wid, nwg));
    let n = gr.n;
    let ob = gr.ob;
    let chunk = gr.chunk;
    if (n >= p.n) { return; }
    let nob = (p.c + 3u) / 4u;
    let hw4 = p.hw / 4u;
    let q = chunk * WG + lid;
    if (q >= hw4) { return; }
    // W rows are padded to cp = 4 * nob and p.k is 0 or c * cp: aligned vec4s.
    let cp4 = nob;
    let xbase = n * p.c * hw4 + q;
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    for (var i = 0u; i < p.c; i++) {
        let xi = vec4<f32>(src4[xbase + i * hw4]);
        let w = aux4[p.k / 4u + i * cp4 + ob];
        a0 += w.x * xi;
        a1 += w.y * xi;
        a2 += w.z * xi;
        a3 += w.w * xi;
    }
    let o0 = ob * 4u;
    dst4[xbase + o0 * hw4] = vec4<dst4_t>(a0);
    if (o0 + 1u < p.c) { dst4[xbase + (o0 + 1u) * hw4] = vec4<dst4_t>(a1); }
    if (o0 + 2u < p.c) { dst4[xbase + (o0 + 2u) * hw4] = vec4<dst4_t>(a2); }
    if (o0 + 3u < p.c) { dst4[xbase + (o0 + 3u) * hw4] = vec4<dst4_t>(a3); }
}

// ------------------------------------------------------ affine coupling
// z: [n, c, hw]; channels < k pass through (z1), channels >= k (z2) are
// transformed with shift = h[2j], scale = h[2j+1] (cross split of the net
// output h: [n, 2 * (c - k), hw]), j = channel - k.
// forward: (z2 + shift) * exp(ls); reverse: z2 * exp(-ls) - shift, with
// ls = 0.318 * atan(2 * scale). Workgroup g covers CHUNK elements of sample
// g / parts and writes the sum of its ls to part[g].
@compute @workgroup_size(WG)
fn affine(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let g = wg_index(wid, nwg);
    if (g >= p.n * p.parts) { return; }
    let n = g / p.parts;
    let chunk = g - n * p.parts;
    let m = p.c * p.hw;
    let base = n * m;
    let hbase = n * 2u * (p.c - p.k) * p.hw;
    var acc = 0.0;
    for (var r = 0u; r < PER_THREAD; r++) {
        let e = chunk * CHUNK + r * WG + lid;
        if (e < m) {
            let ch = e / p.hw;
            let px = e - ch * p.hw;
            if (ch < p.k) {
                if (!INPLACE) {
                    dst[base + e] = dst_t(f32(src[base + e]));
                }
            } else {
                let v = load_in(base + e);
                let j = ch - p.k;
                let shift = f32(h[hbase + 2u * j * p.hw + px]);
                let ls = logscale(f32(h[hbase + (2u * j + 1u) * p.hw + px]));
                if (REVERSE) {
                    dst[base + e] = dst_t(v * exp(-ls) - shift);
                } else {
                    dst[base + e] = dst_t((v + shift) * exp(ls));
                }
                acc += ls;
            }
        }
    }
    let t = wg_sum(lid, acc);
    if (lid == 0u) {
        part[g] = t;
    }
}

// `affine` without the logdet sum (its caller passed none: the reverse
// pass) on vec4s when H*W is a multiple of 4, one quad per thread: the
// per-lane scalar accesses and the workgroup reduction are the cost on CPU
// drivers. Same arithmetic per element, so the same bits.
@group(0) @binding(2) var<storage, read> h4: array<vec4<h4_t>>;

@compute @workgroup_size(WG)
fn affine4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (4u * i >= p.total) { return; }
    let m4 = p.c * p.hw / 4u;
    let hw4 = p.hw / 4u;
    let n = i / m4;
    let e = i - n * m4;
    let ch = e / hw4;
    let q = e - ch * hw4;
    if (ch < p.k) {
        if (!INPLACE) {
            dst4[i] = vec4<dst4_t>(vec4<f32>(src4[i]));
        }
        return;
    }
    var v: vec4<f32>;
    if (INPLACE) {
        v = vec4<f32>(dst4[i]);
    } else {
        v = vec4<f32>(src4[i]);
    }
    let j = ch - p.k;
    let hbase = n * 2u * (p.c - p.k) * hw4;
    let shift = vec4<f32>(h4[hbase + 2u * j * hw4 + q]);
    let sc = vec4<f32>(h4[hbase + (2u * j + 1u) * hw4 + q]);
    let ls = vec4<f32>(logscale(sc.x), logscale(sc.y), logscale(sc.z), logscale(sc.w));
    if (REVERSE) {
        dst4[i] = vec4<dst4_t>(v * exp(-ls) - shift);
    } else {
        dst4[i] = vec4<dst4_t>((v + shift) * exp(ls));
    }
}

// ------------------------------------------------------ additive coupling
// The odd steps of the rescaling model's Affine3shift: the first k channels
// get z[ch] +/- shift[ch] (shift: [n, k, hw]); the rest pass through.
@compute @workgroup_size(WG)
fn additive(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.total) { return; }
    let at = nchw(i, p.c, p.hw);
    let n = at.n;
    let ch = at.ch;
    let px = at.px;
    if (ch < p.k) {
        let s = f32(h[(n * p.k + ch) * p.hw + px]);
        let v = load_in(i);
        if (REVERSE) {
            dst[i] = dst_t(v - s);
        } else {
            dst[i] = dst_t(v + s);
        }
    } else if (!INPLACE) {
        dst[i] = dst_t(f32(src[i]));
    }
}

// ------------------------------------------------- split-off Gaussian
// h: [n, 2c, hw] conv output; mean = h[2ch], log-sigma from h[2ch+1].
fn gauss_index(n: u32, ch: u32, px: u32) -> u32 {
    return (n * 2u * p.c + 2u * ch) * p.hw + px;
}

fn gauss_logs(v: f32) -> f32 {
    if (RESCALE) {
        return logscale(v);
    }
    return v;
}

// dst = mean + exp(logs) * eps * heat, eps (standard normal) in src.
@compute @workgroup_size(WG)
fn gaussian_sample(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.total) { return; }
    let at = nchw(i, p.c, p.hw);
    let n = at.n;
    let ch = at.ch;
    let px = at.px;
    let hi = gauss_index(n, ch, px);
    let mean = f32(h[hi]);
    let logs = gauss_logs(f32(h[hi + p.hw]));
    dst[i] = dst_t(mean + exp(logs) * f32(src[i]) * p.a);
}

// dst = (x - mean) * exp(-logs): the rescaling model's forward split-off.
@compute @workgroup_size(WG)
fn gaussian_normalize(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.total) { return; }
    let at = nchw(i, p.c, p.hw);
    let n = at.n;
    let ch = at.ch;
    let px = at.px;
    let hi = gauss_index(n, ch, px);
    let mean = f32(h[hi]);
    let logs = gauss_logs(f32(h[hi + p.hw]));
    dst[i] = dst_t((f32(src[i]) - mean) * exp(-logs));
}

// gaussian_logp's partial sums: f32 in every storage variant.
@group(0) @binding(3) var<storage, read_write> dstp: array<f32>;

// Partial sums of the diagonal-Gaussian log-density
// -0.5 * (2 logs + (x - mean)^2 / exp(2 logs) + log(2 pi)); written to dst[g]
// (binding 3 is the partials buffer here), finished by reduce.wgsl.
@compute @workgroup_size(WG)
fn gaussian_logp(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let g = wg_index(wid, nwg);
    if (g >= p.n * p.parts) { return; }
    let n = g / p.parts;
    let chunk = g - n * p.parts;
    let m = p.c * p.hw;
    var acc = 0.0;
    for (var r = 0u; r < PER_THREAD; r++) {
        let e = chunk * CHUNK + r * WG + lid;
        if (e < m) {
            let ch = e / p.hw;
            let px = e - ch * p.hw;
            let hi = gauss_index(n, ch, px);
            let d = f32(src[n * m + e]) - f32(h[hi]);
            let logs = gauss_logs(f32(h[hi + p.hw]));
            acc += -0.5 * (2.0 * logs + d * d * exp(-2.0 * logs) + LOG_2PI);
        }
    }
    let t = wg_sum(lid, acc);
    if (lid == 0u) {
        dstp[g] = t;
    }
}
