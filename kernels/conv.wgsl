#import prelude

// 2-D convolution (and transposed convolution) as an implicit GEMM.
//
//   out[g*Mg + m, n] = sum_k A[g][k][m] * B[g][k][n]
//   M = Cout/groups, N = batch*Ho*Wo, K = Cin/groups*kh*kw (k = (ci, ky, kx), torch order)
//
// A is the pre-packed weight matrix (k-major, so a row of output channels is
// contiguous and loads as vec4s). B is never materialised: each B element is
// gathered from the input x on the fly. A workgroup of 4x16 = 64 threads
// computes a 64x128 output tile, each thread a 16x8 register tile; A and B are
// staged through workgroup memory in chunks of BK = 16 rows of K. The grid is
// (N tiles split over x/y, groups * M tiles).
//
// Thread-to-tile mapping: thread (tm, tn) owns rows 4*tm + 16*q + i and columns
// 4*tn + 64*h + j, so its reads of As/Bs are consecutive vec4s across threads.
// Accumulation is a plain multiply-add in k order (no fma(): lavapipe lowers
// WGSL fma() to a slow exact-fma call).
//
// Variants (override constants): MODE CONV_GENERAL = general conv (per-k tap
// table), CONV_POINTWISE = 1x1/stride 1/pad 0 (plain GEMM, no index math),
// CONV_TRANSPOSED = transposed conv (gather form: tap valid when
// (o + pad - k*dil) is divisible by the stride, which is the override TSY/TSX
// so the division is a constant one). ACT selects the activation (an ACT_*
// code, applied by the prelude's apply_act); HAS_RES adds beta * residual.
// CPU adapters use the entry point conv2d_rows instead (end of this file).
//
// Epilogue per output element: out = alpha * act((acc + bias[c]) * scale[c]) + beta * res.
//
// HAS_PRE (conv over a channel concatenation without materialising it, one
// dispatch per part): the accumulators start from `pre`, the raw sums of the
// parts before this one, instead of 0. Each element is then the same
// multiply-add chain in k order as one conv over the concatenated input, so
// the result is bit-identical to it; earlier parts store raw sums through an
// identity epilogue (bias 0, scale 1, no activation, no residual). PRE_IN_Y:
// the raw sums are already in y (accumulation in place: each element is read
// and then written by the one invocation that owns it), so a chain needs no
// buffer besides its output.

