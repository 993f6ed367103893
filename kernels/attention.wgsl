#import prelude

// Row softmax for self-attention scores, in place: s[r, :] = softmax(s[r, :]).
// The scores come scaled from the QK^T matmul (matmul.wgsl); attention.rs
// chains matmul -> softmax_rows -> matmul.
//
// One workgroup per row (grid split over x and y, see grid_1d): a max pass,
// a sum-of-exp pass and a write pass, each a strided loop plus a fixed-order
// tree reduction in shared memory (the prelude's wg_max / wg_sum), so
// results are deterministic.

struct SoftmaxParams {
    rows: u32,
    cols: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: SoftmaxParams;
@group(0) @binding(1) var<storage, read_write> s: array<f32>;

@compute @workgroup_size(WG)
fn softmax_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let row = wg_index(wid, nwg);
    // Workgroup-uniform exit, so the barriers below stay in uniform control flow.
    if (row >= p.rows) {
        return;
    }
    let base = row * p.cols;

    var m = -3.0e38;
    for (var j = lid; j < p.cols; j += WG) {
        m = max(m, s[base + j]);
    }
    let row_max = wg_max(lid, m);

    var sum = 0.0;
    for (var j = lid; j < p.cols; j += WG) {
        sum += exp(s[base + j] - row_max);
    }
    // The max element contributes exp(0) = 1, so the sum is >= 1.
    let inv = 1.0 / wg_sum(lid, sum);

    for (var j = lid; j < p.cols; j += WG) {
        s[base + j] = exp(s[base + j] - row_max) * inv;
    }
}
