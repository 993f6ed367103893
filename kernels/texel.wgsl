#import prelude

// Texture texels <-> NCHW planes, and a separable tap-table resize, so a
// host's texture goes through a model without leaving the GPU. Texels
// arrive as raw words (copy_texture_to_buffer; rows padded to
// `row_words`): rgba8 formats are one word a texel (byte 0 = R), rgba16float
// two (R,G then B,A as f16 pairs). sRGB-encoded bytes are used as they are:
// the models work on display-referred values, as for PNG files.

struct Params {
    w: u32,          // texels per row (input of unpack, output of pack)
    h: u32,          // rows
    row_words: u32,  // words per padded row
    format: u32,     // FORMAT_RGBA8 or FORMAT_RGBA16F
    n_in: u32,       // resize: samples along the resized axis, in
    n_out: u32,      // resize: samples along the resized axis, out
    taps: u32,       // resize: taps per output sample
    other: u32,      // resize: length of the other axis
}

const FORMAT_RGBA8: u32 = 0u;
const FORMAT_RGBA16F: u32 = 1u;

@group(0) @binding(0) var<uniform> p: Params;

// unpack: words -> rgb [3, h, w] and alpha [h, w]
@group(0) @binding(1) var<storage, read_write> rgb: array<rgb_t>;
@group(0) @binding(2) var<storage, read_write> alpha: array<alpha_t>;
@group(0) @binding(3) var<storage, read_write> words: array<u32>;

fn texel(x: u32, y: u32) -> vec4<f32> {
    if (p.format == FORMAT_RGBA8) {
        return unpack4x8unorm(words[y * p.row_words + x]);
    }
    let i = y * p.row_words + 2u * x;
    return vec4<f32>(unpack2x16float(words[i]), unpack2x16float(words[i + 1u]));
}

@compute @workgroup_size(WG)
fn unpack_texels(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    let n = p.w * p.h;
    if (i >= n) { return; }
    let t = texel(i % p.w, i / p.w);
    rgb[i] = rgb_t(t.x);
    rgb[n + i] = rgb_t(t.y);
    rgb[2u * n + i] = rgb_t(t.z);
    alpha[i] = alpha_t(t.w);
}

// pack: rgb [3, h, w] and alpha [h, w] -> words, clamped to [0, 1]
// (rgba8: pack4x8unorm, which rounds half up; rgba16float: f16 pairs).
@compute @workgroup_size(WG)
fn pack_texels(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    let n = p.w * p.h;
    if (i >= n) { return; }
    let x = i % p.w;
    let y = i / p.w;
    // Clamped as the image path clamps (the model's RGB already is; a
    // bicubic alpha can overshoot).
    let v = clamp(vec4<f32>(f32(rgb[i]), f32(rgb[n + i]), f32(rgb[2u * n + i]), f32(alpha[i])), vec4<f32>(0.0), vec4<f32>(1.0));
    if (p.format == FORMAT_RGBA8) {
        words[y * p.row_words + x] = pack4x8unorm(v);
    } else {
        let j = y * p.row_words + 2u * x;
        words[j] = pack2x16float(v.xy);
        words[j + 1u] = pack2x16float(v.zw);
    }
}

// resize: out = sum over taps of wt * in[idx], along rows (resize_rows:
// planes [n_in, other] -> [n_out, other]) or columns (resize_cols:
// [other, n_in] -> [other, n_out]).
@group(0) @binding(1) var<storage, read_write> dst: array<dst_t>;
@group(0) @binding(2) var<storage, read> src: array<src_t>;
@group(0) @binding(3) var<storage, read> tap_idx: array<u32>;
@group(0) @binding(4) var<storage, read> tap_wt: array<f32>;

@compute @workgroup_size(WG)
fn resize_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.n_out * p.other) { return; }
    let o = i / p.other;
    let c = i % p.other;
    var s = 0.0;
    for (var k = 0u; k < p.taps; k++) {
        s += tap_wt[o * p.taps + k] * f32(src[tap_idx[o * p.taps + k] * p.other + c]);
    }
    dst[i] = dst_t(s);
}

@compute @workgroup_size(WG)
fn resize_cols(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.n_out * p.other) { return; }
    let r = i / p.n_out;
    let o = i % p.n_out;
    var s = 0.0;
    for (var k = 0u; k < p.taps; k++) {
        s += tap_wt[o * p.taps + k] * f32(src[r * p.n_in + tap_idx[o * p.taps + k]]);
    }
    dst[i] = dst_t(s);
}