struct Params {
    cin: u32,       // total input channels
    h: u32,
    w: u32,
    hw: u32,
    cout: u32,      // total output channels
    ho: u32,
    wo: u32,
    howo: u32,
    x_gstride: u32, // input channels from one group's first to the next's (its channel count but for a strided GEMM)
    cout_g: u32,    // output channels per group (M)
    k: u32,         // K
    ntot: u32,      // N = batch*Ho*Wo
    sy: i32,
    sx: i32,
    py: i32,
    px: i32,
    dy: i32,
    dx: i32,
    a_kstride: u32, // packed weight index = k*a_kstride + g*a_gstride + m
    a_gstride: u32,
    m_tiles: u32,   // ceil(M / BM); grid z = groups * m_tiles
    alpha: f32,
    beta: f32,
    slope: f32,     // LeakyReLU negative slope
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<x_t>;
@group(0) @binding(2) var<storage, read> wpk: array<vec4<wpk_t>>;
// Per k: ci << 16 | ky << 8 | kx (ci within the group); one word so the
// per-row lookup is a single load.
@group(0) @binding(3) var<storage, read> taps: array<u32>;
// bias[0..cout] then scale[cout..2*cout].
@group(0) @binding(4) var<storage, read> epi: array<f32>;
@group(0) @binding(5) var<storage, read> res: array<res_t>;
// Raw sums of the previous parts (HAS_PRE), laid out like y.
@group(0) @binding(6) var<storage, read> pre: array<pre_t>;
@group(0) @binding(7) var<storage, read_write> y: array<y_t>;
// x again, as vec4s: conv2d_rows with B_VEC loads four columns at once.
@group(0) @binding(8) var<storage, read> x4: array<vec4<x4_t>>;

override MODE: u32 = CONV_GENERAL;
override ACT: u32 = ACT_NONE;
override HAS_RES: bool = false;
override HAS_PRE: bool = false;
override PRE_IN_Y: bool = false;
// The weights carry a bias or scale table (else bias 0, scale 1, unread).
override HAS_EPI: bool = true;
// Taps computed from k and KH, KW instead of read from the tap table.
override TAPS_BY_DIVISION: bool = false;
// cout_g % 4 == 0: weight rows load as aligned vec4s.
override A_VEC: bool = false;
override TSY: u32 = 1u;
// M <= 32 (e.g. dense-block growth convs): the tile covers 32 output channels
// and the two upper row groups (q = 2, 3) are compiled out instead of
// multiplying zero-padded weights.
override HALF_M: bool = false;
override TSX: u32 = 1u;

// Tile configuration (benches/kernels.rs, lavapipe, 3x3 64->64 on 64x64):
// on lavapipe every workgroup/storage access inside the K loop is a per-lane
// scalar loop, so FMAs per loaded vec4 decide the speed. Measured, same load:
// 4x4 per thread/256 threads 2.7 GFLOP/s (with fma()), 8x8/64 threads 8.3,
// 16x8/64 threads 10.3, 16x16 12.3. 16x16 keeps 256 accumulators per thread,
// which spills registers on real GPUs, so 16x8 (128) is kept.
const WGM: u32 = 4u;          // threads along M
const WGN: u32 = 16u;         // threads along N (64 threads)
const BM: u32 = 64u;          // WGM * 16 rows per thread
const BN: u32 = 128u;         // WGN * 8 columns per thread
const BK: u32 = 16u;          // K rows per chunk
const VA: u32 = 16u;          // vec4s per staged A row (BM / 4)
const VB: u32 = 32u;          // vec4s per staged B row (BN / 4)
const BIG_NEG: i32 = -1073741824;

// As[kk * VA + m4] holds A[k0+kk][m0 + 4*m4 .. +4]; Bs[kk * VB + n4] likewise for B.
// 12288 bytes in all.
var<workgroup> As: array<vec4<f32>, 256>; // BK * VA
var<workgroup> Bs: array<vec4<f32>, 512>; // BK * VB

// Output column n -> (batch, pixel) and the input origin of its receptive field.
struct Col {
    ok: bool,
    obase: u32,   // output index without the channel term
    xbase: u32,   // input index of (batch, first channel of group[, pixel for MODE 1])
    iy0: i32,
    ix0: i32,
}

fn column(n: u32, g: u32) -> Col {
    var c: Col;
    c.ok = n < p.ntot;
    let nn = select(0u, n, c.ok);
    let b = nn / p.howo;
    let pix = nn - b * p.howo;
    let oy = pix / p.wo;
    let ox = pix - oy * p.wo;
    c.obase = b * p.cout * p.howo + pix;
    c.xbase = (b * p.cin + g * p.x_gstride) * p.hw;
    if (MODE == CONV_POINTWISE) {
        c.xbase += pix;
    }
    if (MODE == CONV_TRANSPOSED) {
        c.iy0 = select(BIG_NEG, i32(oy) + p.py, c.ok);
        c.ix0 = i32(ox) + p.px;
    } else {
        c.iy0 = select(BIG_NEG, i32(oy) * p.sy - p.py, c.ok);
        c.ix0 = i32(ox) * p.sx - p.px;
    }
    return c;
}

// Bias and scale of output channel co; without HAS_EPI (a conv with neither,
// like the Winograd GEMMs) the table is not read at all.
fn bias_of(co: u32) -> f32 {
    if (HAS_EPI) { return epi[co]; }
    return 0.0;
}

fn scale_of(co: u32) -> f32 {
    if (HAS_EPI) { return epi[p.cout + co]; }
    return 1.0;
}

fn store(c: Col, co: u32, acc: f32, bias: f32, scale: f32) {
    if (!c.ok) { return; }
    let idx = c.obase + co * p.howo;
    var v = p.alpha * apply_act(ACT, (acc + bias) * scale, p.slope);
    if (HAS_RES) {
        v += p.beta * f32(res[idx]);
    }
    y[idx] = y_t(v);
}

// The previous parts' raw sum of output element idx.
fn pre_at(idx: u32) -> f32 {
    if (PRE_IN_Y) { return f32(y[idx]); }
    return f32(pre[idx]);
}

// Starting sums (HAS_PRE) of output channel mg (of group g) at columns
// (*cols)[4h .. 4h+3]; 0 for channels past cout_g and columns past N.
fn pre_cols(cols: ptr<function, array<Col, 8>>, h: u32, g: u32, mg: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    if (mg >= p.cout_g) { return v; }
    let co = g * p.cout_g + mg;
    for (var j = 0u; j < 4u; j++) {
        let c = (*cols)[4u * h + j];
        if (c.ok) { v[j] = pre_at(c.obase + co * p.howo); }
    }
    return v;
}

// Starting sums (HAS_PRE) of output channels m..m+3 (of group g) at column c.
fn pre4(c: Col, g: u32, m: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    if (!c.ok) { return v; }
    for (var i = 0u; i < 4u; i++) {
        let mg = m + i;
        if (mg < p.cout_g) { v[i] = pre_at(c.obase + (g * p.cout_g + mg) * p.howo); }
    }
    return v;
}

// Epilogue for one output row (channel mg of group g) of the thread's columns.
fn store_row(cols: ptr<function, array<Col, 8>>, g: u32, mg: u32, acc: array<vec4<f32>, 2>) {
    if (mg >= p.cout_g) { return; }
    let co = g * p.cout_g + mg;
    let bias = bias_of(co);
    let scale = scale_of(co);
    for (var h = 0u; h < 2u; h++) {
        for (var j = 0u; j < 4u; j++) {
            store((*cols)[4u * h + j], co, acc[h][j], bias, scale);
        }
    }
}

@compute @workgroup_size(64)
fn conv2d(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let n0 = wg_index(wid, nwg) * BN;
    if (n0 >= p.ntot) { return; }
    let g = wid.z / p.m_tiles;
    let m0 = (wid.z % p.m_tiles) * select(BM, BM / 2u, HALF_M);

    // Staging roles: A vec4 column acol of rows arow, arow + 4, ...; B vec4
    // column bcol (columns 4*bcol..+4) of rows brow, brow + 2, ...
    let acol = lid % VA;
    let arow = lid / VA;
    let bcol = lid % VB;
    let brow = lid / VB;
    let bc0 = column(n0 + 4u * bcol + 0u, g);
    let bc1 = column(n0 + 4u * bcol + 1u, g);
    let bc2 = column(n0 + 4u * bcol + 2u, g);
    let bc3 = column(n0 + 4u * bcol + 3u, g);
    let am = m0 + 4u * acol;        // first output channel this thread stages
    let a_off = g * p.a_gstride + am;

    // Compute role: rows 4*tm + 16*q + i (q < 4, i < 4), columns 4*tn + 64*h + j (h < 2, j < 4).
    let tm = lid / WGN;
    let tn = lid % WGN;
    // c<q><i><h>: one row, one vec4 of columns.
    var c000 = vec4<f32>(0.0);
    var c001 = vec4<f32>(0.0);
    var c010 = vec4<f32>(0.0);
    var c011 = vec4<f32>(0.0);
    var c020 = vec4<f32>(0.0);
    var c021 = vec4<f32>(0.0);
    var c030 = vec4<f32>(0.0);
    var c031 = vec4<f32>(0.0);
    var c100 = vec4<f32>(0.0);
    var c101 = vec4<f32>(0.0);
    var c110 = vec4<f32>(0.0);
    var c111 = vec4<f32>(0.0);
    var c120 = vec4<f32>(0.0);
    var c121 = vec4<f32>(0.0);
    var c130 = vec4<f32>(0.0);
    var c131 = vec4<f32>(0.0);
    var c200 = vec4<f32>(0.0);
    var c201 = vec4<f32>(0.0);
    var c210 = vec4<f32>(0.0);
    var c211 = vec4<f32>(0.0);
    var c220 = vec4<f32>(0.0);
    var c221 = vec4<f32>(0.0);
    var c230 = vec4<f32>(0.0);
    var c231 = vec4<f32>(0.0);
    var c300 = vec4<f32>(0.0);
    var c301 = vec4<f32>(0.0);
    var c310 = vec4<f32>(0.0);
    var c311 = vec4<f32>(0.0);
    var c320 = vec4<f32>(0.0);
    var c321 = vec4<f32>(0.0);
    var c330 = vec4<f32>(0.0);
    var c331 = vec4<f32>(0.0);
    if (HAS_PRE) {
        var pc: array<Col, 8>;
        for (var h = 0u; h < 2u; h++) {
            for (var j = 0u; j < 4u; j++) {
                pc[4u * h + j] = column(n0 + 64u * h + 4u * tn + j, g);
            }
        }
        let r = m0 + 4u * tm;
        c000 = pre_cols(&pc, 0u, g, r + 0u); c001 = pre_cols(&pc, 1u, g, r + 0u);
        c010 = pre_cols(&pc, 0u, g, r + 1u); c011 = pre_cols(&pc, 1u, g, r + 1u);
        c020 = pre_cols(&pc, 0u, g, r + 2u); c021 = pre_cols(&pc, 1u, g, r + 2u);
        c030 = pre_cols(&pc, 0u, g, r + 3u); c031 = pre_cols(&pc, 1u, g, r + 3u);
        c100 = pre_cols(&pc, 0u, g, r + 16u); c101 = pre_cols(&pc, 1u, g, r + 16u);
        c110 = pre_cols(&pc, 0u, g, r + 17u); c111 = pre_cols(&pc, 1u, g, r + 17u);
        c120 = pre_cols(&pc, 0u, g, r + 18u); c121 = pre_cols(&pc, 1u, g, r + 18u);
        c130 = pre_cols(&pc, 0u, g, r + 19u); c131 = pre_cols(&pc, 1u, g, r + 19u);
        if (!HALF_M) {
            c200 = pre_cols(&pc, 0u, g, r + 32u); c201 = pre_cols(&pc, 1u, g, r + 32u);
            c210 = pre_cols(&pc, 0u, g, r + 33u); c211 = pre_cols(&pc, 1u, g, r + 33u);
            c220 = pre_cols(&pc, 0u, g, r + 34u); c221 = pre_cols(&pc, 1u, g, r + 34u);
            c230 = pre_cols(&pc, 0u, g, r + 35u); c231 = pre_cols(&pc, 1u, g, r + 35u);
            c300 = pre_cols(&pc, 0u, g, r + 48u); c301 = pre_cols(&pc, 1u, g, r + 48u);
            c310 = pre_cols(&pc, 0u, g, r + 49u); c311 = pre_cols(&pc, 1u, g, r + 49u);
            c320 = pre_cols(&pc, 0u, g, r + 50u); c321 = pre_cols(&pc, 1u, g, r + 50u);
            c330 = pre_cols(&pc, 0u, g, r + 51u); c331 = pre_cols(&pc, 1u, g, r + 51u);
        }
    }

    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        for (var r = 0u; r < BK; r += 4u) {
            let kk = r + arow;
            let k = k0 + kk;
            let kok = k < p.k;
            // A: 4 consecutive output channels of row k.
            var a = vec4<f32>(0.0);
            let ai = k * p.a_kstride + a_off;
            if (A_VEC) {
                // cout_g % 4 == 0: the 4 channels are all valid or all not, and aligned.
                let ok = kok && am < p.cout_g && !(HALF_M && acol >= VA / 2u);
                a = select(vec4<f32>(0.0), vec4<f32>(wpk[select(0u, ai / 4u, ok)]), ok);
            } else {
                for (var i = 0u; i < 4u; i++) {
                    let ok = kok && am + i < p.cout_g && !(HALF_M && acol >= VA / 2u);
                    let e = select(0u, ai + i, ok);
                    a[i] = select(0.0, f32(wpk[e / 4u][e % 4u]), ok);
                }
            }
            As[kk * VA + acol] = a;
        }
        for (var r = 0u; r < BK; r += 2u) {
            let kk = r + brow;
            let k = k0 + kk;
            let kok = k < p.k;
            // B: row k of the implicit im2col matrix, 4 columns (k past K
            // reads the last tap and is zeroed, so no index leaves x).
            let t = tap_of(min(k, p.k - 1u));
            let bv = select(vec4<f32>(0.0), vec4<f32>(gather(bc0, t), gather(bc1, t), gather(bc2, t), gather(bc3, t)), kok);
            Bs[kk * VB + bcol] = bv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let a0 = As[kk * VA + 0u + tm];
            let a1 = As[kk * VA + 4u + tm];
            let a2 = As[kk * VA + 8u + tm];
            let a3 = As[kk * VA + 12u + tm];
            let b0 = Bs[kk * VB + 0u + tn];
            let b1 = Bs[kk * VB + 16u + tn];
            c000 += a0.x * b0;
            c001 += a0.x * b1;
            c010 += a0.y * b0;
            c011 += a0.y * b1;
            c020 += a0.z * b0;
            c021 += a0.z * b1;
            c030 += a0.w * b0;
            c031 += a0.w * b1;
            c100 += a1.x * b0;
            c101 += a1.x * b1;
            c110 += a1.y * b0;
            c111 += a1.y * b1;
            c120 += a1.z * b0;
            c121 += a1.z * b1;
            c130 += a1.w * b0;
            c131 += a1.w * b1;
            if (!HALF_M) {
                c200 += a2.x * b0;
                c201 += a2.x * b1;
                c210 += a2.y * b0;
                c211 += a2.y * b1;
                c220 += a2.z * b0;
                c221 += a2.z * b1;
                c230 += a2.w * b0;
                c231 += a2.w * b1;
                c300 += a3.x * b0;
                c301 += a3.x * b1;
                c310 += a3.y * b0;
                c311 += a3.y * b1;
                c320 += a3.z * b0;
                c321 += a3.z * b1;
                c330 += a3.w * b0;
                c331 += a3.w * b1;
            }
        }
        workgroupBarrier();
    }

