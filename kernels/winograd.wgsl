#import prelude

// Winograd F(WM x WM, 3 x 3) for 3x3 stride-1 convolutions, WM = 2, 4 or 6
// (input tile NA = WM + 2). A conv is three dispatches (src/ops/winograd.rs):
//
//   wino_input   V[a][b][c][t] = (B^T d_{c,t} B)[a][b]   per input channel c and
//                tile t (d = the NA x NA input patch, zero outside the image)
//   gemm         M[a][b] = U[a][b] V[a][b]               NA*NA GEMMs over the
//                channels (ops::matmul), U = G g G^T done once at load
//   wino_output  y = alpha * act((A^T M A + bias) * scale) + beta * res
//
// F(4x4) uses the points 0, +-1, +-2 (Lavin & Gray); F(2x2) the points 0, +-1;
// F(6x6) the points 0, +-1, +-2, +-1/2 (8-point functions bt8 / at8; the
// scalar entries take any tile through bt_line / at_line).
// The 1-D transforms are written out so no multiplication by a zero matrix
// entry is left for the compiler (llvmpipe cannot drop x * 0 under IEEE rules).
// One thread per (channel, tile); consecutive threads take consecutive tiles,
// so the V / M rows they read and write are contiguous.
//
// Layout of V and M: blocks of BLK tiles (vm_base), row r of tile t at
// ((t / BLK) * ROWS + r) * BLK + t % BLK, ROWS = NA*NA * channels: the
// GEMM's NCHW view [blocks, ROWS, 1, BLK]. A GEMM workgroup's 16 columns are
// then one contiguous run of its k rows instead of a row stride of 4T bytes:
// at 1024 tiles that stride is 4 KiB, every k step a new page with no
// prefetch across it, and the narrow GEMM ran at half the speed (1x1 64->64
// over 16384 columns, paired on lavapipe: 9.9 -> 5.0 ms on Mesa 22.3, 6.7
// -> 3.7 ms on 25.0). Tiles past T up to the padded count are zero.

struct Params {
    c: u32,       // wino_input: channels of this input; wino_output: output channels
    h: u32,       // wino_input: input height; wino_output: output height
    w: u32,       // same for width
    th: u32,      // tiles along y (per image)
    tw: u32,      // tiles along x
    tiles: u32,   // T = batch * th * tw (columns of V and M)
    tiles_p: u32, // T rounded up to whole blocks (the padding tiles are zero in V)
    blk: u32,     // tiles per block (see the layout above)
    ctot: u32,    // wino_input: channels of V (all inputs); wino_output: rows of M per group (c rounded up to 4)
    c_off: u32,   // wino_input: this input's first channel in V
    pad: i32,     // wino_input: zero padding of the convolution
    alpha: f32,
    beta: f32,
    slope: f32,   // LeakyReLU negative slope
}

// Each entry uses its own bindings (the others get placeholders): the conv's
// input, residual and output are activations (`act`), V and M are f32 scratch
// in every storage variant, so the GEMM between them accumulates in f32 and
// nothing is rounded to f16 between the three stages.
@group(0) @binding(0) var<uniform> p: Params;
// wino_input: the input part.
@group(0) @binding(1) var<storage, read> x: array<x_t>;
// wino_output: bias[0..c] then scale[c..2c].
@group(0) @binding(2) var<storage, read> epi: array<f32>;
// wino_output: the residual (HAS_RES).
@group(0) @binding(3) var<storage, read> res: array<res_t>;
// wino_output: the conv's output.
@group(0) @binding(4) var<storage, read_write> y: array<y_t>;
// wino_input writes V here; wino_output reads M from here.
@group(0) @binding(5) var<storage, read_write> vm: array<f32>;
// x and V again as vec4s, for wino_input with TV (placeholders in wino_output).
@group(0) @binding(6) var<storage, read> x4: array<vec4<x4_t>>;
@group(0) @binding(7) var<storage, read_write> vm4: array<vec4<f32>>;

