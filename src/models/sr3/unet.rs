//! The SR3 U-Net as graph nodes (tools/SR3.md section 2; weight names are the
//! reference keys without `denoise_fn.`). Every weight is fetched with its
//! expected shape first, so a missing or mis-shaped tensor is reported by
//! name before any GPU work.

use crate::graph::ops::conv::Conv;
use crate::graph::{GraphBuilder, TensorId};
use crate::models::sr3::config::UNetConfig;
use crate::ops::conv::Activation;
use crate::weights::HostTensor;
use crate::Result;

/// Sinusoidal noise-level encoding (B x C0, row per sample), in f32 as the
/// reference: `f_k = exp(-ln(1e4) * k / count)`, `[sin(l f_k).., cos(l f_k)..]`.
pub fn noise_level_encoding(levels: &[f32], dim: usize) -> Vec<f32> {
    let count = dim / 2;
    let ln1e4 = 1e4f64.ln() as f32;
    let freqs: Vec<f32> = (0..count).map(|k| (-ln1e4 * (k as f32 / count as f32)).exp()).collect();
    let mut out = Vec::with_capacity(levels.len() * dim);
    for &l in levels {
        out.extend(freqs.iter().map(|f| (l * f).sin()));
        out.extend(freqs.iter().map(|f| (l * f).cos()));
    }
    out
}

/// Check that `key` exists with `shape` (clear error naming both otherwise).
fn expect(g: &GraphBuilder, node: &str, key: &str, shape: &[usize]) -> Result<()> {
    g.weight(node, key, Some(shape)).map(|_| ())
}

/// A conv over the channel parts `x` of its input (`conv2d_cat`; one part is a plain conv).
fn conv(g: &mut GraphBuilder, x: &[TensorId], prefix: &str, cin: usize, cout: usize, k: usize, c: Conv) -> Result<TensorId> {
    expect(g, prefix, &format!("{prefix}.weight"), &[cout, cin, k, k])?;
    expect(g, prefix, &format!("{prefix}.bias"), &[cout])?;
    g.conv2d_cat(prefix, x, prefix, c)
}

struct Ctx {
    groups: usize,
    eps: f32,
    c0: usize,
    /// The noise embedding t [B, C0, 1, 1].
    t: TensorId,
}

/// ResnetBlock at `{p}.res_block` on the channel parts `x` of its input
/// (the up path's cat(h, skip): GroupNorm, block1's conv and res_conv read
/// the parts, so the concatenation is never built), then SelfAttention at
/// `{p}.attn` if `attn`.
fn resnet_attn(g: &mut GraphBuilder, k: &Ctx, x: &[TensorId], p: &str, cin: usize, cout: usize, attn: bool) -> Result<TensorId> {
    let r = format!("{p}.res_block");
    let h = g.group_norm_cat(&format!("{r}.block1.norm"), x, &format!("{r}.block1.block.0"), k.groups, k.eps, true)?;
    let nf = format!("{r}.noise_func.noise_func.0");
    expect(g, &nf, &format!("{nf}.weight"), &[cout, k.c0])?;
    expect(g, &nf, &format!("{nf}.bias"), &[cout])?;
    let bias = g.linear(&nf, k.t, &nf)?;
    // block1's conv + noise_func(t): a Winograd conv adds it in its output
    // transform, a direct one is followed by an add_channel_bias node.
    let c1 = format!("{r}.block1.block.3");
    expect(g, &c1, &format!("{c1}.weight"), &[cout, cin, 3, 3])?;
    expect(g, &c1, &format!("{c1}.bias"), &[cout])?;
    let h = g.conv2d_cat_channel_bias(&c1, &h, &c1, Conv::same(3), bias)?;
    let h = g.group_norm(&format!("{r}.block2.norm"), h, &format!("{r}.block2.block.0"), k.groups, k.eps, true)?;
    let skip = match x {
        _ if cin != cout => conv(g, x, &format!("{r}.res_conv"), cin, cout, 1, Conv::same(1))?,
        [x] => *x,
        // The identity skip of a concatenation (no SR3 config has one) needs the tensor.
        _ => g.concat(&format!("{p}.cat"), x)?,
    };
    let mut out = conv(g, &[h], &format!("{r}.block2.block.3"), cout, cout, 3, Conv::same(3).residual(skip, 1.0, 1.0))?;
    if attn {
        let a = format!("{p}.attn");
        let n = g.group_norm(&format!("{a}.norm"), out, &format!("{a}.norm"), k.groups, k.eps, false)?;
        expect(g, &a, &format!("{a}.qkv.weight"), &[3 * cout, cout, 1, 1])?;
        let qkv = g.conv2d(&format!("{a}.qkv"), n, &format!("{a}.qkv"), Conv::same(1).no_bias())?;
        let o = g.attention(&format!("{a}.core"), qkv, 1)?;
        out = conv(g, &[o], &format!("{a}.out"), cout, cout, 1, Conv::same(1).residual(out, 1.0, 1.0))?;
    }
    Ok(out)
}