    var cols: array<Col, 8>;
    for (var h = 0u; h < 2u; h++) {
        for (var j = 0u; j < 4u; j++) {
            cols[4u * h + j] = column(n0 + 64u * h + 4u * tn + j, g);
        }
    }
    store_row(&cols, g, m0 + 0u + 4u * tm + 0u, array<vec4<f32>, 2>(c000, c001));
    store_row(&cols, g, m0 + 0u + 4u * tm + 1u, array<vec4<f32>, 2>(c010, c011));
    store_row(&cols, g, m0 + 0u + 4u * tm + 2u, array<vec4<f32>, 2>(c020, c021));
    store_row(&cols, g, m0 + 0u + 4u * tm + 3u, array<vec4<f32>, 2>(c030, c031));
    store_row(&cols, g, m0 + 16u + 4u * tm + 0u, array<vec4<f32>, 2>(c100, c101));
    store_row(&cols, g, m0 + 16u + 4u * tm + 1u, array<vec4<f32>, 2>(c110, c111));
    store_row(&cols, g, m0 + 16u + 4u * tm + 2u, array<vec4<f32>, 2>(c120, c121));
    store_row(&cols, g, m0 + 16u + 4u * tm + 3u, array<vec4<f32>, 2>(c130, c131));
    if (!HALF_M) {
        store_row(&cols, g, m0 + 32u + 4u * tm + 0u, array<vec4<f32>, 2>(c200, c201));
        store_row(&cols, g, m0 + 32u + 4u * tm + 1u, array<vec4<f32>, 2>(c210, c211));
        store_row(&cols, g, m0 + 32u + 4u * tm + 2u, array<vec4<f32>, 2>(c220, c221));
        store_row(&cols, g, m0 + 32u + 4u * tm + 3u, array<vec4<f32>, 2>(c230, c231));
        store_row(&cols, g, m0 + 48u + 4u * tm + 0u, array<vec4<f32>, 2>(c300, c301));
        store_row(&cols, g, m0 + 48u + 4u * tm + 1u, array<vec4<f32>, 2>(c310, c311));
        store_row(&cols, g, m0 + 48u + 4u * tm + 2u, array<vec4<f32>, 2>(c320, c321));
        store_row(&cols, g, m0 + 48u + 4u * tm + 3u, array<vec4<f32>, 2>(c330, c331));
    }
}