override WM: u32 = 4u;
override ACT: u32 = ACT_NONE;
override HAS_RES: bool = false;
// wino_output: the residual holds one value per (sample, channel), [N, C, 1, 1]
// (SR3's time-embedding add, folded into the conv: one pass over the output
// fewer), added to every pixel of the channel.
override RES_CHAN: bool = false;

override NA: u32 = WM + 2u;
// TV (wino_input, F(4x4) only, padding 1, image width a multiple of 16): a
// thread takes four consecutive tiles of one tile row, so its input rows and
// its V entries are whole vec4s. On llvmpipe every load or store whose
// address differs per lane is a loop over the lanes, and a vec4 costs one
// loop instead of four: 36 + 36 loops per four tiles instead of 144 + 144.
// Same arithmetic in the same order as one tile per thread, so the same
// bits. Measured on lavapipe: 1.2-1.5x on the transform (paired shares of
// copy bandwidth 13-15% -> 18-22%). The same layout in wino_output (36 vec4
// loads and 16 vec4 stores per four tiles) measured no faster, so it stays
// one tile per thread.
override TV: bool = false;

// B^T d for one line of NA inputs (entries past NA unused).
fn bt(d: array<f32, 6>) -> array<f32, 6> {
    var r: array<f32, 6>;
    if (WM == 2u) {
        r[0] = d[0] - d[2];
        r[1] = d[1] + d[2];
        r[2] = d[2] - d[1];
        r[3] = d[1] - d[3];
        return r;
    }
    r[0] = 4.0 * d[0] - 5.0 * d[2] + d[4];
    r[1] = d[3] + d[4] - 4.0 * (d[1] + d[2]);
    r[2] = 4.0 * (d[1] - d[2]) + d[4] - d[3];
    r[3] = 2.0 * (d[3] - d[1]) + d[4] - d[2];
    r[4] = 2.0 * (d[1] - d[3]) + d[4] - d[2];
    r[5] = 4.0 * d[1] - 5.0 * d[3] + d[5];
    return r;
}

// A^T m for one line of NA values -> WM outputs.
fn at(m: array<f32, 6>) -> array<f32, 4> {
    var o: array<f32, 4>;
    if (WM == 2u) {
        o[0] = m[0] + m[1] + m[2];
        o[1] = m[1] - m[2] - m[3];
        return o;
    }
    let s12 = m[1] + m[2];
    let d12 = m[1] - m[2];
    let s34 = m[3] + m[4];
    let d34 = m[3] - m[4];
    o[0] = m[0] + s12 + s34;
    o[1] = d12 + 2.0 * d34;
    o[2] = s12 + 4.0 * s34;
    o[3] = d12 + 8.0 * d34 + m[5];
    return o;
}

// B^T d for F(6x6): 8 inputs -> 8, factored as pairs so no entry is a
// multiplication by zero (rows of B^T: 1 0 -21/4 0 21/4 0 -1 0 etc.).
fn bt8(d: array<f32, 8>) -> array<f32, 8> {
    var r: array<f32, 8>;
    r[0] = d[0] - d[6] + 5.25 * (d[4] - d[2]);
    r[7] = d[7] - d[1] + 5.25 * (d[3] - d[5]);
    let p1 = d[2] + d[6] - 4.25 * d[4];
    let q1 = d[1] + d[5] - 4.25 * d[3];
    r[1] = p1 + q1;
    r[2] = p1 - q1;
    let p2 = 0.25 * d[2] - 1.25 * d[4] + d[6];
    let q2 = 0.5 * d[1] - 2.5 * d[3] + 2.0 * d[5];
    r[3] = p2 + q2;
    r[4] = p2 - q2;
    let p3 = 4.0 * d[2] - 5.0 * d[4] + d[6];
    let q3 = 2.0 * d[1] - 2.5 * d[3] + 0.5 * d[5];
    r[5] = p3 + q3;
    r[6] = p3 - q3;
    return r;
}