/// Add the U-Net: `x` = the channel parts of its [B, in_channel, H, W]
/// input (cat(cond, y_t), read by the first conv as parts, never
/// concatenated), `pos_enc` [B, C0, 1, 1] = [`noise_level_encoding`];
/// returns eps [B, out_channel, H, W].
pub fn build_unet(g: &mut GraphBuilder, cfg: &UNetConfig, x: &[TensorId], pos_enc: TensorId) -> Result<TensorId> {
    let c0 = cfg.inner_channel;
    // Noise MLP: Linear -> Swish -> Linear. The first Linear runs as a 1x1
    // conv on [B, C0, 1, 1] so Swish fuses into its epilogue.
    let (w1, b1) = ("noise_level_mlp.1.weight", "noise_level_mlp.1.bias");
    let w = g.weight("noise_level_mlp.1", w1, Some(&[4 * c0, c0]))?;
    let b = g.weight("noise_level_mlp.1", b1, Some(&[4 * c0]))?;
    let w4 = HostTensor::new(vec![4 * c0, c0, 1, 1], w.data.clone())?;
    let h = g.conv2d_with("noise_level_mlp.1", pos_enc, &w4, Some(&b.data), None, Conv::same(1).act(Activation::Swish))?;
    expect(g, "noise_level_mlp.3", "noise_level_mlp.3.weight", &[c0, 4 * c0])?;
    expect(g, "noise_level_mlp.3", "noise_level_mlp.3.bias", &[c0])?;
    let t = g.linear("noise_level_mlp.3", h, "noise_level_mlp.3")?;
    let k = Ctx { groups: cfg.norm_groups, eps: cfg.group_norm_eps, c0, t };

    let levels = cfg.channel_multiplier.len();
    let mut skips: Vec<(TensorId, usize)> = Vec::new();
    let mut h = conv(g, x, "downs.0", cfg.in_channel, c0, 3, Conv::same(3))?;
    skips.push((h, c0));
    let mut ch = c0;
    let mut res = cfg.image_size;
    let mut idx = 1;
    for (l, &m) in cfg.channel_multiplier.iter().enumerate() {
        let out = c0 * m;
        for _ in 0..cfg.res_blocks {
            h = resnet_attn(g, &k, &[h], &format!("downs.{idx}"), ch, out, cfg.attn_res.contains(&res))?;
            ch = out;
            skips.push((h, ch));
            idx += 1;
        }
        if l + 1 < levels {
            h = conv(g, &[h], &format!("downs.{idx}.conv"), ch, ch, 3, Conv::new(2, 1))?;
            skips.push((h, ch));
            idx += 1;
            res /= 2;
        }
    }
    h = resnet_attn(g, &k, &[h], "mid.0", ch, ch, true)?;
    h = resnet_attn(g, &k, &[h], "mid.1", ch, ch, false)?;
    let mut idx = 0;
    for l in (0..levels).rev() {
        let out = c0 * cfg.channel_multiplier[l];
        for _ in 0..=cfg.res_blocks {
            let (s, sc) = skips.pop().expect("the down path pushes one skip per up-path block");
            let p = format!("ups.{idx}");
            h = resnet_attn(g, &k, &[h, s], &p, ch + sc, out, cfg.attn_res.contains(&res))?;
            ch = out;
            idx += 1;
        }
        if l > 0 {
            let p = format!("ups.{idx}");
            let up = g.upsample_nearest(&format!("{p}.up"), h, 2)?;
            h = conv(g, &[up], &format!("{p}.conv"), ch, ch, 3, Conv::same(3))?;
            idx += 1;
            res *= 2;
        }
    }
    let h = g.group_norm("final_conv.norm", h, "final_conv.block.0", k.groups, k.eps, true)?;
    conv(g, &[h], "final_conv.block.3", ch, cfg.out_channel, 3, Conv::same(3))
}