// ---------------------------------------------------------------------------
// CPU variant (conv2d_rows), chosen for CPU adapters (llvmpipe/lavapipe).
//
// There every invocation is one SIMD lane, and a load whose address differs
// per lane (any workgroup-memory read of the tiled kernel above, any gather
// from x) is a per-lane scalar loop with a branch per lane. Mesa also loops
// for workgroup-uniform addresses: only a constant address (or one computed
// from constants and push constants alone) is a single load. The tiled
// kernel spends ~24 such loads per 128 multiply-adds plus staging stores and
// two barriers per BK. Here a thread owns RJ output columns and 4*RQ channels
// (a whole channel tile): per k it gathers its own RJ input values and reads
// RQ weight vec4s at a workgroup-uniform address straight from storage (no
// workgroup memory, no barriers): 8 + 16 loads per 128 multiply-adds at
// (RQ, RJ) = (4, 8). Measured on llvmpipe (2 cores): 3x3 64->64 at 64x64
// 9.8 vs 7.2 GFLOP/s, 96->32 at 128x128 9.9 vs 4.6, convT 4x4 s2 9.0 vs 3.8.
// With subgroups the RQ weight loads become one (see weight_quad).
// Thread lid owns columns n0 + lid + 64*j (j < RJ), so a lane group reads
// consecutive pixels. On a GPU the per-thread gathers would not be shared
// through workgroup memory, so GPUs keep the tiled kernel.

const RWG: u32 = 64u;

struct Tap {
    coff: u32,  // channel offset (k*hw for MODE 1)
    oy: i32,    // ky*dy
    ox: i32,    // kx*dx
}

// Kernel height and width (override constants, so the divisions below are by
// constants). k = (ci, ky, kx) in torch order, as the weights are packed.
override KH: u32 = 1u;
override KW: u32 = 1u;

fn tap_of(k: u32) -> Tap {
    var t: Tap;
    if (MODE == CONV_POINTWISE) {
        t.coff = k * p.hw;
        return t;
    }
    if (TAPS_BY_DIVISION) {
        // A few vector integer ops; the table load below is, on llvmpipe, a
        // loop over the lanes for every k (the address is not a constant).
        let ci = k / (KH * KW);
        let r = k - ci * (KH * KW);
        let ky = r / KW;
        t.coff = ci * p.hw;
        t.oy = i32(ky) * p.dy;
        t.ox = i32(r - ky * KW) * p.dx;
        return t;
    }
    let tap = taps[k];
    t.coff = (tap >> 16u) * p.hw;
    t.oy = i32((tap >> 8u) & 255u) * p.dy;
    t.ox = i32(tap & 255u) * p.dx;
    return t;
}

// The input value of column c for tap t (0 outside the image / past N).
fn gather(c: Col, t: Tap) -> f32 {
    if (MODE == CONV_POINTWISE) {
        return select(0.0, f32(x[select(0u, c.xbase + t.coff, c.ok)]), c.ok);
    }
    if (MODE == CONV_TRANSPOSED) {
        let ty = c.iy0 - t.oy;
        let tx = c.ix0 - t.ox;
        let iy = u32(ty) / TSY;
        let ix = u32(tx) / TSX;
        let ok = ty >= 0 && tx >= 0 && u32(ty) % TSY == 0u && u32(tx) % TSX == 0u && iy < p.h && ix < p.w;
        let idx = c.xbase + t.coff + iy * p.w + ix;
        return select(0.0, f32(x[select(0u, idx, ok)]), ok);
    }
    let iy = c.iy0 + t.oy;
    let ix = c.ix0 + t.ox;
    // Unsigned compare also rejects negative coordinates (and iy0 = BIG_NEG past N).
    let ok = u32(iy) < p.h && u32(ix) < p.w;
    let idx = c.xbase + t.coff + u32(iy * i32(p.w) + ix);
    return select(0.0, f32(x[select(0u, idx, ok)]), ok);
}

// Tile of conv2d_rows: 4*RQ output channels x 64*RJ columns, RQ*RJ <= 32
// (128 accumulators). (RQ, RJ) = (4, 8), (8, 4) or (8, 2); see conv.rs.
override RQ: u32 = 4u;
override RJ: u32 = 8u;
// B_VEC (MODE CONV_POINTWISE, RJ = 4, H*W and N multiples of 4): thread lid
// owns the four consecutive columns n0 + 4*lid .. +3, which are consecutive
// input values of every k row, and loads them as one vec4 per k step: on
// llvmpipe one lane loop instead of four (the Winograd GEMMs and 1x1 convs).
override B_VEC: bool = false;
// Four k steps per trip of the K loop (see conv2d_rows).
override KU4: bool = false;

// Epilogue for output channels m..m+3 (of group g) of column c, whose bias
// and scale are bs[0], bs[1] (loaded once per quad, not per column).
fn store4(c: Col, g: u32, m: u32, acc: vec4<f32>, bs: array<vec4<f32>, 2>) {
    for (var i = 0u; i < 4u; i++) {
        if (m + i < p.cout_g) {
            store(c, g * p.cout_g + m + i, acc[i], bs[0][i], bs[1][i]);
        }
    }
}

// Bias and scale of output channels m..m+3 of group g (0 and 1 past cout_g).
fn epi_quad(g: u32, m: u32) -> array<vec4<f32>, 2> {
    var bs = array<vec4<f32>, 2>(vec4<f32>(0.0), vec4<f32>(1.0));
    for (var i = 0u; i < 4u; i++) {
        if (m + i < p.cout_g) {
            bs[0][i] = bias_of(g * p.cout_g + m + i);
            bs[1][i] = scale_of(g * p.cout_g + m + i);
        }
    }
    return bs;
}

// The thread's columns c<j> = n0 + lid + 64*j (only j < RJ are live).
struct RowsCols {
    c0: Col,
    c1: Col,
    c2: Col,
    c3: Col,
    c4: Col,
    c5: Col,
    c6: Col,
    c7: Col,
}

