#import prelude

// Elementwise ops on flat f32 arrays. One thread per element; the grid is
// split over x and y (see grid_1d), so every entry bounds-checks.
// The output comes first (binding 1) so fill / unary / binary entries share
// one file: each binds only a prefix of the storage buffers.

struct Params {
    n: u32,
    alpha: f32,
    beta: f32,
    span: u32,   // add_channel_bias: H*W; gate: C*H*W; else unused
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> y: array<y_t>;
@group(0) @binding(2) var<storage, read> a: array<a_t>;
@group(0) @binding(3) var<storage, read> b: array<b_t>;

// y = alpha * a + beta * b
@compute @workgroup_size(WG)
fn axpby(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.n) { return; }
    y[i] = y_t(p.alpha * f32(a[i]) + p.beta * f32(b[i]));
}

// y = alpha * a * b
@compute @workgroup_size(WG)
fn mul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.n) { return; }
    y[i] = y_t(p.alpha * f32(a[i]) * f32(b[i]));
}

// y = alpha (fill; binds only y)
@compute @workgroup_size(WG)
fn fill(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.n) { return; }
    y[i] = y_t(p.alpha);
}

// Unary ops read only `a`.

// y = alpha * a + beta
@compute @workgroup_size(WG)
fn affine(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.n) { return; }
    y[i] = y_t(p.alpha * f32(a[i]) + p.beta);
}

// y = clamp(a, alpha, beta), except that a non-finite a passes through (as
// torch.clamp keeps NaN): a model that overflowed must not turn into a
// plausible constant image. Tested on the bits, since WGSL lets compilers
// assume floats are finite.
@compute @workgroup_size(WG)
fn clamp_range(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.n) { return; }
    let v = f32(a[i]);
    let finite = (bitcast<u32>(v) & 0x7fffffffu) < 0x7f800000u;
    y[i] = y_t(select(v, clamp(v, p.alpha, p.beta), finite));
}

// y = round(clamp(a, 0, 1) * alpha) / alpha: quantization to alpha levels
// (torch.round: half to even, as WGSL's round). Non-finite a passes through
// like clamp_range. The result is never negative; its sign bit is cleared on
// the bits so -0 (which clamp may keep or not) always becomes +0.
@compute @workgroup_size(WG)
fn quantize(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.n) { return; }
    let v = f32(a[i]);
    let finite = (bitcast<u32>(v) & 0x7fffffffu) < 0x7f800000u;
    let q = round(clamp(v, 0.0, 1.0) * p.alpha) / p.alpha;
    y[i] = y_t(select(v, bitcast<f32>(bitcast<u32>(q) & 0x7fffffffu), finite));
}

// y = a + alpha * b[i / hw]: `b` holds one value per (sample, channel) row of
// a's NCHW layout (SR3's FeatureWiseAffine noise bias, broadcast over H x W).
@compute @workgroup_size(WG)
fn add_channel_bias(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.n) { return; }
    y[i] = y_t(f32(a[i]) + p.alpha * f32(b[i / p.span]));
}

// Gated activation (PixelCNN): y[n, c] = tanh(a[n, c]) * sigmoid(a[n, c + C])
// for y [N, C, H, W] and a [N, 2C, H, W]; p.span = C*H*W. tanh and sigmoid
// are the prelude's (the conv epilogue's).
@compute @workgroup_size(WG)
fn gate(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.n) { return; }
    let chw = p.span;
    let s = i / chw;
    let t = f32(a[i + s * chw]);
    let g = f32(a[i + (s + 1u) * chw]);
    y[i] = y_t(act_tanh(t) * act_sigmoid(g));
}