// A^T m for F(6x6): 8 values -> 6 outputs.
fn at8(m: array<f32, 8>) -> array<f32, 6> {
    var o: array<f32, 6>;
    let s12 = m[1] + m[2];
    let d12 = m[1] - m[2];
    let s34 = m[3] + m[4];
    let d34 = m[3] - m[4];
    let s56 = m[5] + m[6];
    let d56 = m[5] - m[6];
    o[0] = m[0] + s12 + s34 + s56;
    o[1] = d12 + 2.0 * d34 + 0.5 * d56;
    o[2] = s12 + 4.0 * s34 + 0.25 * s56;
    o[3] = d12 + 8.0 * d34 + 0.125 * d56;
    o[4] = s12 + 16.0 * s34 + 0.0625 * s56;
    o[5] = d12 + 32.0 * d34 + 0.03125 * d56 + m[7];
    return o;
}

struct Tile {
    b: u32,
    y0: u32,   // first output row of the tile
    x0: u32,   // first output column
}

// Index of row 0 of tile t in V or M with `rows` rows (row r is + r * blk).
fn vm_base(t: u32, rows: u32) -> u32 {
    let b = t / p.blk;
    return b * rows * p.blk + (t - b * p.blk);
}

fn tile_of(t: u32) -> Tile {
    let per = p.th * p.tw;
    let b = t / per;
    let r = t - b * per;
    let ty = r / p.tw;
    return Tile(b, ty * WM, (r - ty * p.tw) * WM);
}

// wino_input with TV: thread i takes channel ch and tiles t0..t0+3.
fn wino_input_tv(i: u32) {
    let quads = p.tiles_p / 4u;
    if (i >= p.c * quads) { return; }
    let ch = i / quads;
    let t0 = 4u * (i - ch * quads);
    // T is a multiple of 4 here, so a quad is all real tiles or all padding.
    let live = t0 < p.tiles;
    let tl = tile_of(t0);
    let w4 = p.w / 4u;
    // Pixel quad columns x0/4 - 1 .. x0/4 + 4 cover the patches' columns
    // x0 - 1 .. x0 + 16 (padding 1): pixel x0 - 4 + k is r[k].
    let base4 = (tl.b * p.c + ch) * p.h * w4;
    let iy0 = i32(tl.y0) - 1;
    let q0 = i32(tl.x0 / 4u) - 1;
    // tmp[j][a] = B^T along x of row a of tile j's patch.
    var tmp: array<array<array<f32, 6>, 6>, 4>;
    for (var a = 0u; a < 6u; a++) {
        let iy = iy0 + i32(a);
        var r: array<f32, 24>;
        for (var k = 0u; k < 6u; k++) {
            let qc = q0 + i32(k);
            let ok = live && u32(iy) < p.h && u32(qc) < w4;
            let v = select(vec4<f32>(0.0), vec4<f32>(x4[select(0u, base4 + u32(iy) * w4 + u32(qc), ok)]), ok);
            r[4u * k] = v.x;
            r[4u * k + 1u] = v.y;
            r[4u * k + 2u] = v.z;
            r[4u * k + 3u] = v.w;
        }
        for (var j = 0u; j < 4u; j++) {
            var d: array<f32, 6>;
            for (var b = 0u; b < 6u; b++) {
                d[b] = r[3u + 4u * j + b];
            }
            tmp[j][a] = bt(d);
        }
    }
    // blk is a multiple of 4 with TV (src/ops/winograd.rs), so the tile
    // quad is one aligned vec4 of each row.
    let stride4 = p.ctot * p.blk / 4u;
    let o4 = (vm_base(t0, NA * NA * p.ctot) + (p.c_off + ch) * p.blk) / 4u;
    for (var b = 0u; b < 6u; b++) {
        var v: array<array<f32, 6>, 4>;
        for (var j = 0u; j < 4u; j++) {
            var col: array<f32, 6>;
            for (var a = 0u; a < 6u; a++) {
                col[a] = tmp[j][a][b];
            }
            v[j] = bt(col);
        }
        for (var a = 0u; a < 6u; a++) {
            vm4[(a * 6u + b) * stride4 + o4] = vec4<f32>(v[0][a], v[1][a], v[2][a], v[3][a]);
        }
    }
}