// Epilogue for output channels m..m+3 of the thread's live columns.
fn store_cols(c: RowsCols, g: u32, m: u32,
              r0: vec4<f32>, r1: vec4<f32>, r2: vec4<f32>, r3: vec4<f32>,
              r4: vec4<f32>, r5: vec4<f32>, r6: vec4<f32>, r7: vec4<f32>) {
    let bs = epi_quad(g, m);
    store4(c.c0, g, m, r0, bs);
    if (RJ > 1u) { store4(c.c1, g, m, r1, bs); }
    if (RJ > 2u) { store4(c.c2, g, m, r2, bs); }
    if (RJ > 3u) { store4(c.c3, g, m, r3, bs); }
    if (RJ > 4u) { store4(c.c4, g, m, r4, bs); }
    if (RJ > 5u) { store4(c.c5, g, m, r5, bs); }
    if (RJ > 6u) { store4(c.c6, g, m, r6, bs); }
    if (RJ > 7u) { store4(c.c7, g, m, r7, bs); }
}

// Accumulators: r<q>_<j> holds output channels m0 + 4q .. +3 of column j
// (only q < RQ, j < RJ are live; q >= 4 exists for j < 4 only).
struct RowsAcc {
    r0_0: vec4<f32>,
    r0_1: vec4<f32>,
    r0_2: vec4<f32>,
    r0_3: vec4<f32>,
    r0_4: vec4<f32>,
    r0_5: vec4<f32>,
    r0_6: vec4<f32>,
    r0_7: vec4<f32>,
    r1_0: vec4<f32>,
    r1_1: vec4<f32>,
    r1_2: vec4<f32>,
    r1_3: vec4<f32>,
    r1_4: vec4<f32>,
    r1_5: vec4<f32>,
    r1_6: vec4<f32>,
    r1_7: vec4<f32>,
    r2_0: vec4<f32>,
    r2_1: vec4<f32>,
    r2_2: vec4<f32>,
    r2_3: vec4<f32>,
    r2_4: vec4<f32>,
    r2_5: vec4<f32>,
    r2_6: vec4<f32>,
    r2_7: vec4<f32>,
    r3_0: vec4<f32>,
    r3_1: vec4<f32>,
    r3_2: vec4<f32>,
    r3_3: vec4<f32>,
    r3_4: vec4<f32>,
    r3_5: vec4<f32>,
    r3_6: vec4<f32>,
    r3_7: vec4<f32>,
    r4_0: vec4<f32>,
    r4_1: vec4<f32>,
    r4_2: vec4<f32>,
    r4_3: vec4<f32>,
    r5_0: vec4<f32>,
    r5_1: vec4<f32>,
    r5_2: vec4<f32>,
    r5_3: vec4<f32>,
    r6_0: vec4<f32>,
    r6_1: vec4<f32>,
    r6_2: vec4<f32>,
    r6_3: vec4<f32>,
    r7_0: vec4<f32>,
    r7_1: vec4<f32>,
    r7_2: vec4<f32>,
    r7_3: vec4<f32>,
}

// Weight quad q (output channels m0 + 4q .. +3) of the k step whose row
// starts at wpk[w]. A weight is the same for every lane, but llvmpipe
// loads any address that is not a constant with a loop over the lanes (a
// branch, a scalar load and an insert per lane and component), once per
// quad. With subgroups each lane loads one quad (`wl`: lane q holds quad q)
// in a single such loop, and every quad is a broadcast from its lane (an
// extract and a splat). Measured on lavapipe (min of interleaved runs):
// 3x3 64->64 at 128x128 77.8 -> 51.6 ms, as Winograd F(4x4) 41.8 -> 27.0 ms.
#if subgroups
fn lane_quad(w: u32, sl: u32) -> vec4<f32> {
    return vec4<f32>(wpk[w + min(sl, RQ - 1u)]);
}

fn weight_quad(w: u32, q: u32, wl: vec4<f32>) -> vec4<f32> {
    switch (q) {
        case 0u: { return subgroupBroadcast(wl, 0u); }
        case 1u: { return subgroupBroadcast(wl, 1u); }
        case 2u: { return subgroupBroadcast(wl, 2u); }
        case 3u: { return subgroupBroadcast(wl, 3u); }
        case 4u: { return subgroupBroadcast(wl, 4u); }
        case 5u: { return subgroupBroadcast(wl, 5u); }
        case 6u: { return subgroupBroadcast(wl, 6u); }
        default: { return subgroupBroadcast(wl, 7u); }
    }
}
#else
fn lane_quad(w: u32, sl: u32) -> vec4<f32> {
    return vec4<f32>(0.0);
}

fn weight_quad(w: u32, q: u32, wl: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(wpk[w + q]);
}
#endif

// One k step: RJ gathers from x, the RQ weight quads of row k, 16*RQ*RJ
// multiply-adds (in k order, as in every entry).
fn rows_step(acc: ptr<function, RowsAcc>, c: RowsCols, a0: u32, a4: u32, k: u32, sl: u32) {
    let t = tap_of(k);
    let w = a0 + k * a4;
    let wl = lane_quad(w, sl);
    var b0 = 0.0; var b1 = 0.0; var b2 = 0.0; var b3 = 0.0;
    var b4 = 0.0; var b5 = 0.0; var b6 = 0.0; var b7 = 0.0;
    if (B_VEC) {
        // c0..c3 are one image's pixels 4i..4i+3 (all valid or none).
        let v = select(vec4<f32>(0.0), vec4<f32>(x4[select(0u, (c.c0.xbase + t.coff) / 4u, c.c0.ok)]), c.c0.ok);
        b0 = v.x; b1 = v.y; b2 = v.z; b3 = v.w;
    } else {
        b0 = gather(c.c0, t);
        if (RJ > 1u) { b1 = gather(c.c1, t); }
        if (RJ > 2u) { b2 = gather(c.c2, t); b3 = gather(c.c3, t); }
        if (RJ > 4u) { b4 = gather(c.c4, t); b5 = gather(c.c5, t); b6 = gather(c.c6, t); b7 = gather(c.c7, t); }
    }
    if (RQ > 0u) {
        let a = weight_quad(w, 0u, wl);
        (*acc).r0_0 += a * b0; (*acc).r0_1 += a * b1; (*acc).r0_2 += a * b2; (*acc).r0_3 += a * b3;
        (*acc).r0_4 += a * b4; (*acc).r0_5 += a * b5; (*acc).r0_6 += a * b6; (*acc).r0_7 += a * b7;
    }
    if (RQ > 1u) {
        let a = weight_quad(w, 1u, wl);
        (*acc).r1_0 += a * b0; (*acc).r1_1 += a * b1; (*acc).r1_2 += a * b2; (*acc).r1_3 += a * b3;
        (*acc).r1_4 += a * b4; (*acc).r1_5 += a * b5; (*acc).r1_6 += a * b6; (*acc).r1_7 += a * b7;
    }
    if (RQ > 2u) {
        let a = weight_quad(w, 2u, wl);
        (*acc).r2_0 += a * b0; (*acc).r2_1 += a * b1; (*acc).r2_2 += a * b2; (*acc).r2_3 += a * b3;
        (*acc).r2_4 += a * b4; (*acc).r2_5 += a * b5; (*acc).r2_6 += a * b6; (*acc).r2_7 += a * b7;
    }
    if (RQ > 3u) {
        let a = weight_quad(w, 3u, wl);
        (*acc).r3_0 += a * b0; (*acc).r3_1 += a * b1; (*acc).r3_2 += a * b2; (*acc).r3_3 += a * b3;
        (*acc).r3_4 += a * b4; (*acc).r3_5 += a * b5; (*acc).r3_6 += a * b6; (*acc).r3_7 += a * b7;
    }
    if (RQ > 4u) {
        let a = weight_quad(w, 4u, wl);
        (*acc).r4_0 += a * b0; (*acc).r4_1 += a * b1; (*acc).r4_2 += a * b2; (*acc).r4_3 += a * b3;
    }
    if (RQ > 5u) {
        let a = weight_quad(w, 5u, wl);
        (*acc).r5_0 += a * b0; (*acc).r5_1 += a * b1; (*acc).r5_2 += a * b2; (*acc).r5_3 += a * b3;
    }
    if (RQ > 6u) {
        let a = weight_quad(w, 6u, wl);
        (*acc).r6_0 += a * b0; (*acc).r6_1 += a * b1; (*acc).r6_2 += a * b2; (*acc).r6_3 += a * b3;
    }
    if (RQ > 7u) {
        let a = weight_quad(w, 7u, wl);
        (*acc).r7_0 += a * b0; (*acc).r7_1 += a * b1; (*acc).r7_2 += a * b2; (*acc).r7_3 += a * b3;
    }
}

