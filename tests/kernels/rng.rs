use crate::common::*;
use wgsr::ops::rng::{self, host_normal, host_uniform, philox4x32_10, word_to_uniform, Philox};
use wgsr::{Shape, Tensor};

// Random123 tests/kat_vectors, the three "philox4x32 10" lines
// (columns: counter[4], key[2], expected[4]; all hex u32).
const KAT: [([u32; 4], [u32; 2], [u32; 4]); 3] = [
    ([0, 0, 0, 0], [0, 0], [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]),
    (
        [0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff],
        [0xffffffff, 0xffffffff],
        [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd],
    ),
    (
        [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
        [0xa4093822, 0x299f31d0],
        [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1],
    ),
];

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn gpu_uniform(shape: Shape, seed: u64, offset: u64) -> Vec<f32> {
    let out = poisoned(shape);
    run_and_read(rng::uniform(ctx(), &out, seed, offset).unwrap(), &out)
}

fn gpu_normal(shape: Shape, seed: u64, offset: u64, mean: f32, std: f32) -> Vec<f32> {
    let out = poisoned(shape);
    run_and_read(rng::normal(ctx(), &out, seed, offset, mean, std).unwrap(), &out)
}

#[test]
fn philox_known_answers_host() {
    for (ctr, key, want) in KAT {
        assert_eq!(philox4x32_10(ctr, key), want, "philox4x32_10({ctr:08x?}, {key:08x?})");
    }
    // The stream's block 0 for seed 0 is the all-zero vector.
    assert_eq!(Philox::new(0).block(0), KAT[0].2);
    println!("max_err rng.philox_kat_host: exact (n=3)");
}

#[test]
fn philox_known_answers_gpu() {
    // The KAT rows plus random rows (more than one workgroup, partial last one),
    // checked against the host implementation; the KAT rows also against the table.
    let mut r = Rng::new(11);
    let mut rows: Vec<([u32; 4], [u32; 2])> = KAT.iter().map(|(c, k, _)| (*c, *k)).collect();
    for _ in 0..300 {
        let c = [r.next_u64() as u32, r.next_u64() as u32, r.next_u64() as u32, r.next_u64() as u32];
        let k = [r.next_u64() as u32, r.next_u64() as u32];
        rows.push((c, k));
    }
    let input: Vec<f32> = rows.iter().flat_map(|(c, k)| c.iter().chain(k.iter()).map(|&w| f32::from_bits(w))).collect();
    let inp = Tensor::from_slice(ctx(), Shape::new(1, 1, rows.len(), 6), &input).unwrap();
    let out = poisoned(Shape::new(1, 1, rows.len(), 4));
    let got = bits(&run_and_read(rng::philox_blocks(ctx(), &inp, &out).unwrap(), &out));
    for (i, (c, k)) in rows.iter().enumerate() {
        let want = philox4x32_10(*c, *k);
        assert_eq!(&got[4 * i..4 * i + 4], &want, "GPU philox row {i}: counter {c:08x?} key {k:08x?}");
        if i < KAT.len() {
            assert_eq!(want, KAT[i].2);
        }
    }
    println!("max_err rng.philox_kat_gpu: exact (n={})", rows.len());
}

#[test]
fn uniform_mapping_edges() {
    assert_eq!(word_to_uniform(0), 2f32.powi(-24));
    assert_eq!(word_to_uniform(u32::MAX), 1.0 - 2f32.powi(-24));
    assert!(word_to_uniform(u32::MAX) < 1.0);
    // Monotone in the top 23 bits, blind to the low 9.
    assert_eq!(word_to_uniform(0x1FF), word_to_uniform(0));
    assert!(word_to_uniform(0x200) > word_to_uniform(0x1FF));
}

#[test]
fn uniform_gpu_is_bit_identical_to_host() {
    // 210 elements: not a multiple of 4 (partial last block) nor of 256.
    let s = Shape::new(2, 3, 7, 5);
    let cases = [
        (0u64, 0u64),
        (42, 7),
        (0xDEAD_BEEF_0123_4567, 0xFFFF_FFFE), // offset crosses the u32 carry inside the tensor
        (u64::MAX, u64::MAX - 3),             // block index wraps around u64
    ];
    for (seed, offset) in cases {
        let got = gpu_uniform(s, seed, offset);
        let want = host_uniform(seed, offset, s.numel());
        assert_eq!(bits(&got), bits(&want), "uniform stream seed {seed:#x} offset {offset:#x}");
        assert!(got.iter().all(|&u| u > 0.0 && u < 1.0));
    }
    println!("max_err rng.uniform_vs_host: exact (n={} x {})", s.numel(), cases.len());
}

#[test]
fn uniform_and_normal_statistics() {
    // 1e5 samples; bounds are 5 standard errors of each estimator, and the
    // seeds are fixed, so this is deterministic and not flaky.
    let s = Shape::new(1, 1, 250, 400);
    let n = s.numel() as f64;

    let u: Vec<f64> = gpu_uniform(s, 1234, 0).iter().map(|&v| v as f64).collect();
    let mean = u.iter().sum::<f64>() / n;
    let var = u.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    println!("uniform: mean {mean:.5} var {var:.5}");
    assert!((mean - 0.5).abs() < 5.0 * (1.0 / 12.0 / n).sqrt(), "uniform mean {mean}");
    // Var of the sample variance of U(0,1) is (1/80 - 1/144) / n.
    assert!((var - 1.0 / 12.0).abs() < 5.0 * ((1.0 / 80.0 - 1.0 / 144.0) / n).sqrt(), "uniform var {var}");

    let z: Vec<f64> = gpu_normal(s, 99, 5, 0.0, 1.0).iter().map(|&v| v as f64).collect();
    let mean = z.iter().sum::<f64>() / n;
    let var = z.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let frac_1sd = z.iter().filter(|v| v.abs() < 1.0).count() as f64 / n;
    println!("normal: mean {mean:.5} var {var:.5} P(|z|<1) {frac_1sd:.5}");
    assert!(mean.abs() < 5.0 / n.sqrt(), "normal mean {mean}");
    assert!((var - 1.0).abs() < 5.0 * (2.0 / n).sqrt(), "normal var {var}");
    let p1 = 0.682_689_492_137_085_9;
    assert!((frac_1sd - p1).abs() < 5.0 * (p1 * (1.0 - p1) / n).sqrt(), "P(|z|<1) = {frac_1sd}");
    // Box-Muller with u >= 2^-24 bounds |z| by sqrt(48 ln 2).
    assert!(z.iter().all(|v| v.abs() <= (48.0f64 * 2f64.ln()).sqrt() + 1e-5));
}

#[test]
fn normal_gpu_matches_host() {
    // Tolerance: the host evaluates ln/sqrt/cos/sin in f64 on the same f32
    // uniforms and angle, so the difference is the GPU's f32 transcendentals:
    // |z| <= 5.8, so a few ulp of f32 at that magnitude is ~1e-6.
    let s = Shape::new(1, 1, 250, 400);
    let got = gpu_normal(s, 99, 5, 0.0, 1.0);
    let want: Vec<f64> = host_normal(99, 5, s.numel(), 0.0, 1.0).iter().map(|&v| v as f64).collect();
    assert_close("rng.normal_vs_host", &got, &want, 1e-6, 0.0);

    // Mean / std applied; odd size so the last block is partial. Errors scale with std.
    let s = Shape::new(2, 3, 5, 7);
    let got = gpu_normal(s, 0xABCD_EF01_2345, 1 << 33, 0.5, 2.0);
    let want: Vec<f64> =
        host_normal(0xABCD_EF01_2345, 1 << 33, s.numel(), 0.5, 2.0).iter().map(|&v| v as f64).collect();
    assert_close("rng.normal_mean_std_vs_host", &got, &want, 2e-6, 0.0);
}

#[test]
fn seeds_and_offsets_select_streams() {
    let s = Shape::new(1, 1, 8, 13); // 104 elements
    let base = gpu_uniform(s, 7, 0);
    let same = |a: &[f32], b: &[f32]| a.iter().zip(b).filter(|(x, y)| x == y).count();

    // offset k continues the stream: stream(seed, k) == stream(seed, 0)[4k..].
    for k in [1u64, 3, 25] {
        let cont = gpu_uniform(s, 7, k);
        let skip = 4 * k as usize;
        assert_eq!(bits(&cont[..s.numel() - skip]), bits(&base[skip..]), "uniform offset {k}");
    }
    let zb = gpu_normal(s, 7, 0, 0.0, 1.0);
    let zc = gpu_normal(s, 7, 2, 0.0, 1.0);
    assert_eq!(bits(&zc[..s.numel() - 8]), bits(&zb[8..]), "normal offset 2");

    // Different seeds / offsets give unrelated streams (24-bit values: a
    // coincidence is ~1e-5 per element).
    let other_seed = gpu_uniform(s, 8, 0);
    let high_seed = gpu_uniform(s, 7 | (1 << 40), 0);
    let other_off = gpu_uniform(s, 7, 1 << 40);
    for (name, v) in [("seed 8", &other_seed), ("seed 7|2^40", &high_seed), ("offset 2^40", &other_off)] {
        assert!(same(&base, v) <= 1, "{name} repeats the base stream");
    }
}

#[test]
fn set_stream_rewrites_a_prepared_dispatch() {
    let s = Shape::new(1, 2, 3, 11);
    let out = poisoned(s);
    let d = rng::normal(ctx(), &out, 1, 0, -1.0, 0.5).unwrap();
    ctx().run(std::slice::from_ref(&d)).unwrap();
    let first = out.to_vec(ctx()).unwrap();
    rng::set_stream(ctx(), &d, 0x1234_5678_9ABC, 77).unwrap();
    ctx().run(std::slice::from_ref(&d)).unwrap();
    let second = out.to_vec(ctx()).unwrap();
    let to64 = |v: Vec<f32>| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
    assert_close("rng.set_stream_before", &first, &to64(host_normal(1, 0, s.numel(), -1.0, 0.5)), 1e-6, 0.0);
    assert_close(
        "rng.set_stream_after",
        &second,
        &to64(host_normal(0x1234_5678_9ABC, 77, s.numel(), -1.0, 0.5)),
        1e-6,
        0.0,
    );
}

#[test]
fn bad_arguments_are_errors() {
    let c = ctx();
    let out = Tensor::empty(c, Shape::new(1, 1, 2, 3)).unwrap();
    assert!(rng::normal(c, &out, 0, 0, 0.0, f32::NAN).is_err());
    assert!(rng::normal(c, &out, 0, 0, f32::INFINITY, 1.0).is_err());
    let inp = Tensor::empty(c, Shape::new(1, 1, 2, 5)).unwrap();
    let err = rng::philox_blocks(c, &inp, &out).unwrap_err().to_string();
    assert!(err.contains("philox_blocks"), "{err}");
    let inp = Tensor::empty(c, Shape::new(1, 1, 2, 6)).unwrap();
    assert!(rng::philox_blocks(c, &inp, &out).is_err()); // out has 6 words, needs 8
                                                         // set_stream refuses a dispatch of another family.
    let x = Tensor::empty(c, Shape::new(1, 1, 2, 4)).unwrap();
    let y = Tensor::empty(c, Shape::new(1, 1, 2, 4)).unwrap();
    let d = wgsr::ops::elementwise::affine(c, &x, &y, 1.0, 0.0).unwrap();
    assert!(rng::set_stream(c, &d, 0, 0).is_err());
}
