// Elementwise ops on flat f32 arrays. One thread per element; the grid is
// split over x and y (see grid_1d), so every entry bounds-checks.
// The output comes first (binding 1) so fill / unary / binary entries share
// one file: each binds only a prefix of the storage buffers.

struct Params {
    n: u32,
    alpha: f32,
    beta: f32,
    gamma: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;

const WG: u32 = 256u;

fn flat(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + wid.y * nwg.x) * WG + lid;
}

// y = alpha * a + beta * b
@compute @workgroup_size(256)
fn axpby(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.n) { return; }
    y[i] = p.alpha * a[i] + p.beta * b[i];
}

// y = alpha * a * b
@compute @workgroup_size(256)
fn mul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.n) { return; }
    y[i] = p.alpha * a[i] * b[i];
}

// y = alpha (fill; binds only y)
@compute @workgroup_size(256)
fn fill(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.n) { return; }
    y[i] = p.alpha;
}

// Unary ops read only `a`.

// y = alpha * a + beta
@compute @workgroup_size(256)
fn affine(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.n) { return; }
    y[i] = p.alpha * a[i] + p.beta;
}

// y = clamp(a, alpha, beta)
@compute @workgroup_size(256)
fn clamp_range(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.n) { return; }
    y[i] = clamp(a[i], p.alpha, p.beta);
}

// y = a + alpha * b[i / hw]: `b` holds one value per (sample, channel) row of
// a's NCHW layout (SR3's FeatureWiseAffine noise bias, broadcast over H x W).
// hw arrives as the u32 bit pattern of the fourth parameter word.
@compute @workgroup_size(256)
fn add_channel_bias(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.n) { return; }
    let hw = bitcast<u32>(p.gamma);
    y[i] = a[i] + p.alpha * b[i / hw];
}

// Gated activation (PixelCNN): y[n, c] = tanh(a[n, c]) * sigmoid(a[n, c + C])
// for y [N, C, H, W] and a [N, 2C, H, W]. C*H*W arrives as the u32 bit
// pattern of the `gamma` word. tanh and sigmoid as conv.wgsl's epilogue
// (tanh via exp(-2|v|) so large |v| cannot overflow to inf/inf).
@compute @workgroup_size(256)
fn gate(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.n) { return; }
    let chw = bitcast<u32>(p.gamma);
    let s = i / chw;
    let t = a[i + s * chw];
    let g = a[i + (s + 1u) * chw];
    let e = exp(-2.0 * abs(t));
    y[i] = (sign(t) * (1.0 - e) / (1.0 + e)) * (1.0 / (1.0 + exp(-g)));
}
