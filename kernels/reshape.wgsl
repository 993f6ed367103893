#import prelude

// Layout ops on NCHW f32 tensors: space<->depth (HCFlow squeeze / torch
// pixel_unshuffle and their inverses), the Haar wavelet down/up sampling of
// HCFlow's rescaling flow, and a strided channel copy that also does nearest
// upsampling (slice, concat, insert, upsample).
//
// One thread per element of work; the grid is split over x and y (grid_1d),
// so every entry recovers the linear id and bounds-checks it.
// All entries share one parameter block; each documents the fields it reads.

struct Params {
    n: u32,          // threads to run
    c_in: u32,       // input dims (per sample)
    h_in: u32,
    w_in: u32,
    c_out: u32,      // output dims (per sample)
    h_out: u32,
    w_out: u32,
    f: u32,          // spatial factor
    in_start: u32,   // copy_channels: source channels in_start + k*in_step
    in_step: u32,
    out_start: u32,  // copy_channels: target channels out_start + k*out_step
    out_step: u32,
    count: u32,      // copy_channels: number of channels moved
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<x_t>;
@group(0) @binding(2) var<storage, read_write> y: array<y_t>;

// out (B, C*f*f, H/f, W/f), out channel = c*f*f + dy*f + dx:
// out[b, c*f*f + dy*f + dx, i, j] = in[b, c, i*f + dy, j*f + dx].
// One thread per output element (coalesced writes).
@compute @workgroup_size(WG)
fn space_to_depth(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.n) { return; }
    let j = i % p.w_out;
    var t = i / p.w_out;
    let r = t % p.h_out;
    t = t / p.h_out;
    let co = t % p.c_out;
    let b = t / p.c_out;
    let ff = p.f * p.f;
    let c = co / ff;
    let sub = co % ff;
    let dy = sub / p.f;
    let dx = sub % p.f;
    y[i] = y_t(f32(x[((b * p.c_in + c) * p.h_in + r * p.f + dy) * p.w_in + j * p.f + dx]));
}

// Inverse of space_to_depth: out (B, C/(f*f), H*f, W*f),
// out[b, c, i*f + dy, j*f + dx] = in[b, c*f*f + dy*f + dx, i, j].
@compute @workgroup_size(WG)
fn depth_to_space(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.n) { return; }
    let xo = i % p.w_out;
    var t = i / p.w_out;
    let yo = t % p.h_out;
    t = t / p.h_out;
    let c = t % p.c_out;
    let b = t / p.c_out;
    let ci = c * p.f * p.f + (yo % p.f) * p.f + xo % p.f;
    y[i] = y_t(f32(x[((b * p.c_in + ci) * p.h_in + yo / p.f) * p.w_in + xo / p.f]));
}

// space_to_depth / depth_to_space for f = 2 and W (input / output) a
// multiple of 4, on vectors: a thread takes 4 consecutive input pixels of
// both rows of a 2x2 row pair (two vec4s) and moves them as four vec2s of
// the four sub-pixel channels (per-lane scalar accesses are the cost on CPU
// drivers). n = B * C * (H / 2) * (W / 4), C and H of the full-resolution
// side; the fields are those of the general entries.
@group(0) @binding(1) var<storage, read> x4in: array<vec4<x4in_t>>;
@group(0) @binding(2) var<storage, read_write> y2out: array<vec2<y2out_t>>;
@group(0) @binding(1) var<storage, read> x2in: array<vec2<x2in_t>>;
@group(0) @binding(2) var<storage, read_write> y4out: array<vec4<y4out_t>>;

@compute @workgroup_size(WG)
fn space_to_depth2(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.n) { return; }
    let q = p.w_in / 4u;
    let jj = i % q;
    var t = i / q;
    let r = t % p.h_out;
    let bc = t / p.h_out;             // b * c_in + c
    let half = p.w_out / 2u;          // vec2s per output row
    for (var dy = 0u; dy < 2u; dy++) {
        let v = vec4<f32>(x4in[((bc * p.h_in + 2u * r + dy) * p.w_in) / 4u + jj]);
        // out channel 4c + 2dy + dx, columns 2jj, 2jj+1.
        let o = ((4u * bc + 2u * dy) * p.h_out + r) * half + jj;
        y2out[o] = vec2<y2out_t>(vec2<f32>(v.x, v.z));
        y2out[o + p.h_out * half] = vec2<y2out_t>(vec2<f32>(v.y, v.w));
    }
}

@compute @workgroup_size(WG)
fn depth_to_space2(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.n) { return; }
    let q = p.w_out / 4u;
    let jj = i % q;
    var t = i / q;
    let r = t % p.h_in;
    let bc = t / p.h_in;              // b * c_out + c
    let half = p.w_in / 2u;
    for (var dy = 0u; dy < 2u; dy++) {
        let src = ((4u * bc + 2u * dy) * p.h_in + r) * half + jj;
        let a = vec2<f32>(x2in[src]);
        let b = vec2<f32>(x2in[src + p.h_in * half]);
        y4out[((bc * p.h_out + 2u * r + dy) * p.w_out) / 4u + jj] = vec4<y4out_t>(vec4<f32>(a.x, b.x, a.y, b.y));
    }
}