@compute @workgroup_size(64)
#if subgroups
fn conv2d_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) sl: u32) {
#else
fn conv2d_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let sl = 0u;
#endif
    // Whole workgroups leave here or run to the end with every lane (the
    // subgroup broadcasts need all lanes; columns past N are masked by c.ok).
    let n0 = wg_index(wid, nwg) * RWG * RJ;
    if (n0 >= p.ntot) { return; }
    let g = wid.z / p.m_tiles;
    let m0 = (wid.z % p.m_tiles) * 4u * RQ;
    // Weight vec4 q of row k is wpk[a0 + k * a4 + q], the same address in
    // every invocation. A_VEC (cout_g % 4 == 0) is required; rows past cout_g
    // read neighbouring (or padding) weights and are never stored.
    let a0 = (g * p.a_gstride + m0) / 4u;
    let a4 = p.a_kstride / 4u;
    // Column j of the thread: n0 + lid + 64*j, or n0 + 4*lid + j with B_VEC.
    let cb = select(n0 + lid, n0 + 4u * lid, B_VEC);
    let cs = select(RWG, 1u, B_VEC);
    let c = RowsCols(column(cb + 0u * cs, g), column(cb + 1u * cs, g), column(cb + 2u * cs, g), column(cb + 3u * cs, g), column(cb + 4u * cs, g), column(cb + 5u * cs, g), column(cb + 6u * cs, g), column(cb + 7u * cs, g));
    var acc: RowsAcc;
    if (HAS_PRE) {
        // Dead accumulators (q >= RQ or j >= RJ) are never stored, so their loads fold away.
        acc.r0_0 = pre4(c.c0, g, m0 + 0u); acc.r0_1 = pre4(c.c1, g, m0 + 0u); acc.r0_2 = pre4(c.c2, g, m0 + 0u); acc.r0_3 = pre4(c.c3, g, m0 + 0u);
        acc.r0_4 = pre4(c.c4, g, m0 + 0u); acc.r0_5 = pre4(c.c5, g, m0 + 0u); acc.r0_6 = pre4(c.c6, g, m0 + 0u); acc.r0_7 = pre4(c.c7, g, m0 + 0u);
        acc.r1_0 = pre4(c.c0, g, m0 + 4u); acc.r1_1 = pre4(c.c1, g, m0 + 4u); acc.r1_2 = pre4(c.c2, g, m0 + 4u); acc.r1_3 = pre4(c.c3, g, m0 + 4u);
        acc.r1_4 = pre4(c.c4, g, m0 + 4u); acc.r1_5 = pre4(c.c5, g, m0 + 4u); acc.r1_6 = pre4(c.c6, g, m0 + 4u); acc.r1_7 = pre4(c.c7, g, m0 + 4u);
        acc.r2_0 = pre4(c.c0, g, m0 + 8u); acc.r2_1 = pre4(c.c1, g, m0 + 8u); acc.r2_2 = pre4(c.c2, g, m0 + 8u); acc.r2_3 = pre4(c.c3, g, m0 + 8u);
        acc.r2_4 = pre4(c.c4, g, m0 + 8u); acc.r2_5 = pre4(c.c5, g, m0 + 8u); acc.r2_6 = pre4(c.c6, g, m0 + 8u); acc.r2_7 = pre4(c.c7, g, m0 + 8u);
        acc.r3_0 = pre4(c.c0, g, m0 + 12u); acc.r3_1 = pre4(c.c1, g, m0 + 12u); acc.r3_2 = pre4(c.c2, g, m0 + 12u); acc.r3_3 = pre4(c.c3, g, m0 + 12u);
        acc.r3_4 = pre4(c.c4, g, m0 + 12u); acc.r3_5 = pre4(c.c5, g, m0 + 12u); acc.r3_6 = pre4(c.c6, g, m0 + 12u); acc.r3_7 = pre4(c.c7, g, m0 + 12u);
        acc.r4_0 = pre4(c.c0, g, m0 + 16u); acc.r4_1 = pre4(c.c1, g, m0 + 16u); acc.r4_2 = pre4(c.c2, g, m0 + 16u); acc.r4_3 = pre4(c.c3, g, m0 + 16u);
        acc.r5_0 = pre4(c.c0, g, m0 + 20u); acc.r5_1 = pre4(c.c1, g, m0 + 20u); acc.r5_2 = pre4(c.c2, g, m0 + 20u); acc.r5_3 = pre4(c.c3, g, m0 + 20u);
        acc.r6_0 = pre4(c.c0, g, m0 + 24u); acc.r6_1 = pre4(c.c1, g, m0 + 24u); acc.r6_2 = pre4(c.c2, g, m0 + 24u); acc.r6_3 = pre4(c.c3, g, m0 + 24u);
        acc.r7_0 = pre4(c.c0, g, m0 + 28u); acc.r7_1 = pre4(c.c1, g, m0 + 28u); acc.r7_2 = pre4(c.c2, g, m0 + 28u); acc.r7_3 = pre4(c.c3, g, m0 + 28u);
    }
    // Two (KU4: four) k steps per trip: llvmpipe blends every loop-carried
    // value with the lane mask once per trip, which halves the multiply-add
    // rate of a one-step loop (see probe.wgsl). Four measured faster on the
    // direct convs (paired shares, two interleaved runs: 3x3 96->32 at
    // 128x128 23-24% -> 27%, 131->18 at 64x64 14% -> 19-20%), on the
    // pointwise GEMMs neutral, the transposed conv slower (conv.rs).
    var k = 0u;
    if (KU4) {
        for (; k + 4u <= p.k; k += 4u) {
            rows_step(&acc, c, a0, a4, k, sl);
            rows_step(&acc, c, a0, a4, k + 1u, sl);
            rows_step(&acc, c, a0, a4, k + 2u, sl);
            rows_step(&acc, c, a0, a4, k + 3u, sl);
        }
    }
    for (; k + 2u <= p.k; k += 2u) {
        rows_step(&acc, c, a0, a4, k, sl);
        rows_step(&acc, c, a0, a4, k + 1u, sl);
    }
    if (k < p.k) { rows_step(&acc, c, a0, a4, k, sl); }
    // Dead accumulators fold away with the override constants.
    let z = vec4<f32>(0.0);
    if (RQ > 0u) { store_cols(c, g, m0 + 0u, acc.r0_0, acc.r0_1, acc.r0_2, acc.r0_3, acc.r0_4, acc.r0_5, acc.r0_6, acc.r0_7); }
    if (RQ > 1u) { store_cols(c, g, m0 + 4u, acc.r1_0, acc.r1_1, acc.r1_2, acc.r1_3, acc.r1_4, acc.r1_5, acc.r1_6, acc.r1_7); }
    if (RQ > 2u) { store_cols(c, g, m0 + 8u, acc.r2_0, acc.r2_1, acc.r2_2, acc.r2_3, acc.r2_4, acc.r2_5, acc.r2_6, acc.r2_7); }
    if (RQ > 3u) { store_cols(c, g, m0 + 12u, acc.r3_0, acc.r3_1, acc.r3_2, acc.r3_3, acc.r3_4, acc.r3_5, acc.r3_6, acc.r3_7); }
    if (RQ > 4u) { store_cols(c, g, m0 + 16u, acc.r4_0, acc.r4_1, acc.r4_2, acc.r4_3, z, z, z, z); }
    if (RQ > 5u) { store_cols(c, g, m0 + 20u, acc.r5_0, acc.r5_1, acc.r5_2, acc.r5_3, z, z, z, z); }
    if (RQ > 6u) { store_cols(c, g, m0 + 24u, acc.r6_0, acc.r6_1, acc.r6_2, acc.r6_3, z, z, z, z); }
    if (RQ > 7u) { store_cols(c, g, m0 + 28u, acc.r7_0, acc.r7_1, acc.r7_2, acc.r7_3, z, z, z, z); }
}

