//! Official HCFlow architectures from their key manifests
//! (tests/fixtures/hcflow_full_manifests) with random weights: shared by
//! tests/hcflow.rs and benches/hcflow.rs.

use wgsr::weights::{HostTensor, WeightStore};

/// (config, [(key, shape)] in state_dict order, parameter count) of `name`.
pub fn manifest(name: &str) -> (serde_json::Value, Vec<(String, Vec<usize>)>, u64) {
    let path = format!("{}/tests/fixtures/hcflow_full_manifests/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let keys = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e[0].as_str().unwrap().to_string(), e[1].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect()))
        .collect();
    (v["config"].clone(), keys, v["param_count"].as_u64().unwrap())
}

/// Random weights for `keys`: small fan-in-scaled convs, identity-ish
/// invertible 1x1 convs, small log-scales, the fixed Haar filters.
pub fn random_weights(keys: &[(String, Vec<usize>)], seed: u64) -> WeightStore {
    // xorshift64 uniform in [-a, a)
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = |a: f64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (((state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0) as f32 * a as f32
    };
    let mut ws = WeightStore::new();
    for (k, shape) in keys {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = if k.ends_with("haar_weights") {
            let bands = [[1., 1., 1., 1.], [1., -1., 1., -1.], [1., 1., -1., -1.], [1., -1., -1., 1.]];
            (0..n).map(|i| bands[(i / 4) % 4][i % 4]).collect()
        } else if k.ends_with("permute.weight") {
            let c = shape[0];
            (0..n).map(|i| if i / c == i % c { 1.0 } else { 0.0 } + next(0.05)).collect()
        } else if k.ends_with(".logs") {
            (0..n).map(|_| next(0.05)).collect()
        } else {
            let fan_in: usize = shape.iter().skip(1).product::<usize>().max(1);
            let a = 0.5 / (fan_in as f64).sqrt();
            (0..n).map(|_| next(a)).collect()
        };
        ws.insert(k.clone(), HostTensor::new(shape.clone(), data).unwrap());
    }
    ws
}
