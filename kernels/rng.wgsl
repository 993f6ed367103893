#import prelude

// Counter-based random numbers: Philox 4x32-10 (Salmon et al., SC'11), the
// Random123 variant, so the stream is reproducible on the host
// (src/ops/rng.rs has the bit-exact twin and documents the stream).
//
// Stream: key = (seed lo, seed hi); block b = offset + i / 4 (u64);
// counter = (b lo, b hi, 0, 0); element i takes word i % 4 of the block.
// One thread computes one block and writes its (up to) 4 elements.
//
// Outputs are declared array<u32>: a uniform/normal is stored through
// bitcast, so the bits the host reads back are exactly the f32 computed here.

struct Params {
    n: u32,       // elements to write
    seed_lo: u32,
    seed_hi: u32,
    off_lo: u32,  // offset in blocks of 4 elements
    off_hi: u32,
    mean: f32,    // normal only
    std_: f32,    // normal only
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
// rng_uniform / rng_normal: the same binding as a tensor (f32 or f16).
@group(0) @binding(1) var<storage, read_write> vals: array<vals_t>;
// philox_blocks only: rows of (ctr0, ctr1, ctr2, ctr3, key0, key1).
@group(0) @binding(2) var<storage, read> kat_in: array<u32>;

const M0: u32 = 0xD2511F53u;
const M1: u32 = 0xCD9E8D57u;
const W0: u32 = 0x9E3779B9u;
const W1: u32 = 0xBB67AE85u;
const TWO_PI: f32 = 6.283185307179586;

// High 32 bits of a 32x32 product from 16-bit halves (WGSL has no u64).
fn mulhi(a: u32, b: u32) -> u32 {
    let a0 = a & 0xFFFFu;
    let a1 = a >> 16u;
    let b0 = b & 0xFFFFu;
    let b1 = b >> 16u;
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let p11 = a1 * b1;
    // Sum of three values < 2^16 each: no overflow.
    let mid = (p00 >> 16u) + (p01 & 0xFFFFu) + (p10 & 0xFFFFu);
    return p11 + (p01 >> 16u) + (p10 >> 16u) + (mid >> 16u);
}

fn philox4x32_10(ctr_in: vec4<u32>, key_in: vec2<u32>) -> vec4<u32> {
    var c = ctr_in;
    var k = key_in;
    for (var r = 0u; r < 10u; r++) {
        if (r > 0u) {
            k = k + vec2<u32>(W0, W1);
        }
        let hi0 = mulhi(M0, c.x);
        let lo0 = M0 * c.x;
        let hi1 = mulhi(M1, c.z);
        let lo1 = M1 * c.z;
        c = vec4<u32>(hi1 ^ c.y ^ k.x, lo1, hi0 ^ c.w ^ k.y, lo0);
    }
    return c;
}

// Top 23 bits -> (2j+1) * 2^-24: exact in f32, in [2^-24, 1 - 2^-24].
fn to_uniform(x: u32) -> f32 {
    return f32(x >> 9u) * (1.0 / 8388608.0) + (1.0 / 16777216.0);
}

// ln(u) with small *relative* error on all of (0, 1). The builtin log is
// only absolutely accurate near 1 (Vulkan: 2^-21), which would wreck
// r = sqrt(-2 ln u) when u -> 1 and r -> 0. For u > 1/2 use
// ln(1 - v) = -2 atanh(s), s = v / (2 - v) <= 1/3, with v = 1 - u exact.
fn ln_uniform(u: f32) -> f32 {
    if (u <= 0.5) {
        return log(u);
    }
    let v = 1.0 - u;
    let s = v / (2.0 - v);
    let s2 = s * s;
    // atanh(s) = s (1 + s2/3 + s2^2/5 + ...); s2 <= 1/9, 9 terms reach 1e-9.
    var acc = 1.0 / 19.0;
    for (var j = 8; j >= 0; j--) {
        acc = acc * s2 + 1.0 / f32(2 * j + 1);
    }
    return -2.0 * s * acc;
}

fn block_bits(q: u32) -> vec4<u32> {
    // 64-bit block index offset + q with carry.
    let lo = p.off_lo + q;
    let hi = p.off_hi + select(0u, 1u, lo < q);
    return philox4x32_10(vec4<u32>(lo, hi, 0u, 0u), vec2<u32>(p.seed_lo, p.seed_hi));
}

@compute @workgroup_size(WG)
fn rng_uniform(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let q = flat(wid, nwg, lid);
    if (q >= (p.n + 3u) / 4u) { return; }
    let r = block_bits(q);
    let u = vec4<f32>(to_uniform(r.x), to_uniform(r.y), to_uniform(r.z), to_uniform(r.w));
    for (var j = 0u; j < 4u; j++) {
        let i = q * 4u + j;
        if (i < p.n) {
            vals[i] = vals_t(u[j]);
        }
    }
}

// (cos 2 pi u, sin 2 pi u) for u in (0, 1), accurate to about 1 ulp on any
// GPU (builtin sin/cos may be off by 2^-11 under Vulkan rules). Quadrant
// q = round(4u); f = u - q/4 is exact and |f| <= 1/8, so x = 2 pi f lies in
// [-pi/4, pi/4] where short Taylor series are below f32 rounding.
fn cos_sin_2pi(u: f32) -> vec2<f32> {
    let q = round(4.0 * u);
    let x = TWO_PI * (u - 0.25 * q);
    let x2 = x * x;
    let sn = x * (1.0 + x2 * (-1.0 / 6.0 + x2 * (1.0 / 120.0 + x2 * (-1.0 / 5040.0 + x2 * (1.0 / 362880.0)))));
    let cs = 1.0 + x2 * (-0.5 + x2 * (1.0 / 24.0 + x2 * (-1.0 / 720.0 + x2 * (1.0 / 40320.0 + x2 * (-1.0 / 3628800.0)))));
    switch (u32(q) & 3u) {
        case 0u: { return vec2<f32>(cs, sn); }
        case 1u: { return vec2<f32>(-sn, cs); }
        case 2u: { return vec2<f32>(-cs, -sn); }
        default: { return vec2<f32>(sn, -cs); }
    }
}

// Box-Muller on word pairs (0,1) and (2,3) of each block:
//   z0 = r(u0) cos(2 pi u1), z1 = r(u0) sin(2 pi u1), r(u) = sqrt(-2 ln u),
// likewise z2, z3 from (u2, u3).
@compute @workgroup_size(WG)
fn rng_normal(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let q = flat(wid, nwg, lid);
    if (q >= (p.n + 3u) / 4u) { return; }
    let r = block_bits(q);
    let ra = sqrt(-2.0 * ln_uniform(to_uniform(r.x)));
    let rb = sqrt(-2.0 * ln_uniform(to_uniform(r.z)));
    let z = vec4<f32>(ra * cos_sin_2pi(to_uniform(r.y)), rb * cos_sin_2pi(to_uniform(r.w)));
    for (var j = 0u; j < 4u; j++) {
        let i = q * 4u + j;
        if (i < p.n) {
            vals[i] = vals_t(p.mean + p.std_ * z[j]);
        }
    }
}

// Raw Philox on caller-given (counter, key) rows, for known-answer tests.
// p.n = number of rows; out gets 4 words per row.
@compute @workgroup_size(WG)
fn philox_blocks(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let row = flat(wid, nwg, lid);
    if (row >= p.n) { return; }
    let b = row * 6u;
    let c = vec4<u32>(kat_in[b], kat_in[b + 1u], kat_in[b + 2u], kat_in[b + 3u]);
    let k = vec2<u32>(kat_in[b + 4u], kat_in[b + 5u]);
    let r = philox4x32_10(c, k);
    out[row * 4u] = r.x;
    out[row * 4u + 1u] = r.y;
    out[row * 4u + 2u] = r.z;
    out[row * 4u + 3u] = r.w;
}