// ---------------------------------------------------------------------------
// Narrow CPU variant (conv2d_narrow): outputs of a few columns (N =
// batch*Ho*Wo <= 32 or 64, e.g. one pixel or one short row of a batch), where conv2d_rows
// would leave nearly every lane of its 64*RJ-column tile idle, and with
// subgroups pointwise convs of whole 64- or 32-channel groups at any or
// large widths (the rule and its measurements are in conv.rs). Lanes run
// along output channels instead: thread lid owns channels m0 + 4*lid .. +3
// (one weight vec4 per k, consecutive across lanes) and all CJ columns of
// the workgroup (their gathers are at workgroup-uniform addresses). A
// workgroup covers 4*NWG = 64 channels (conv2d_narrow8: 32), so a 768-channel layer is 12
// workgroups and keeps every core busy. The sum is the same multiply-add
// chain in k order as the other entries, so an output element is
// bit-identical whichever entry computed it.
const NWG: u32 = 16u;
override CJ: u32 = 1u;

// The CJ input values of one k step are the same in every lane, and on
// llvmpipe each such load is a loop over the lanes. With subgroups lane l
// loads column n0 + l, and n0 + 8 + l when CJ > 8 (one loop each), and the
// values are broadcasts from lanes 0..7 (the subgroup has at least 8 lanes,
// CJ <= 16).
#if subgroups
fn narrow_cols(lo: Col, hi: Col, t: Tap) -> array<f32, 16> {
    let v = gather(lo, t);
    var u = 0.0;
    if (CJ > 8u) { u = gather(hi, t); }
    return array<f32, 16>(subgroupBroadcast(v, 0u), subgroupBroadcast(v, 1u), subgroupBroadcast(v, 2u), subgroupBroadcast(v, 3u),
                          subgroupBroadcast(v, 4u), subgroupBroadcast(v, 5u), subgroupBroadcast(v, 6u), subgroupBroadcast(v, 7u),
                          subgroupBroadcast(u, 0u), subgroupBroadcast(u, 1u), subgroupBroadcast(u, 2u), subgroupBroadcast(u, 3u),
                          subgroupBroadcast(u, 4u), subgroupBroadcast(u, 5u), subgroupBroadcast(u, 6u), subgroupBroadcast(u, 7u));
}
#else
fn narrow_cols(lo: Col, hi: Col, t: Tap) -> array<f32, 16> {
    return array<f32, 16>(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
}
#endif

// One body for both widths: `lanes` threads own 4 * lanes channels. The
// 8-thread entry conv2d_narrow8 serves 32-channel groups (HCFlow's
// dense-block GEMMs), where the upper half of 16 lanes would only
// broadcast; conv.rs takes it on wide outputs only (NARROW8_MIN_COLS).
fn narrow_body(wid: vec3<u32>, nwg: vec3<u32>, lid: u32, sl: u32, lanes: u32, shared_cols: bool) {
    let n0 = wg_index(wid, nwg) * CJ;
    if (n0 >= p.ntot) { return; } // workgroup-uniform
    let g = wid.z / p.m_tiles;
    let m = (wid.z % p.m_tiles) * 4u * lanes + 4u * lid;
    // A_VEC (cout_g % 4 == 0) is required. Lanes past cout_g stay for the
    // broadcasts (reading the group's first weights) and store nothing.
    let live = m < p.cout_g;
    if (!shared_cols && !live) { return; }
    let a0 = (g * p.a_gstride + select(0u, m, live)) / 4u;
    let a4 = p.a_kstride / 4u;
    let cl = column(n0 + min(sl, CJ - 1u), g);
    let ch = column(n0 + min(8u + sl, CJ - 1u), g);
    let c0 = column(n0 + 0u, g);
    let c1 = column(n0 + 1u, g);
    let c2 = column(n0 + 2u, g);
    let c3 = column(n0 + 3u, g);
    let c4 = column(n0 + 4u, g);
    let c5 = column(n0 + 5u, g);
    let c6 = column(n0 + 6u, g);
    let c7 = column(n0 + 7u, g);
    let c8 = column(n0 + 8u, g);
    let c9 = column(n0 + 9u, g);
    let c10 = column(n0 + 10u, g);
    let c11 = column(n0 + 11u, g);
    let c12 = column(n0 + 12u, g);
    let c13 = column(n0 + 13u, g);
    let c14 = column(n0 + 14u, g);
    let c15 = column(n0 + 15u, g);
    var r0 = vec4<f32>(0.0);
    var r1 = vec4<f32>(0.0);
    var r2 = vec4<f32>(0.0);
    var r3 = vec4<f32>(0.0);
    var r4 = vec4<f32>(0.0);
    var r5 = vec4<f32>(0.0);
    var r6 = vec4<f32>(0.0);
    var r7 = vec4<f32>(0.0);
    var r8 = vec4<f32>(0.0);
    var r9 = vec4<f32>(0.0);
    var r10 = vec4<f32>(0.0);
    var r11 = vec4<f32>(0.0);
    var r12 = vec4<f32>(0.0);
    var r13 = vec4<f32>(0.0);
    var r14 = vec4<f32>(0.0);
    var r15 = vec4<f32>(0.0);
    if (HAS_PRE) {
        r0 = pre4(c0, g, m);
        if (CJ > 1u) { r1 = pre4(c1, g, m); }
        if (CJ > 2u) { r2 = pre4(c2, g, m); }
        if (CJ > 3u) { r3 = pre4(c3, g, m); }
        if (CJ > 4u) { r4 = pre4(c4, g, m); }
        if (CJ > 5u) { r5 = pre4(c5, g, m); }
        if (CJ > 6u) { r6 = pre4(c6, g, m); }
        if (CJ > 7u) { r7 = pre4(c7, g, m); }
        if (CJ > 8u) { r8 = pre4(c8, g, m); }
        if (CJ > 9u) { r9 = pre4(c9, g, m); }
        if (CJ > 10u) { r10 = pre4(c10, g, m); }
        if (CJ > 11u) { r11 = pre4(c11, g, m); }
        if (CJ > 12u) { r12 = pre4(c12, g, m); }
        if (CJ > 13u) { r13 = pre4(c13, g, m); }
        if (CJ > 14u) { r14 = pre4(c14, g, m); }
        if (CJ > 15u) { r15 = pre4(c15, g, m); }
    }
    for (var k = 0u; k < p.k; k++) {
        let t = tap_of(k);
        let a = vec4<f32>(wpk[a0 + k * a4]);
        if (shared_cols) {
            let b = narrow_cols(cl, ch, t);
            r0 += a * b[0];
            if (CJ > 1u) { r1 += a * b[1]; }
            if (CJ > 2u) { r2 += a * b[2]; }
            if (CJ > 3u) { r3 += a * b[3]; }
            if (CJ > 4u) { r4 += a * b[4]; }
            if (CJ > 5u) { r5 += a * b[5]; }
            if (CJ > 6u) { r6 += a * b[6]; }
            if (CJ > 7u) { r7 += a * b[7]; }
            if (CJ > 8u) { r8 += a * b[8]; }
            if (CJ > 9u) { r9 += a * b[9]; }
            if (CJ > 10u) { r10 += a * b[10]; }
            if (CJ > 11u) { r11 += a * b[11]; }
            if (CJ > 12u) { r12 += a * b[12]; }
            if (CJ > 13u) { r13 += a * b[13]; }
            if (CJ > 14u) { r14 += a * b[14]; }
            if (CJ > 15u) { r15 += a * b[15]; }
        } else {
            r0 += a * gather(c0, t);
            if (CJ > 1u) { r1 += a * gather(c1, t); }
            if (CJ > 2u) { r2 += a * gather(c2, t); }
            if (CJ > 3u) { r3 += a * gather(c3, t); }
            if (CJ > 4u) { r4 += a * gather(c4, t); }
            if (CJ > 5u) { r5 += a * gather(c5, t); }
            if (CJ > 6u) { r6 += a * gather(c6, t); }
            if (CJ > 7u) { r7 += a * gather(c7, t); }
            if (CJ > 8u) { r8 += a * gather(c8, t); }
            if (CJ > 9u) { r9 += a * gather(c9, t); }
            if (CJ > 10u) { r10 += a * gather(c10, t); }
            if (CJ > 11u) { r11 += a * gather(c11, t); }
            if (CJ > 12u) { r12 += a * gather(c12, t); }
            if (CJ > 13u) { r13 += a * gather(c13, t); }
            if (CJ > 14u) { r14 += a * gather(c14, t); }
            if (CJ > 15u) { r15 += a * gather(c15, t); }
        }
    }
    if (!live) { return; }
    let bs = epi_quad(g, m);
    store4(c0, g, m, r0, bs);
    if (CJ > 1u) { store4(c1, g, m, r1, bs); }
    if (CJ > 2u) { store4(c2, g, m, r2, bs); }
    if (CJ > 3u) { store4(c3, g, m, r3, bs); }
    if (CJ > 4u) { store4(c4, g, m, r4, bs); }
    if (CJ > 5u) { store4(c5, g, m, r5, bs); }
    if (CJ > 6u) { store4(c6, g, m, r6, bs); }
    if (CJ > 7u) { store4(c7, g, m, r7, bs); }
    if (CJ > 8u) { store4(c8, g, m, r8, bs); }
    if (CJ > 9u) { store4(c9, g, m, r9, bs); }
    if (CJ > 10u) { store4(c10, g, m, r10, bs); }
    if (CJ > 11u) { store4(c11, g, m, r11, bs); }
    if (CJ > 12u) { store4(c12, g, m, r12, bs); }
    if (CJ > 13u) { store4(c13, g, m, r13, bs); }
    if (CJ > 14u) { store4(c14, g, m, r14, bs); }
    if (CJ > 15u) { store4(c15, g, m, r15, bs); }
}

@compute @workgroup_size(16)
#if subgroups
fn conv2d_narrow(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) sl: u32) {
    narrow_body(wid, nwg, lid, sl, NWG, true);
}
#else
fn conv2d_narrow(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    narrow_body(wid, nwg, lid, 0u, NWG, false);
}
#endif

@compute @workgroup_size(8)
#if subgroups
fn conv2d_narrow8(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) sl: u32) {
    narrow_body(wid, nwg, lid, sl, 8u, true);
}
#else
fn conv2d_narrow8(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    narrow_body(wid, nwg, lid, 0u, 8u, false);
}
#endif
