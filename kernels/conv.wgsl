// 2-D convolution (and transposed convolution) as an implicit GEMM.
//
//   out[g*Mg + m, n] = sum_k A[g][k][m] * B[g][k][n]
//   M = Cout/groups, N = batch*Ho*Wo, K = Cin/groups*kh*kw (k = (ci, ky, kx), torch order)
//
// A is the pre-packed weight matrix (k-major, so a row of BM output channels is
// contiguous). B is never materialised: each B element is gathered from the
// input x on the fly. A workgroup of 16x16 threads computes a 64x64 output tile,
// each thread a 4x4 register tile; A and B are staged through workgroup memory
// in chunks of BK rows of K.
//
// Thread-to-tile mapping: thread lid owns output rows 4*(lid/16)..+4 and columns
// 4*(lid%16)..+4. Consecutive invocations share their A rows, so A reads from
// workgroup memory are uniform across a SIMD group on CPU backends (lavapipe
// turns them into one scalar load) and broadcasts on GPUs; B reads are
// consecutive vec4s.
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
@group(0) @binding(2) var<storage, read> wpk: array<f32>;
// Per k: (ci within group, ky, kx, unused).
@group(0) @binding(3) var<storage, read> taps: array<vec4<u32>>;
// bias[0..cout] then scale[cout..2*cout].
@group(0) @binding(4) var<storage, read> epi: array<f32>;
@group(0) @binding(5) var<storage, read> res: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<f32>;

override MODE: u32 = 0u;
override ACT: u32 = 0u;
override HAS_RES: bool = false;
override TSY: u32 = 1u;
override TSX: u32 = 1u;

const TM: u32 = 4u;           // register tile rows (output channels)
const TN: u32 = 4u;           // register tile columns (pixels), one vec4
const WGM: u32 = 16u;         // threads along M
const WGN: u32 = 16u;         // threads along N
const BM: u32 = 64u;          // WGM * TM
const BN: u32 = 64u;          // WGN * TN
const BK: u32 = 32u;          // K rows per chunk
const ROWS: u32 = 16u;        // K rows one pass of 256 threads stages (256 / (BN/4))
const BIG_NEG: i32 = -1073741824;

// As[kk * (BM/4) + m4] holds A[k0+kk][m0 + 4*m4 .. +4]; Bs likewise for B.
var<workgroup> As: array<vec4<f32>, 512>; // BK * BM / 4
var<workgroup> Bs: array<vec4<f32>, 512>; // BK * BN / 4

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

@compute @workgroup_size(256)
fn conv2d(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let n0 = (wid.x + wid.y * nwg.x) * BN;
    if (n0 >= p.ntot) { return; }
    let g = wid.z / p.m_tiles;
    let m0 = (wid.z % p.m_tiles) * BM;
    let tm = lid / WGN;
    let tn = lid % WGN;

    // Decompose this thread's 4 output columns once: they serve both the B
    // gathers (which stage columns 4*tn..+4) and the epilogue.
    var nval: vec4<bool>;
    var iy0: vec4<i32>;
    var ix0: vec4<i32>;
    var xbase: vec4<u32>;
    var obase: vec4<u32>;
    for (var j = 0u; j < 4u; j++) {
        let n = n0 + TN * tn + j;
        let ok = n < p.ntot;
        let nn = select(0u, n, ok);
        let b = nn / p.howo;
        let pix = nn - b * p.howo;
        let oy = pix / p.wo;
        let ox = pix - oy * p.wo;
        nval[j] = ok;
        obase[j] = b * p.cout * p.howo + pix;
        xbase[j] = (b * p.cin + g * p.cin_g) * p.hw;
        if (MODE == 1u) {
            xbase[j] += pix;
        } else if (MODE == 2u) {
            iy0[j] = select(BIG_NEG, i32(oy) + p.py, ok);
            ix0[j] = i32(ox) + p.px;
        } else {
            iy0[j] = select(BIG_NEG, i32(oy) * p.sy - p.py, ok);
            ix0[j] = i32(ox) * p.sx - p.px;
        }
    }

    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);

    let srow = lid / (BN / 4u);   // staging row within a pass
    let scol = lid % (BN / 4u);   // staging vec4 column (== tn for B)
    let hw = i32(p.hw);
    let wi = i32(p.w);

    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        for (var r = 0u; r < BK; r += ROWS) {
            let kk = r + srow;
            let k = k0 + kk;
            let kok = k < p.k;
            // A: 4 consecutive output channels of row k.
            var a = vec4<f32>(0.0);
            let abase = k * p.a_kstride + g * p.a_gstride + m0 + 4u * scol;
            for (var i = 0u; i < 4u; i++) {
                let ok = kok && (m0 + 4u * scol + i < p.cout_g);
                a[i] = select(0.0, wpk[select(0u, abase + i, ok)], ok);
            }
            As[kk * (BM / 4u) + scol] = a;

            // B: row k of the implicit im2col matrix, this thread's 4 columns.
            var bv = vec4<f32>(0.0);
            if (MODE == 1u) {
                let off = k * p.hw;
                for (var j = 0u; j < 4u; j++) {
                    let ok = kok && nval[j];
                    bv[j] = select(0.0, x[select(0u, xbase[j] + off, ok)], ok);
                }
            } else {
                let t = taps[min(k, p.k - 1u)];
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
                        let idx = xbase[j] + coff + u32(iy[j] * wi + ix[j]);
                        bv[j] = select(0.0, x[select(0u, idx, ok)], ok);
                    }
                }
            }
            Bs[kk * (BN / 4u) + scol] = bv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let a = As[kk * (BM / 4u) + tm];
            let b = Bs[kk * (BN / 4u) + tn];
            acc0 = fma(vec4<f32>(a.x), b, acc0);
            acc1 = fma(vec4<f32>(a.y), b, acc1);
            acc2 = fma(vec4<f32>(a.z), b, acc2);
            acc3 = fma(vec4<f32>(a.w), b, acc3);
        }
        workgroupBarrier();
    }

    for (var i = 0u; i < 4u; i++) {
        let mg = m0 + TM * tm + i;
        if (mg >= p.cout_g) { break; }
        let co = g * p.cout_g + mg;
        let bias = epi[co];
        let scale = epi[p.cout + co];
        var accv: vec4<f32>;
        switch i {
            case 0u: { accv = acc0; }
            case 1u: { accv = acc1; }
            case 2u: { accv = acc2; }
            default: { accv = acc3; }
        }
        for (var j = 0u; j < 4u; j++) {
            if (!nval[j]) { continue; }
            let idx = obase[j] + co * p.howo;
            var v = p.alpha * activate((accv[j] + bias) * scale);
            if (HAS_RES) {
                v += p.beta * res[idx];
            }
            y[idx] = v;
        }
    }
}

