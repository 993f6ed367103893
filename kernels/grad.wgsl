#import prelude

// Reverse-mode gradients (vector-Jacobian products) that the graph cannot
// compose from other kernels: through a conv epilogue's activation, through
// a clamp, through the affine coupling and through the split-off Gaussian's
// sample. Tensors are NCHW f32; "hw" is H*W. One thread per element of the
// grid tensor (dy / z / da); the grid is padded (grid_1d), so every entry
// bounds-checks.
//
// Bindings: three read-only inputs, then one or two outputs. An entry with
// fewer inputs gets some other read-only input bound again in the spare slot
// (read-only bindings may share a buffer; the wrappers make every output a
// buffer of its own).

struct Params {
    total: u32,  // elements of the grid tensor (dy, z, da)
    c: u32,      // its channels
    hw: u32,     // pixels per channel
    k: u32,      // affine_coupling_grad: split point
    a: f32,      // act_grad: alpha; clamp_grad: lo; gaussian_sample_grad: heat
    b: f32,      // act_grad: 1 / alpha; clamp_grad: hi
    slope: f32,  // act_grad: LeakyReLU's negative slope
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> g_in: array<f32>;   // dy / da
@group(0) @binding(2) var<storage, read> x_in: array<f32>;   // y / x / z / eps
@group(0) @binding(3) var<storage, read> aux: array<f32>;    // scale / h
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;   // out / dz / dh
@group(0) @binding(5) var<storage, read_write> dst2: array<f32>;  // affine: dh

// act_grad: the ACT_* code of the forward epilogue; HAS_SCALE: aux holds the
// per-channel scale (else 1).
override ACT: u32 = ACT_NONE;
override HAS_SCALE: bool = false;
// affine_coupling_grad: gradient of affine_reverse instead of affine_forward.
override REVERSE: bool = false;
// gaussian_sample_grad: log(sigma) = logscale(v) instead of v itself.
override RESCALE: bool = false;

// d logscale / ds = 0.318 * 2 / (1 + 4 s^2).
fn dlogscale(s: f32) -> f32 {
    return 0.636 / (1.0 + 4.0 * s * s);
}

// ------------------------------------------------------- conv epilogue
// Forward: y = alpha * act(pre), pre = (conv + bias) * scale[c]. Gradient wrt
// (conv + bias): dy * alpha * scale[c] * act'(pre), with act' recovered from
// the saved output through t = y / alpha (ACT_SWISH is refused by the host).
fn act_deriv(t: f32) -> f32 {
    switch ACT {
        case ACT_RELU: { return select(0.0, 1.0, t > 0.0); }
        case ACT_LRELU: { return select(p.slope, 1.0, t > 0.0); }
        // (1 - t)(1 + t): exact 1 - t for t near 1, where tanh saturates.
        case ACT_TANH: { return (1.0 - t) * (1.0 + t); }
        case ACT_SIGMOID: { return t * (1.0 - t); }
        default: { return 1.0; }
    }
}

@compute @workgroup_size(WG)
fn act_grad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.total) { return; }
    var g = g_in[i] * p.a;
    if (HAS_SCALE) {
        g = g * aux[(i / p.hw) % p.c];
    }
    dst[i] = g * act_deriv(x_in[i] * p.b);
}

// ---------------------------------------------------------------- clamp
// torch.clamp's gradient: dy where lo <= x <= hi (inclusive), else 0. A NaN
// x gives 0, tested on the bits since WGSL lets compilers assume floats are
// finite.
@compute @workgroup_size(WG)
fn clamp_grad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.total) { return; }
    let v = x_in[i];
    let nan = (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
    let inside = !nan && p.a <= v && v <= p.b;
    dst[i] = select(0.0, g_in[i], inside);
}

// ------------------------------------------------------ affine coupling
// VJP of flow.wgsl's `affine` wrt its input z (x_in) and the net output h
// (aux: [n, 2 * (c - k), hw], shift = h[2j], scale = h[2j+1], j = ch - k).
// forward y2 = (z2 + shift) * e, e = exp(ls); reverse y2 = z2 / e - shift.
// dz = dy (ch < k) or dy * e (forward) / dy / e (reverse); threads of the
// transformed channels also write both dh entries (dst2) of their pixel:
// d shift = dy * e / -dy, d scale = dls * dlogscale(scale) with
// dls = dy * (z2 + shift) * e / -dy * z2 / e. The logdet term is not
// differentiated.
@compute @workgroup_size(WG)
fn affine_coupling_grad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.total) { return; }
    let at = nchw(i, p.c, p.hw);
    let n = at.n;
    let ch = at.ch;
    let px = at.px;
    let dy = g_in[i];
    if (ch < p.k) {
        dst[i] = dy;
        return;
    }
    let j = ch - p.k;
    let hs = (n * 2u * (p.c - p.k) + 2u * j) * p.hw + px;
    let shift = aux[hs];
    let sc = aux[hs + p.hw];
    let ls = logscale(sc);
    let z = x_in[i];
    if (REVERSE) {
        let e = exp(-ls);
        dst[i] = dy * e;
        dst2[hs] = -dy;
        dst2[hs + p.hw] = -dy * z * e * dlogscale(sc);
    } else {
        let e = exp(ls);
        let de = dy * e;
        dst[i] = de;
        dst2[hs] = de;
        dst2[hs + p.hw] = de * (z + shift) * dlogscale(sc);
    }
}

// ------------------------------------------------- split-off Gaussian
// VJP of flow.wgsl's `gaussian_sample` (a = mean + exp(logs) * eps * heat)
// wrt h (dst: [n, 2c, hw]): d mean = da, d v = da * exp(logs) * eps * heat *
// dlogs/dv (1, or dlogscale(v) when RESCALE). da and eps (x_in): [n, c, hw].
@compute @workgroup_size(WG)
fn gaussian_sample_grad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.total) { return; }
    let at = nchw(i, p.c, p.hw);
    let n = at.n;
    let ch = at.ch;
    let px = at.px;
    let hi = (n * 2u * p.c + 2u * ch) * p.hw + px;
    let da = g_in[i];
    let v = aux[hi + p.hw];
    var logs = v;
    var dlogs = 1.0;
    if (RESCALE) {
        logs = logscale(v);
        dlogs = dlogscale(v);
    }
    dst[hi] = da;
    dst[hi + p.hw] = da * exp(logs) * x_in[i] * p.a * dlogs;
}
