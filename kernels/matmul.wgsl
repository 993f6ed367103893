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
@group(0) @binding(1) var<storage, read> A: array<f32>;
@group(0) @binding(2) var<storage, read> B: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> C: array<f32>;

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
                    va = A[a_base + gka * p.lda + gm];
                } else {
                    va = A[a_base + gm * p.lda + gka];
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
                    vb = B[b_base + gn * p.ldb + gkb];
                } else {
                    vb = B[b_base + gkb * p.ldb + gn];
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
                v += bias[p.bias_off + gn];
            } else if (BIAS_MODE == BIAS_PER_ROW) {
                v += bias[p.bias_off + gm];
            }
            C[c_base + gm * p.ldc + gn] = v;
        }
    }
}
