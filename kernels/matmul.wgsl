#import prelude

// Strided batched GEMM: C[b] = alpha * op(A[b]) * op(B[b]) (+ bias).
//
// Every operand is a row-major matrix inside a flat buffer, addressed by a
// base offset, a batch stride and a leading dimension, so the same kernel
// serves plain [B,1,rows,cols] tensors and views such as one head's q/k/v
// slice of a fused qkv map (attention.rs).
//
// Tiling: one workgroup computes a 64x64 block of C with 16x16 threads; each
// thread owns a 4x4 register tile at rows ty + 16*i and columns tx + 16*j, so
// neighbouring threads touch neighbouring shared-memory words (no bank
// conflicts) and neighbouring C columns (coalesced stores). K is consumed in
// chunks of 16 staged through shared memory. Elements outside M/N/K are
// loaded as zero and never stored, so any size works.

struct GemmParams {
    m: u32,
    n: u32,
    k: u32,
    alpha: f32,
    lda: u32,
    ldb: u32,
    ldc: u32,
    bias_off: u32,
    a_off: u32,
    b_off: u32,
    c_off: u32,
    _pad0: u32,
    a_bs: u32,
    b_bs: u32,
    c_bs: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: GemmParams;
@group(0) @binding(1) var<storage, read> A: array<A_t>;
@group(0) @binding(2) var<storage, read> B: array<B_t>;
@group(0) @binding(3) var<storage, read> bias: array<bias_t>;
@group(0) @binding(4) var<storage, read_write> C: array<C_t>;

// A is stored [K, M] (row-major) instead of [M, K].
override TRANS_A: bool = false;
// B is stored [N, K] instead of [K, N].
override TRANS_B: bool = false;
// BIAS_NONE, BIAS_PER_COLUMN (bias[n] added to every row) or BIAS_PER_ROW
// (bias[m] added to every column).
override BIAS_MODE: u32 = BIAS_NONE;

const TM: u32 = 64u;
const TN: u32 = 64u;
const TK: u32 = 16u;
// Row pitch of the shared tiles. The +4 pad spreads the stride-TK stores of
// the non-transposed loads over several banks.
const SA: u32 = 68u;

var<workgroup> As: array<f32, 1088>; // [TK][SA], As[k*SA + m]
var<workgroup> Bs: array<f32, 1088>; // [TK][SA], Bs[k*SA + n]

@compute @workgroup_size(16, 16)
fn gemm(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(local_invocation_id) lid3: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let m0 = wid.y * TM;
    let n0 = wid.x * TN;
    let tx = lid3.x;
    let ty = lid3.y;
    let a_base = p.a_off + wid.z * p.a_bs;
    let b_base = p.b_off + wid.z * p.b_bs;

    var acc: array<vec4<f32>, 4>;
    for (var i = 0u; i < 4u; i++) {
        acc[i] = vec4<f32>(0.0);
    }

    for (var k0 = 0u; k0 < p.k; k0 += TK) {
        // 64x16 elements of each operand, 4 per thread. The thread-to-element
        // map follows the contiguous axis of the stored matrix so global
        // reads are coalesced.
        for (var r = 0u; r < 4u; r++) {
            let e = lid + r * 256u;
            var mm: u32;
            var ka: u32;
            if (TRANS_A) {
                ka = e / TM;
                mm = e % TM;
            } else {
                mm = e / TK;
                ka = e % TK;
            }
            let gm = m0 + mm;
            let gka = k0 + ka;
            var va = 0.0;
            if (gm < p.m && gka < p.k) {
                if (TRANS_A) {
                    va = f32(A[a_base + gka * p.lda + gm]);
                } else {
                    va = f32(A[a_base + gm * p.lda + gka]);
                }
            }
            As[ka * SA + mm] = va;

            var nn: u32;
            var kb: u32;
            if (TRANS_B) {
                nn = e / TK;
                kb = e % TK;
            } else {
                kb = e / TN;
                nn = e % TN;
            }
            let gn = n0 + nn;
            let gkb = k0 + kb;
            var vb = 0.0;
            if (gn < p.n && gkb < p.k) {
                if (TRANS_B) {
                    vb = f32(B[b_base + gn * p.ldb + gkb]);
                } else {
                    vb = f32(B[b_base + gkb * p.ldb + gn]);
                }
            }
            Bs[kb * SA + nn] = vb;
        }
        workgroupBarrier();

        for (var kk = 0u; kk < TK; kk++) {
            let ar = kk * SA + ty;
            let br = kk * SA + tx;
            let a = vec4<f32>(As[ar], As[ar + 16u], As[ar + 32u], As[ar + 48u]);
            let b = vec4<f32>(Bs[br], Bs[br + 16u], Bs[br + 32u], Bs[br + 48u]);
            acc[0] = fma(vec4<f32>(a.x), b, acc[0]);
            acc[1] = fma(vec4<f32>(a.y), b, acc[1]);
            acc[2] = fma(vec4<f32>(a.z), b, acc[2]);
            acc[3] = fma(vec4<f32>(a.w), b, acc[3]);
        }
        workgroupBarrier();
    }

    let c_base = p.c_off + wid.z * p.c_bs;
    for (var i = 0u; i < 4u; i++) {
        let gm = m0 + ty + 16u * i;
        if (gm >= p.m) {
            continue;
        }
        for (var j = 0u; j < 4u; j++) {
            let gn = n0 + tx + 16u * j;
            if (gn >= p.n) {
                continue;
            }
            var v = p.alpha * acc[i][j];
            if (BIAS_MODE == BIAS_PER_COLUMN) {
                v += f32(bias[p.bias_off + gn]);
            } else if (BIAS_MODE == BIAS_PER_ROW) {
                v += f32(bias[p.bias_off + gm]);
            }
            C[c_base + gm * p.ldc + gn] = C_t(v);
        }
    }
}

// ---------------------------------------------------------------------------
// CPU variant (gemm_rows), chosen for CPU adapters (llvmpipe/lavapipe), on
// the reasoning of conv.wgsl's conv2d_rows: there every workgroup-memory
// read above is a per-lane scalar loop, so this variant uses none. A thread
// owns 16 rows (m0 .. m0+15, the same for the whole workgroup, so their A
// loads are at uniform addresses) and 8 columns n0 + lid + 64*j (B loads of
// neighbouring lanes are neighbouring words unless TRANS_B): per k, 8 B
// loads and 16 uniform A loads feed 128 multiply-adds, with no barriers.
const RM: u32 = 16u;
// Columns per thread (8, 4 or 2, see matmul.rs): fewer for narrow products
// (Winograd GEMMs of a small image) so a 512-column tile is not mostly idle.
override RN: u32 = 8u;

fn a_at(base: u32, m: u32, k: u32) -> f32 {
    if (m >= p.m) { return 0.0; }
    if (TRANS_A) { return f32(A[base + k * p.lda + m]); }
    return f32(A[base + m * p.lda + k]);
}

fn b_at(base: u32, n: u32, k: u32) -> f32 {
    if (n >= p.n) { return 0.0; }
    if (TRANS_B) { return f32(B[base + n * p.ldb + k]); }
    return f32(B[base + k * p.ldb + n]);
}

// The 16 A values of k step k (rows m0 .. m0+15) are the same in every lane,
// but llvmpipe loads a non-constant address with a loop over the lanes, once
// per value. With subgroups each lane loads rows m0 + l and m0 + 8 + l
// (l = lane mod 8: two such loops) and the quads are broadcasts from lanes
// 0..7 (lavapipe, min of interleaved runs: 512^3 29.1 -> 15.2 ms).
#if subgroups
fn a_lane(base: u32, m0: u32, k: u32, sl: u32) -> vec2<f32> {
    let l = sl % 8u;
    return vec2<f32>(a_at(base, m0 + l, k), a_at(base, m0 + 8u + l, k));
}

fn a_quad(base: u32, m0: u32, k: u32, al: vec2<f32>, q: u32) -> vec4<f32> {
    switch (q) {
        case 0u: { return vec4<f32>(subgroupBroadcast(al.x, 0u), subgroupBroadcast(al.x, 1u), subgroupBroadcast(al.x, 2u), subgroupBroadcast(al.x, 3u)); }
        case 1u: { return vec4<f32>(subgroupBroadcast(al.x, 4u), subgroupBroadcast(al.x, 5u), subgroupBroadcast(al.x, 6u), subgroupBroadcast(al.x, 7u)); }
        case 2u: { return vec4<f32>(subgroupBroadcast(al.y, 0u), subgroupBroadcast(al.y, 1u), subgroupBroadcast(al.y, 2u), subgroupBroadcast(al.y, 3u)); }
        default: { return vec4<f32>(subgroupBroadcast(al.y, 4u), subgroupBroadcast(al.y, 5u), subgroupBroadcast(al.y, 6u), subgroupBroadcast(al.y, 7u)); }
    }
}
#else
fn a_lane(base: u32, m0: u32, k: u32, sl: u32) -> vec2<f32> {
    return vec2<f32>(0.0);
}

fn a_quad(base: u32, m0: u32, k: u32, al: vec2<f32>, q: u32) -> vec4<f32> {
    let m = m0 + 4u * q;
    return vec4<f32>(a_at(base, m, k), a_at(base, m + 1u, k), a_at(base, m + 2u, k), a_at(base, m + 3u, k));
}
#endif

// Rows m .. m+3 of column n of C (the parts inside M x N), with alpha and bias.
fn store_rows(c_base: u32, m: u32, n: u32, acc: vec4<f32>) {
    if (n >= p.n) { return; }
    for (var i = 0u; i < 4u; i++) {
        let gm = m + i;
        if (gm >= p.m) { return; }
        var v = p.alpha * acc[i];
        if (BIAS_MODE == BIAS_PER_COLUMN) {
            v += f32(bias[p.bias_off + n]);
        } else if (BIAS_MODE == BIAS_PER_ROW) {
            v += f32(bias[p.bias_off + gm]);
        }
        C[c_base + gm * p.ldc + n] = C_t(v);
    }
}

@compute @workgroup_size(64)
#if subgroups
fn gemm_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
             @builtin(subgroup_invocation_id) sl: u32) {
#else
fn gemm_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let sl = 0u;
#endif
    let n0 = wid.x * 64u * RN + lid;
    let m0 = wid.y * RM;
    let a_base = p.a_off + wid.z * p.a_bs;
    let b_base = p.b_off + wid.z * p.b_bs;
    // r<q>_<j>: rows m0 + 4q .. +3 of column n0 + 64 j, in named variables
    // (an indexed array would live in memory on llvmpipe).
    var r0_0 = vec4<f32>(0.0); var r0_1 = vec4<f32>(0.0); var r0_2 = vec4<f32>(0.0); var r0_3 = vec4<f32>(0.0); var r0_4 = vec4<f32>(0.0); var r0_5 = vec4<f32>(0.0); var r0_6 = vec4<f32>(0.0); var r0_7 = vec4<f32>(0.0);
    var r1_0 = vec4<f32>(0.0); var r1_1 = vec4<f32>(0.0); var r1_2 = vec4<f32>(0.0); var r1_3 = vec4<f32>(0.0); var r1_4 = vec4<f32>(0.0); var r1_5 = vec4<f32>(0.0); var r1_6 = vec4<f32>(0.0); var r1_7 = vec4<f32>(0.0);
    var r2_0 = vec4<f32>(0.0); var r2_1 = vec4<f32>(0.0); var r2_2 = vec4<f32>(0.0); var r2_3 = vec4<f32>(0.0); var r2_4 = vec4<f32>(0.0); var r2_5 = vec4<f32>(0.0); var r2_6 = vec4<f32>(0.0); var r2_7 = vec4<f32>(0.0);
    var r3_0 = vec4<f32>(0.0); var r3_1 = vec4<f32>(0.0); var r3_2 = vec4<f32>(0.0); var r3_3 = vec4<f32>(0.0); var r3_4 = vec4<f32>(0.0); var r3_5 = vec4<f32>(0.0); var r3_6 = vec4<f32>(0.0); var r3_7 = vec4<f32>(0.0);
    for (var k = 0u; k < p.k; k++) {
        let al = a_lane(a_base, m0, k, sl);
        let a0 = a_quad(a_base, m0, k, al, 0u);
        let a1 = a_quad(a_base, m0, k, al, 1u);
        let a2 = a_quad(a_base, m0, k, al, 2u);
        let a3 = a_quad(a_base, m0, k, al, 3u);
        let b0 = b_at(b_base, n0 + 0u, k);
        let b1 = b_at(b_base, n0 + 64u, k);
        var b2 = 0.0;
        var b3 = 0.0;
        var b4 = 0.0;
        var b5 = 0.0;
        var b6 = 0.0;
        var b7 = 0.0;
        if (RN > 2u) { b2 = b_at(b_base, n0 + 128u, k); b3 = b_at(b_base, n0 + 192u, k); }
        if (RN > 4u) {
            b4 = b_at(b_base, n0 + 256u, k); b5 = b_at(b_base, n0 + 320u, k);
            b6 = b_at(b_base, n0 + 384u, k); b7 = b_at(b_base, n0 + 448u, k);
        }
        r0_0 += a0 * b0; r0_1 += a0 * b1;
        if (RN > 2u) { r0_2 += a0 * b2; r0_3 += a0 * b3; }
        if (RN > 4u) { r0_4 += a0 * b4; r0_5 += a0 * b5; r0_6 += a0 * b6; r0_7 += a0 * b7; }
        r1_0 += a1 * b0; r1_1 += a1 * b1;
        if (RN > 2u) { r1_2 += a1 * b2; r1_3 += a1 * b3; }
        if (RN > 4u) { r1_4 += a1 * b4; r1_5 += a1 * b5; r1_6 += a1 * b6; r1_7 += a1 * b7; }
        r2_0 += a2 * b0; r2_1 += a2 * b1;
        if (RN > 2u) { r2_2 += a2 * b2; r2_3 += a2 * b3; }
        if (RN > 4u) { r2_4 += a2 * b4; r2_5 += a2 * b5; r2_6 += a2 * b6; r2_7 += a2 * b7; }
        r3_0 += a3 * b0; r3_1 += a3 * b1;
        if (RN > 2u) { r3_2 += a3 * b2; r3_3 += a3 * b3; }
        if (RN > 4u) { r3_4 += a3 * b4; r3_5 += a3 * b5; r3_6 += a3 * b6; r3_7 += a3 * b7; }
    }
    let c_base = p.c_off + wid.z * p.c_bs;
    store_rows(c_base, m0 + 0u, n0 + 0u, r0_0);
    store_rows(c_base, m0 + 0u, n0 + 64u, r0_1);
    if (RN > 2u) { store_rows(c_base, m0 + 0u, n0 + 128u, r0_2); }
    if (RN > 2u) { store_rows(c_base, m0 + 0u, n0 + 192u, r0_3); }
    if (RN > 4u) { store_rows(c_base, m0 + 0u, n0 + 256u, r0_4); }
    if (RN > 4u) { store_rows(c_base, m0 + 0u, n0 + 320u, r0_5); }
    if (RN > 4u) { store_rows(c_base, m0 + 0u, n0 + 384u, r0_6); }
    if (RN > 4u) { store_rows(c_base, m0 + 0u, n0 + 448u, r0_7); }
    store_rows(c_base, m0 + 4u, n0 + 0u, r1_0);
    store_rows(c_base, m0 + 4u, n0 + 64u, r1_1);
    if (RN > 2u) { store_rows(c_base, m0 + 4u, n0 + 128u, r1_2); }
    if (RN > 2u) { store_rows(c_base, m0 + 4u, n0 + 192u, r1_3); }
    if (RN > 4u) { store_rows(c_base, m0 + 4u, n0 + 256u, r1_4); }
    if (RN > 4u) { store_rows(c_base, m0 + 4u, n0 + 320u, r1_5); }
    if (RN > 4u) { store_rows(c_base, m0 + 4u, n0 + 384u, r1_6); }
    if (RN > 4u) { store_rows(c_base, m0 + 4u, n0 + 448u, r1_7); }
    store_rows(c_base, m0 + 8u, n0 + 0u, r2_0);
    store_rows(c_base, m0 + 8u, n0 + 64u, r2_1);
    if (RN > 2u) { store_rows(c_base, m0 + 8u, n0 + 128u, r2_2); }
    if (RN > 2u) { store_rows(c_base, m0 + 8u, n0 + 192u, r2_3); }
    if (RN > 4u) { store_rows(c_base, m0 + 8u, n0 + 256u, r2_4); }
    if (RN > 4u) { store_rows(c_base, m0 + 8u, n0 + 320u, r2_5); }
    if (RN > 4u) { store_rows(c_base, m0 + 8u, n0 + 384u, r2_6); }
    if (RN > 4u) { store_rows(c_base, m0 + 8u, n0 + 448u, r2_7); }
    store_rows(c_base, m0 + 12u, n0 + 0u, r3_0);
    store_rows(c_base, m0 + 12u, n0 + 64u, r3_1);
    if (RN > 2u) { store_rows(c_base, m0 + 12u, n0 + 128u, r3_2); }
    if (RN > 2u) { store_rows(c_base, m0 + 12u, n0 + 192u, r3_3); }
    if (RN > 4u) { store_rows(c_base, m0 + 12u, n0 + 256u, r3_4); }
    if (RN > 4u) { store_rows(c_base, m0 + 12u, n0 + 320u, r3_5); }
    if (RN > 4u) { store_rows(c_base, m0 + 12u, n0 + 384u, r3_6); }
    if (RN > 4u) { store_rows(c_base, m0 + 12u, n0 + 448u, r3_7); }
}