// One line of the transforms in the scalar entries, for any WM: NA inputs
// (entries past NA unused) through bt8 / at8 for F(6x6), else bt / at
// (whose 6-entry arrays keep the four-tile entry's registers).
fn bt_line(d: array<f32, 8>) -> array<f32, 8> {
    if (WM == 6u) {
        return bt8(d);
    }
    let r = bt(array<f32, 6>(d[0], d[1], d[2], d[3], d[4], d[5]));
    return array<f32, 8>(r[0], r[1], r[2], r[3], r[4], r[5], 0.0, 0.0);
}

fn at_line(m: array<f32, 8>) -> array<f32, 6> {
    if (WM == 6u) {
        return at8(m);
    }
    let o = at(array<f32, 6>(m[0], m[1], m[2], m[3], m[4], m[5]));
    return array<f32, 6>(o[0], o[1], o[2], o[3], 0.0, 0.0);
}

@compute @workgroup_size(WG)
fn wino_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (TV) {
        wino_input_tv(i);
        return;
    }
    if (i >= p.c * p.tiles_p) { return; }
    let ch = i / p.tiles_p;
    let t = i - ch * p.tiles_p;
    let live = t < p.tiles;
    let tl = tile_of(t);
    let base = (tl.b * p.c + ch) * p.h * p.w;
    let iy0 = i32(tl.y0) - p.pad;
    let ix0 = i32(tl.x0) - p.pad;
    // Rows first: tmp[a] = B^T applied along x to input row a of the patch.
    var tmp: array<array<f32, 8>, 8>;
    for (var a = 0u; a < NA; a++) {
        let iy = iy0 + i32(a);
        var d: array<f32, 8>;
        for (var b = 0u; b < NA; b++) {
            let ix = ix0 + i32(b);
            // Unsigned compare also rejects negative coordinates.
            let ok = live && u32(iy) < p.h && u32(ix) < p.w;
            d[b] = select(0.0, f32(x[select(0u, base + u32(iy) * p.w + u32(ix), ok)]), ok);
        }
        tmp[a] = bt_line(d);
    }
    let stride = p.ctot * p.blk;
    let o = vm_base(t, NA * NA * p.ctot) + (p.c_off + ch) * p.blk;
    for (var b = 0u; b < NA; b++) {
        var col: array<f32, 8>;
        for (var a = 0u; a < NA; a++) {
            col[a] = tmp[a][b];
        }
        let v = bt_line(col);
        for (var a = 0u; a < NA; a++) {
            vm[(a * NA + b) * stride + o] = v[a];
        }
    }
}

@compute @workgroup_size(WG)
fn wino_output(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.c * p.tiles) { return; }
    let co = i / p.tiles;
    let t = i - co * p.tiles;
    let tl = tile_of(t);
    let stride = p.ctot * p.blk;
    let o = vm_base(t, NA * NA * p.ctot) + co * p.blk;
    // Rows first: tmp[a] = A^T applied along x to row a of M.
    var tmp: array<array<f32, 6>, 8>;
    for (var a = 0u; a < NA; a++) {
        var m: array<f32, 8>;
        for (var b = 0u; b < NA; b++) {
            m[b] = vm[(a * NA + b) * stride + o];
        }
        tmp[a] = at_line(m);
    }
    let bias = epi[co];
    let scale = epi[p.c + co];
    let base = (tl.b * p.c + co) * p.h * p.w;
    for (var j = 0u; j < WM; j++) {
        var col: array<f32, 8>;
        for (var a = 0u; a < NA; a++) {
            col[a] = tmp[a][j];
        }
        let r = at_line(col);
        let ox = tl.x0 + j;
        for (var q = 0u; q < WM; q++) {
            let oy = tl.y0 + q;
            if (oy < p.h && ox < p.w) {
                let idx = base + oy * p.w + ox;
                var v = p.alpha * apply_act(ACT, (r[q] + bias) * scale, p.slope);
                if (HAS_RES) {
                    v += p.beta * f32(res[select(idx, tl.b * p.c + co, RES_CHAN)]);
                }
                y[idx] = y_t(v);
            }
        }
    }
}
