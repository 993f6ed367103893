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
// Variants (override constants): MODE 0 = general conv (per-k tap table),
// 1 = pointwise 1x1/stride 1/pad 0 (plain GEMM, no index math), 2 = transposed
// conv (gather form: tap valid when (o + pad - k*dil) is divisible by the
// stride, which is the override TSY/TSX so the division is a constant one).
// ACT selects the activation; HAS_RES adds beta * residual.
//
// Epilogue per output element: out = alpha * act((acc + bias[c]) * scale[c]) + beta * res.

struct Params {
    cin: u32,       // total input channels
    h: u32,
    w: u32,
    hw: u32,
    cout: u32,      // total output channels
    ho: u32,
    wo: u32,
    howo: u32,
    cin_g: u32,     // input channels per group
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
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wpk: array<vec4<f32>>;
// Per k: ci << 16 | ky << 8 | kx (ci within the group); one word so the
// per-row lookup is a single load.
@group(0) @binding(3) var<storage, read> taps: array<u32>;
// bias[0..cout] then scale[cout..2*cout].
@group(0) @binding(4) var<storage, read> epi: array<f32>;
@group(0) @binding(5) var<storage, read> res: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<f32>;

override MODE: u32 = 0u;
override ACT: u32 = 0u;
override HAS_RES: bool = false;
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

fn activate(v: f32) -> f32 {
    switch ACT {
        case 1u: { return max(v, 0.0); }
        case 2u: { return select(v * p.slope, v, v >= 0.0); }
        case 3u: { return v / (1.0 + exp(-v)); }
        case 4u: {
            // tanh via exp(-2|v|) so large |v| cannot overflow to inf/inf.
            let e = exp(-2.0 * abs(v));
            return sign(v) * (1.0 - e) / (1.0 + e);
        }
        case 5u: { return 1.0 / (1.0 + exp(-v)); }
        default: { return v; }
    }
}

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
    c.xbase = (b * p.cin + g * p.cin_g) * p.hw;
    if (MODE == 1u) {
        c.xbase += pix;
    }
    if (MODE == 2u) {
        c.iy0 = select(BIG_NEG, i32(oy) + p.py, c.ok);
        c.ix0 = i32(ox) + p.px;
    } else {
        c.iy0 = select(BIG_NEG, i32(oy) * p.sy - p.py, c.ok);
        c.ix0 = i32(ox) * p.sx - p.px;
    }
    return c;
}

fn store(c: Col, co: u32, acc: f32, bias: f32, scale: f32) {
    if (!c.ok) { return; }
    let idx = c.obase + co * p.howo;
    var v = p.alpha * activate((acc + bias) * scale);
    if (HAS_RES) {
        v += p.beta * res[idx];
    }
    y[idx] = v;
}

// Epilogue for one output row (channel mg of group g) of the thread's columns.
fn store_row(cols: ptr<function, array<Col, 8>>, g: u32, mg: u32, acc: array<vec4<f32>, 2>) {
    if (mg >= p.cout_g) { return; }
    let co = g * p.cout_g + mg;
    let bias = epi[co];
    let scale = epi[p.cout + co];
    for (var h = 0u; h < 2u; h++) {
        for (var j = 0u; j < 4u; j++) {
            store((*cols)[4u * h + j], co, acc[h][j], bias, scale);
        }
    }
}

@compute @workgroup_size(64)
fn conv2d(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let n0 = (wid.x + wid.y * nwg.x) * BN;
    if (n0 >= p.ntot) { return; }
    let g = wid.z / p.m_tiles;
    let m0 = (wid.z % p.m_tiles) * select(BM, BM / 2u, HALF_M);

    // Staging roles: A vec4 column acol of rows arow, arow + 4, ...; B vec4
    // column bcol (columns 4*bcol..+4) of rows brow, brow + 2, ...
    let acol = lid % VA;
    let arow = lid / VA;
    let bcol = lid % VB;
    let brow = lid / VB;
    var nval: vec4<bool>;
    var iy0: vec4<i32>;
    var ix0: vec4<i32>;
    var xbase: vec4<u32>;
    for (var j = 0u; j < 4u; j++) {
        let c = column(n0 + 4u * bcol + j, g);
        nval[j] = c.ok;
        iy0[j] = c.iy0;
        ix0[j] = c.ix0;
        xbase[j] = c.xbase;
    }
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
                a = select(vec4<f32>(0.0), wpk[select(0u, ai / 4u, ok)], ok);
            } else {
                for (var i = 0u; i < 4u; i++) {
                    let ok = kok && am + i < p.cout_g && !(HALF_M && acol >= VA / 2u);
                    let e = select(0u, ai + i, ok);
                    a[i] = select(0.0, wpk[e / 4u][e % 4u], ok);
                }
            }
            As[kk * VA + acol] = a;
        }
        for (var r = 0u; r < BK; r += 2u) {
            let kk = r + brow;
            let k = k0 + kk;
            let kok = k < p.k;
            // B: row k of the implicit im2col matrix, 4 columns.
            var bv = vec4<f32>(0.0);
            if (MODE == 1u) {
                let off = k * p.hw;
                for (var j = 0u; j < 4u; j++) {
                    let ok = kok && nval[j];
                    bv[j] = select(0.0, x[select(0u, xbase[j] + off, ok)], ok);
                }
            } else {
                let tap = taps[min(k, p.k - 1u)];
                let t = vec3<u32>(tap >> 16u, (tap >> 8u) & 255u, tap & 255u);
                let coff = t.x * p.hw;
                if (MODE == 2u) {
                    let ty = iy0 - vec4<i32>(i32(t.y) * p.dy);
                    let tx = ix0 - vec4<i32>(i32(t.z) * p.dx);
                    let uy = vec4<u32>(ty);
                    let ux = vec4<u32>(tx);
                    let iy = uy / TSY;
                    let ix = ux / TSX;
                    for (var j = 0u; j < 4u; j++) {
                        let ok = kok && ty[j] >= 0 && tx[j] >= 0 && uy[j] % TSY == 0u && ux[j] % TSX == 0u
                            && iy[j] < p.h && ix[j] < p.w;
                        let idx = xbase[j] + coff + iy[j] * p.w + ix[j];
                        bv[j] = select(0.0, x[select(0u, idx, ok)], ok);
                    }
                } else {
                    let iy = iy0 + vec4<i32>(i32(t.y) * p.dy);
                    let ix = ix0 + vec4<i32>(i32(t.z) * p.dx);
                    for (var j = 0u; j < 4u; j++) {
                        // Unsigned compare also rejects negative coordinates.
                        let ok = kok && u32(iy[j]) < p.h && u32(ix[j]) < p.w;
                        let idx = xbase[j] + coff + u32(iy[j] * i32(p.w) + ix[j]);
                        bv[j] = select(0.0, x[select(0u, idx, ok)], ok);
                    }
                }
            }
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