// Haar analysis of each 2x2 block (a = x[2i][2j], b = x[2i][2j+1],
// c = x[2i+1][2j], d = x[2i+1][2j+1]) into 4 bands, divided by 4, written
// band-major: out channel = band*C + c. Band filters as in HCFlow's
// haar_weights: 0: [[1,1],[1,1]], 1: [[1,-1],[1,-1]], 2: [[1,1],[-1,-1]],
// 3: [[1,-1],[-1,1]]. One thread per (b, c, i, j): reads 4, writes 4.
// n = B * c_in * h_out * w_out.
@compute @workgroup_size(WG)
fn haar_down(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.n) { return; }
    let j = i % p.w_out;
    var t = i / p.w_out;
    let r = t % p.h_out;
    t = t / p.h_out;
    let c = t % p.c_in;
    let b = t / p.c_in;
    let src = ((b * p.c_in + c) * p.h_in + 2u * r) * p.w_in + 2u * j;
    let a = f32(x[src]);
    let bb = f32(x[src + 1u]);
    let cc = f32(x[src + p.w_in]);
    let d = f32(x[src + p.w_in + 1u]);
    let plane = p.h_out * p.w_out;
    let dst = (b * p.c_out + c) * plane + r * p.w_out + j;
    let band = p.c_in * plane; // distance between consecutive bands
    y[dst] = y_t((a + bb + cc + d) * 0.25);
    y[dst + band] = y_t((a - bb + cc - d) * 0.25);
    y[dst + 2u * band] = y_t((a + bb - cc - d) * 0.25);
    y[dst + 3u * band] = y_t((a - bb - cc + d) * 0.25);
}

// Haar synthesis (HCFlow reverse: transposed conv with the same filters, no
// scaling; the /4 of the forward makes it the exact inverse). Input channel
// band*C + c. One thread per (b, c, i, j) of the input plane.
// n = B * c_out * h_in * w_in.
@compute @workgroup_size(WG)
fn haar_up(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.n) { return; }
    let j = i % p.w_in;
    var t = i / p.w_in;
    let r = t % p.h_in;
    t = t / p.h_in;
    let c = t % p.c_out;
    let b = t / p.c_out;
    let plane = p.h_in * p.w_in;
    let src = (b * p.c_in + c) * plane + r * p.w_in + j;
    let band = p.c_out * plane;
    let s0 = f32(x[src]);
    let s1 = f32(x[src + band]);
    let s2 = f32(x[src + 2u * band]);
    let s3 = f32(x[src + 3u * band]);
    let dst = ((b * p.c_out + c) * p.h_out + 2u * r) * p.w_out + 2u * j;
    y[dst] = y_t(s0 + s1 + s2 + s3);
    y[dst + 1u] = y_t(s0 - s1 + s2 - s3);
    y[dst + p.w_out] = y_t(s0 + s1 - s2 - s3);
    y[dst + p.w_out + 1u] = y_t(s0 - s1 - s2 + s3);
}

// out[b, out_start + k*out_step, yy, xx] = in[b, in_start + k*in_step, yy/f, xx/f]
// for k < count, yy < h_out = h_in*f, xx < w_out = w_in*f. Covers channel
// slicing, concatenation into a slice, and nearest upsampling.
// n = B * count * h_out * w_out.
@compute @workgroup_size(WG)
fn copy_channels(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.n) { return; }
    let xo = i % p.w_out;
    var t = i / p.w_out;
    let yo = t % p.h_out;
    t = t / p.h_out;
    let k = t % p.count;
    let b = t / p.count;
    let ci = p.in_start + k * p.in_step;
    let co = p.out_start + k * p.out_step;
    y[((b * p.c_out + co) * p.h_out + yo) * p.w_out + xo] =
        y_t(f32(x[((b * p.c_in + ci) * p.h_in + yo / p.f) * p.w_in + xo / p.f]));
}

// Nearest x2 upsampling of contiguous channels (copy_channels with f = 2,
// steps 1, even w_in): each thread reads 2 neighbouring input pixels as one
// vec2 and writes the 4 output pixels they become to both output rows as
// vec4s (per-lane scalar accesses are the cost on CPU drivers).
// n = B * count * h_in * w_in / 2.
@group(0) @binding(1) var<storage, read> x2: array<vec2<x2_t>>;
@group(0) @binding(2) var<storage, read_write> y4: array<vec4<y4_t>>;

@compute @workgroup_size(WG)
fn upsample2(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.n) { return; }
    let half = p.w_in / 2u;
    let xj = i % half;
    var t = i / half;
    let yi = t % p.h_in;
    t = t / p.h_in;
    let k = t % p.count;
    let b = t / p.count;
    let v = vec2<f32>(x2[((b * p.c_in + p.in_start + k) * p.h_in + yi) * half + xj]);
    let o = vec4<f32>(v.x, v.x, v.y, v.y);
    // An output row (w_out = 2 w_in floats) is `half` vec4s.
    let row = ((b * p.c_out + p.out_start + k) * p.h_out + 2u * yi) * half + xj;
    y4[row] = vec4<y4_t>(o);
    y4[row + half] = vec4<y4_t>(o);
}

// Contiguous channel block copy (concatenation, slicing with step 1, no
// upsampling): per sample, `w_out` consecutive floats from x[b * c_in + h_in]
// to y[b * c_out + h_out] (fields reused as batch strides / offsets in
// floats). One division per thread instead of copy_channels' index chain
// (integer division is scalar on CPU drivers); each thread moves VEC floats,
// VEC = 4 when the block length is a multiple of 4.
override VEC: u32 = 1u;

@compute @workgroup_size(WG)
fn copy_block(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let t = flat(wid, nwg, lid);
    if (t >= p.n) { return; }
    let e = t * VEC;
    let b = e / p.w_out;
    let r = e - b * p.w_out;
    let src = b * p.c_in + p.h_in + r;
    let dst = b * p.c_out + p.h_out + r;
    for (var v = 0u; v < VEC; v++) {
        y[dst + v] = y_t(f32(x[src + v]));
    }
}
