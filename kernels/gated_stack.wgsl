#import prelude

// The horizontal stack of a gated PixelCNN at one pixel per image, every
// block in one dispatch (the cached sampler's per-sub-pixel step; see
// src/ops/gated_stack.rs). One workgroup per image runs the blocks in order:
//
//   win  = block b's window: hist (columns left of the pixel) with h at
//          the centre column (the graph's insert_channels)
//   hp   = h_conv(win) + bias + vh[b]                    2C channels
//   g    = tanh(hp[:C]) * sigmoid(hp[C:])                 (gate)
//   h    = h_out(g) + bias + h                            C channels
//
// Each output is the same multiply-add chain in k order as the conv kernels
// compute for the full-map graph, and the epilogue the same roundings
// ((sum + bias) + residual; the convs' scale, alpha and beta are 1 there),
// so every h is bit-identical to the unfused ops'. A lane owns 4
// consecutive output channels (one weight vec4 per k, as conv2d_narrow).
//
// Weights, per block b at w[b * p.wblock ..] (vec4s, output channels padded
// to whole vec4s with zeros): h_conv [k][c2p / 4] then h_out [c][cp / 4].
// Biases per block at bias[b * (c2p + cp) ..]: h_conv's c2p, h_out's cp.

struct StackParams {
    n: u32,       // images (workgroups)
    c: u32,       // channels C of h
    kh: u32,      // horizontal kernel width
    ph: u32,      // centre column (kh / 2)
    blocks: u32,
    c2p: u32,     // 2C rounded up to a multiple of 4
    cp: u32,      // C rounded up to a multiple of 4
    wblock: u32,  // vec4s of weights per block
}

@group(0) @binding(0) var<uniform> p: StackParams;
// [N, C]: h entering block 0.
@group(0) @binding(1) var<storage, read> h0: array<f32>;
// [N, blocks, C * kh]: each block's window with the centre column unused.
@group(0) @binding(2) var<storage, read> hist: array<f32>;
// [N, blocks, 2C]: the vertical stack's contribution to each block.
@group(0) @binding(3) var<storage, read> vh: array<f32>;
@group(0) @binding(4) var<storage, read> w: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> bias: array<f32>;
// [N, blocks, C]: h entering each block (the sampler caches them).
@group(0) @binding(6) var<storage, read_write> hs: array<f32>;
// [N, C]: h leaving the last block.
@group(0) @binding(7) var<storage, read_write> hout: array<f32>;

const WGS: u32 = 64u;
// Limits of the workgroup arrays (src/ops/gated_stack.rs checks them).
const MAX_WIN: u32 = 1024u;
const MAX_C2: u32 = 256u;
const MAX_C: u32 = 128u;

var<workgroup> win: array<f32, MAX_WIN>;
var<workgroup> hp: array<f32, MAX_C2>;
var<workgroup> hc: array<f32, MAX_C>;
var<workgroup> gt: array<f32, MAX_C>;

@compute @workgroup_size(64)
fn gated_stack(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let s = wid.x;
    if (s >= p.n) { return; }
    let c = p.c;
    let k = c * p.kh;
    let m = 4u * lid;
    for (var i = lid; i < c; i += WGS) { hc[i] = h0[s * c + i]; }
    workgroupBarrier();
    for (var b = 0u; b < p.blocks; b++) {
        let sb = s * p.blocks + b;
        for (var i = lid; i < c; i += WGS) { hs[sb * c + i] = hc[i]; }
        for (var i = lid; i < k; i += WGS) {
            let ci = i / p.kh;
            win[i] = select(hist[sb * k + i], hc[ci], i - ci * p.kh == p.ph);
        }
        workgroupBarrier();
        let wb = b * p.wblock;
        let bb = b * (p.c2p + p.cp);
        if (m < p.c2p) {
            let q2 = p.c2p / 4u;
            var acc = vec4<f32>(0.0);
            for (var j = 0u; j < k; j++) {
                acc += w[wb + j * q2 + lid] * win[j];
            }
            for (var i = 0u; i < 4u; i++) {
                if (m + i < 2u * c) {
                    hp[m + i] = (acc[i] + bias[bb + m + i]) + vh[sb * 2u * c + m + i];
                }
            }
        }
        workgroupBarrier();
        for (var i = lid; i < c; i += WGS) { gt[i] = act_tanh(hp[i]) * act_sigmoid(hp[c + i]); }
        workgroupBarrier();
        var nh = vec4<f32>(0.0);
        if (m < p.cp) {
            let q = p.cp / 4u;
            let wo = wb + k * (p.c2p / 4u);
            var acc = vec4<f32>(0.0);
            for (var j = 0u; j < c; j++) {
                acc += w[wo + j * q + lid] * gt[j];
            }
            for (var i = 0u; i < 4u; i++) {
                if (m + i < c) {
                    nh[i] = (acc[i] + bias[bb + p.c2p + m + i]) + hc[m + i];
                }
            }
        }
        // Every lane has read hc (window, residual) before any lane replaces it.
        workgroupBarrier();
        for (var i = 0u; i < 4u; i++) {
            if (m + i < c) { hc[m + i] = nh[i]; }
        }
        workgroupBarrier();
    }
    for (var i = lid; i < c; i += WGS) { hout[s * c + i] = hc[i]; }
}
