//! Graph interpreter: whole-graph results equal op-by-op results, the memory
//! plan reuses buffers, replays with changing parameters equal fresh runs,
//! and malformed graphs are rejected with clear errors.

#[path = "kernels/common.rs"]
mod common;

use common::*;
use wgsr::gpu::{Dispatch, GpuContext};
use wgsr::graph::ops::Scalar;
use wgsr::graph::{Alias, Executor, GraphBuilder, Op, OutputSpec, ParamValues};
use wgsr::ops::{eager, elementwise as ew};
use wgsr::{Error, Result, Shape, Tensor};

const S: Shape = Shape::new(2, 3, 5, 7);

/// y = ((a + b) * 0.5 - a*b*2) clamped, through a chain with a view.
fn chain(g: &mut GraphBuilder) -> Result<()> {
    let a = g.input("a", S)?;
    let b = g.input("b", S)?;
    let s = g.add("sum", a, b)?;
    let h = g.affine("half", s, 0.5, 0.0)?;
    let p = g.mul("prod", a, b, 2.0)?;
    let d = g.axpby("diff", h, p, 1.0, -1.0)?;
    let v = g.reshape("flat", d, Shape::new(1, 1, 1, S.numel()))?;
    let c = g.clamp("clamp", v, -0.8, 0.8)?;
    g.output("y", c)
}

#[test]
fn whole_graph_equals_op_by_op() {
    let c = ctx();
    let mut rng = Rng::new(11);
    let (ta, av) = rand_tensor(&mut rng, S, -1.5, 1.5);
    let (tb, bv) = rand_tensor(&mut rng, S, -1.5, 1.5);

    let mut g = GraphBuilder::new(c);
    chain(&mut g).unwrap();
    let mut ex = Executor::new(c, g.build().unwrap()).unwrap();
    ex.set_input(c, "a", &av).unwrap();
    ex.set_input(c, "b", &bv).unwrap();
    ex.run(c).unwrap();
    let got = ex.read_output(c, "y").unwrap();

    let s = eager(c, S, |o| ew::add(c, &ta, &tb, o)).unwrap();
    let h = eager(c, S, |o| ew::affine(c, &s, o, 0.5, 0.0)).unwrap();
    let p = eager(c, S, |o| ew::mul(c, &ta, &tb, o, 2.0)).unwrap();
    let d = eager(c, S, |o| ew::axpby(c, &h, &p, o, 1.0, -1.0)).unwrap();
    let y = eager(c, S, |o| ew::clamp(c, &d, o, -0.8, 0.8)).unwrap();
    let want = y.to_vec(c).unwrap();
    assert_exact("graph.chain_vs_eager", &got, &want);
    // And both against f64.
    let reference: Vec<f64> = av
        .iter()
        .zip(&bv)
        .map(|(&x, &y)| {
            let (x, y) = (x as f64, y as f64);
            ((x + y) * 0.5 - 2.0 * x * y).clamp(-0.8, 0.8)
        })
        .collect();
    assert_close("graph.chain_vs_f64", &got, &reference, 1e-6, 1e-5);
}

#[test]
fn plan_reuses_buffers_on_a_long_chain() {
    let c = ctx();
    let mut g = GraphBuilder::new(c);
    let x = g.input("x", S).unwrap();
    let mut t = x;
    for i in 0..20 {
        t = g.affine(&format!("a{i}"), t, 1.01, 0.001).unwrap();
    }
    g.output("y", t).unwrap();
    let graph = g.build().unwrap();
    let plan = wgsr::graph::plan_memory(&graph);
    println!("{plan}");
    // 21 tensors of one size; a chain needs only 2 buffers besides the input/output overlap.
    assert_eq!(plan.no_reuse_bytes, 21 * S.bytes());
    assert!(plan.buffer_sizes.len() <= 3, "{} buffers", plan.buffer_sizes.len());
    assert!(plan.peak_bytes < plan.no_reuse_bytes);
    // Tensors that share a buffer never live at the same time: check by running.
    let mut ex = Executor::new(c, graph).unwrap();
    let mut rng = Rng::new(3);
    let xv = rng.vec(S.numel(), -1.0, 1.0);
    ex.set_input(c, "x", &xv).unwrap();
    ex.run(c).unwrap();
    let got = ex.read_output(c, "y").unwrap();
    let want: Vec<f64> = xv
        .iter()
        .map(|&v| {
            let mut v = v as f64;
            for _ in 0..20 {
                v = v * 1.01f32 as f64 + 0.001f32 as f64;
            }
            v
        })
        .collect();
    assert_close("graph.chain20", &got, &want, 1e-5, 1e-5);
}

#[test]
fn replays_with_changing_parameters_equal_fresh_runs() {
    // A context of its own: the shared one's pipeline cache grows with the
    // other tests running in parallel, which would hide what this test checks.
    let own = GpuContext::new().unwrap_or_else(|e| panic!("{e}"));
    let c = &own;
    let build = |gain: f64| {
        let mut g = GraphBuilder::new(c);
        g.param("gain", gain).unwrap();
        g.param("bias", 0.0).unwrap();
        let x = g.input("x", S).unwrap();
        let y = g.affine("scale", x, Scalar::param("gain"), Scalar::param("bias")).unwrap();
        let f = g.fill("offset", S, Scalar::param("bias")).unwrap();
        let z = g.mul("gate", y, f, Scalar::param("gain")).unwrap();
        g.output("z", z).unwrap();
        Executor::new(c, g.build().unwrap()).unwrap()
    };
    let mut ex = build(1.0);
    let pipelines_after_build = c.pipeline_count();
    let mut rng = Rng::new(5);
    for i in 0..100 {
        let gain = 0.5 + 0.01 * i as f64;
        let bias = -0.3 + 0.007 * i as f64;
        let xv = rng.vec(S.numel(), -1.0, 1.0);
        ex.set_param("gain", gain).unwrap();
        ex.set_param("bias", bias).unwrap();
        ex.set_input(c, "x", &xv).unwrap();
        ex.run(c).unwrap();
        let got = ex.read_output(c, "z").unwrap();
        let (g32, b32) = (gain as f32 as f64, bias as f32 as f64);
        let want: Vec<f64> = xv.iter().map(|&v| g32 * (g32 * v as f64 + b32) * b32).collect();
        assert!(
            got.iter().zip(&want).all(|(g, w)| ((*g as f64) - w).abs() <= 1e-6 + 1e-5 * w.abs()),
            "replay {i} differs from the reference"
        );
        if i % 25 == 0 {
            // A freshly built executor with the same values gives bit-identical output.
            let mut fresh = build(gain);
            fresh.set_param("bias", bias).unwrap();
            fresh.set_input(c, "x", &xv).unwrap();
            fresh.run(c).unwrap();
            assert_exact(&format!("graph.replay{i}_vs_fresh"), &got, &fresh.read_output(c, "z").unwrap());
        }
    }
    assert_eq!(ex.runs(), 100);
    // Replays compile nothing new (fresh builds reuse the cache too).
    assert_eq!(c.pipeline_count(), pipelines_after_build);
}

/// A test op that adds 1 in place (binds its tensor once, read-write).
struct AddOneInPlace;
impl Op for AddOneInPlace {
    fn kind(&self) -> &'static str {
        "add_one_in_place"
    }
    fn outputs(&self, inputs: &[Shape]) -> Result<Vec<OutputSpec>> {
        Ok(vec![OutputSpec { shape: inputs[0], alias: Alias::InPlace(0) }])
    }
    fn prepare(&self, _: &GpuContext, _: &[&Tensor], _: &[&Tensor], _: &ParamValues) -> Result<Vec<Dispatch>> {
        Ok(Vec::new())
    }
}

fn graph_err(f: impl FnOnce(&mut GraphBuilder) -> Result<()>) -> String {
    let mut g = GraphBuilder::new(ctx());
    let e = match f(&mut g) {
        Err(e) => e,
        Ok(()) => g.build().err().expect("malformed graph was accepted"),
    };
    assert!(matches!(e, Error::Graph(_) | Error::Shape(_) | Error::InvalidArgument(_)), "{e:?}");
    e.to_string()
}

#[test]
fn malformed_graphs_are_rejected() {
    let small = Shape::new(1, 2, 3, 3);
    let e = graph_err(|g| {
        let a = g.input("a", S)?;
        let b = g.input("b", small)?;
        g.add("bad_add", a, b)?;
        Ok(())
    });
    assert!(e.contains("bad_add") && e.contains("differ"), "{e}");

    let e = graph_err(|g| {
        g.input("a", S)?;
        g.input("a", S)?;
        Ok(())
    });
    assert!(e.contains("duplicate input"), "{e}");

    let e = graph_err(|g| {
        g.input("a", S)?;
        Ok(())
    });
    assert!(e.contains("no outputs"), "{e}");

    let e = graph_err(|g| {
        let a = g.input("a", S)?;
        g.affine("uses_undeclared", a, Scalar::param("temperature"), 0.0)?;
        Ok(())
    });
    assert!(e.contains("temperature") && e.contains("never declared"), "{e}");

    let e = graph_err(|g| {
        let a = g.input("a", S)?;
        g.reshape("bad_view", a, Shape::new(1, 1, 1, 3))?;
        Ok(())
    });
    assert!(e.contains("reshape"), "{e}");

    let e = graph_err(|g| {
        let a = g.input("a", S)?;
        let t = g.affine("t", a, 2.0, 0.0)?;
        let t2 = g.node1("bump", Box::new(AddOneInPlace), &[t])?;
        let late = g.add("reads_stale", t, t2)?;
        g.output("y", late)
    });
    assert!(e.contains("reads_stale") && e.contains("in place"), "{e}");

    let e = graph_err(|g| {
        let a = g.input("a", S)?;
        g.node1("bump_input", Box::new(AddOneInPlace), &[a])?;
        Ok(())
    });
    assert!(e.contains("graph input"), "{e}");

    let e = graph_err(|g| {
        let a = g.input("a", S)?;
        g.add("ghost", a, wgsr::graph::TensorId(99))?;
        Ok(())
    });
    assert!(e.contains("unknown tensor"), "{e}");
}

#[test]
fn executor_io_errors_dump_and_profile() {
    let c = ctx();
    let mut g = GraphBuilder::new(c);
    chain(&mut g).unwrap();
    let graph = g.build().unwrap();
    let dump = graph.dump();
    assert!(dump.contains("axpby") && dump.contains("view of input 0") && dump.contains("output"), "{dump}");
    let dot = graph.to_dot();
    assert!(dot.starts_with("digraph") && dot.contains("n0") && dot.contains("out_y"), "{dot}");
    let mut ex = Executor::new(c, graph).unwrap();
    assert!(ex.set_input(c, "nope", &[0.0]).unwrap_err().to_string().contains("inputs: a, b"));
    assert!(ex.set_input(c, "a", &[0.0; 3]).is_err());
    assert!(ex.set_param("nope", 1.0).is_err());
    assert!(ex.read_output(c, "nope").is_err());
    let prof = ex.profile(c, 3).unwrap();
    println!("{prof}");
    // 5 kernel nodes (the reshape is a view and launches nothing).
    assert_eq!(prof.rows.len(), 5);
    assert!(prof.rows.iter().all(|r| r.ms >= 0.0 && r.ms.is_finite()));
}

#[test]
fn layout_ops_in_a_graph_equal_eager_ops() {
    use wgsr::ops::reshape as rs;
    let c = ctx();
    let s = Shape::new(2, 3, 8, 12);
    let mut rng = Rng::new(21);
    let (tx, xv) = rand_tensor(&mut rng, s, -1.0, 1.0);

    let mut g = GraphBuilder::new(c);
    let x = g.input("x", s).unwrap();
    let q = g.squeeze("sq", x, 2).unwrap(); // [2,12,4,6]
    let (ev, od) = g.split_cross("cross", q).unwrap(); // [2,6,4,6] x2
    let h = g.haar_down("haar", ev).unwrap(); // [2,24,2,3]
    let cat = g.concat_upsampled("cat", od, h, 2).unwrap(); // [2,30,4,6]
    let (a, _b) = g.split_half("half", cat).unwrap(); // [2,15,4,6]
    let a2 = g.slice_channels("trim", a, 0, 1, 12).unwrap();
    let y = g.unsqueeze("unsq", a2, 2).unwrap(); // [2,3,8,12]
    g.output("y", y).unwrap();
    let mut ex = Executor::new(c, g.build().unwrap()).unwrap();
    ex.set_input(c, "x", &xv).unwrap();
    ex.run(c).unwrap();
    let got = ex.read_output(c, "y").unwrap();

    let q = eager(c, Shape::new(2, 12, 4, 6), |o| rs::squeeze(c, &tx, 2, o)).unwrap();
    let ev = eager(c, Shape::new(2, 6, 4, 6), |o| rs::slice_channels(c, &q, 0, 2, 6, o)).unwrap();
    let od = eager(c, Shape::new(2, 6, 4, 6), |o| rs::slice_channels(c, &q, 1, 2, 6, o)).unwrap();
    let h = eager(c, Shape::new(2, 24, 2, 3), |o| rs::haar_down(c, &ev, o)).unwrap();
    let up = eager(c, Shape::new(2, 24, 4, 6), |o| rs::upsample_nearest(c, &h, 2, o)).unwrap();
    let cat = eager(c, Shape::new(2, 30, 4, 6), |o| rs::concat_channels(c, &[&od, &up], o)).unwrap();
    let a2 = eager(c, Shape::new(2, 12, 4, 6), |o| rs::slice_channels(c, &cat, 0, 1, 12, o)).unwrap();
    let y = eager(c, s, |o| rs::unsqueeze(c, &a2, 2, o)).unwrap();
    assert_exact("graph.layout_vs_eager", &got, &y.to_vec(c).unwrap());

    let mut g = GraphBuilder::new(c);
    let x = g.input("x", s).unwrap();
    let e = g.squeeze("bad_sq", x, 5).unwrap_err().to_string();
    assert!(e.contains("bad_sq"), "{e}");
}

fn store(entries: &[(&str, Vec<usize>)], rng: &mut Rng) -> wgsr::weights::WeightStore {
    let mut w = wgsr::weights::WeightStore::new();
    for (name, shape) in entries {
        let n = shape.iter().product();
        w.insert(*name, wgsr::weights::HostTensor::new(shape.clone(), rng.vec(n, -1.0, 1.0)).unwrap());
    }
    w
}

#[test]
fn weighted_ops_bind_by_name_and_equal_eager_ops() {
    use wgsr::ops::{attention::Attention, matmul::Linear, norm::GroupNorm};
    let c = ctx();
    let mut rng = Rng::new(31);
    let w = store(
        &[("gn.weight", vec![12]), ("gn.bias", vec![12]), ("emb.weight", vec![12, 5]), ("emb.bias", vec![12])],
        &mut rng,
    );
    let s = Shape::new(2, 12, 4, 6);
    let (tx, xv) = rand_tensor(&mut rng, s, -2.0, 2.0);
    let (te, ev) = rand_tensor(&mut rng, Shape::new(2, 5, 1, 1), -1.0, 1.0);

    let mut g = GraphBuilder::with_weights(c, &w);
    let x = g.input("x", s).unwrap();
    let e = g.input("e", Shape::new(2, 5, 1, 1)).unwrap();
    let n = g.group_norm("norm", x, "gn", 4, 1e-5, true).unwrap();
    let a = g.attention("attn", n, 2).unwrap(); // [2,4,4,6]
    let l = g.linear("emb", e, "emb").unwrap(); // [2,12,1,1]
    g.output("attn", a).unwrap();
    g.output("emb", l).unwrap();
    assert!(w.unused().is_empty(), "{:?}", w.unused());
    let mut ex = Executor::new(c, g.build().unwrap()).unwrap();
    ex.set_input(c, "x", &xv).unwrap();
    ex.set_input(c, "e", &ev).unwrap();
    ex.run(c).unwrap();

    let gn = GroupNorm::new(c, &w.get("gn.weight", None).unwrap().data, &w.get("gn.bias", None).unwrap().data, 4, 1e-5).unwrap();
    let n = eager(c, s, |o| gn.prepare(c, &tx, o, &Tensor::empty(c, gn.scratch_shape(tx.shape())).unwrap(), true)).unwrap();
    let att = Attention::new(c, Shape::new(2, 4, 4, 6), 2).unwrap();
    let a = eager(c, Shape::new(2, 4, 4, 6), |o| att.prepare(c, &n, o, &Tensor::empty(c, att.scores_shape()).unwrap())).unwrap();
    assert_exact("graph.gn_attention_vs_eager", &ex.read_output(c, "attn").unwrap(), &a.to_vec(c).unwrap());
    let ew = w.get("emb.weight", None).unwrap();
    let lin = Linear::new(c, &ew.data, Some(&w.get("emb.bias", None).unwrap().data), 12, 5).unwrap();
    let l = eager(c, Shape::new(2, 12, 1, 1), |o| lin.prepare(c, &te, o)).unwrap();
    assert_exact("graph.linear_vs_eager", &ex.read_output(c, "emb").unwrap(), &l.to_vec(c).unwrap());

    // Missing and mis-shaped weights name the node and the tensor.
    let mut g = GraphBuilder::with_weights(c, &w);
    let x = g.input("x", s).unwrap();
    let e = g.group_norm("norm2", x, "nope", 4, 1e-5, false).unwrap_err().to_string();
    assert!(e.contains("norm2") && e.contains("nope.weight"), "{e}");
    let x8 = g.input("x8", Shape::new(1, 8, 2, 2)).unwrap();
    let e = g.group_norm("norm3", x8, "gn", 4, 1e-5, false).unwrap_err().to_string();
    assert!(e.contains("norm3") && e.contains("[12]"), "{e}");
}

#[test]
fn flow_layers_round_trip_in_one_graph() {
    use wgsr::graph::ops::flow::Dir;
    let c = ctx();
    let mut rng = Rng::new(41);
    let cch = 6;
    // Far-from-identity invertible weight: random entries plus a diagonal boost.
    let mut wv = rng.vec(cch * cch, -1.0, 1.0);
    for i in 0..cch {
        wv[i * cch + i] += 2.0;
    }
    let mut w = store(&[("an.bias", vec![1, cch, 1, 1]), ("an.logs", vec![1, cch, 1, 1])], &mut rng);
    w.insert("ic.weight", wgsr::weights::HostTensor::new(vec![cch, cch], wv).unwrap());
    let s = Shape::new(2, cch, 5, 7);
    let (_, xv) = rand_tensor(&mut rng, s, -1.0, 1.0);
    let (_, hv) = rand_tensor(&mut rng, Shape::new(2, 6, 5, 7), -1.0, 1.0);

    let mut g = GraphBuilder::with_weights(c, &w);
    let x = g.input("x", s).unwrap();
    let h = g.input("h", Shape::new(2, 6, 5, 7)).unwrap();
    let ld = g.logdet("ld0", 2, 0.0).unwrap();
    let (a, ld) = g.actnorm("an", x, "an", Some(ld), Dir::Forward).unwrap();
    let (b, ld) = g.invconv("ic", a, "ic", ld, Dir::Forward).unwrap();
    let (z, ld) = g.affine_coupling("cp", b, h, 3, ld, Dir::Forward).unwrap();
    let ld = ld.unwrap();
    g.output("z", z).unwrap();
    let ld_copy = g.affine("ld_fwd", ld, 1.0, 0.0).unwrap();
    g.output("logdet_fwd", ld_copy).unwrap();
    let (b2, ld) = g.affine_coupling("cp_rev", z, h, 3, Some(ld), Dir::Reverse).unwrap();
    let (a2, ld) = g.invconv("ic_rev", b2, "ic", ld, Dir::Reverse).unwrap();
    let (x2, ld) = g.actnorm("an_rev", a2, "an", ld, Dir::Reverse).unwrap();
    g.output("x_back", x2).unwrap();
    g.output("logdet_back", ld.unwrap()).unwrap();
    let graph = g.build().unwrap();
    assert!(w.unused().is_empty());
    let mut ex = Executor::new(c, graph).unwrap();
    println!("{}", ex.plan());
    ex.set_input(c, "x", &xv).unwrap();
    ex.set_input(c, "h", &hv).unwrap();
    for _ in 0..2 {
        // Twice: the logdet fill must restart the accumulation every run.
        ex.run(c).unwrap();
        let back = ex.read_output(c, "x_back").unwrap();
        assert_close("graph.flow_round_trip", &back, &to_f64(&xv), 1e-5, 0.0);
        let ld_back = ex.read_output(c, "logdet_back").unwrap();
        assert_close("graph.flow_logdet_back", &ld_back, &[0.0, 0.0], 1e-4, 0.0);
        let ld_fwd = ex.read_output(c, "logdet_fwd").unwrap();
        assert!(ld_fwd.iter().all(|v| v.abs() > 1e-3), "forward logdet should be non-trivial: {ld_fwd:?}");
    }
}

#[test]
fn noise_and_temperature_parameters_replay() {
    use wgsr::graph::ops::sampling::Counter;
    let c = ctx();
    let s = Shape::new(1, 3, 4, 5);
    let mut g = GraphBuilder::new(c);
    g.param("seed", 7.0).unwrap();
    g.param("step", 0.0).unwrap();
    g.param("temp", 1.0).unwrap();
    let z = g.normal("noise", s, Counter::Param("seed".into()), Counter::Param("step".into())).unwrap();
    let p = g.softmax("probs", z, Scalar::param("temp"), 1).unwrap();
    g.output("z", z).unwrap();
    g.output("p", p).unwrap();
    let mut ex = Executor::new(c, g.build().unwrap()).unwrap();
    for step in 0..5u64 {
        ex.set_param("step", step as f64).unwrap();
        ex.set_param("temp", 0.5 + step as f64).unwrap();
        ex.run(c).unwrap();
        let got = ex.read_output(c, "z").unwrap();
        let want = wgsr::ops::rng::host_normal(7, step, s.numel(), 0.0, 1.0);
        assert_close(&format!("graph.noise_step{step}"), &got, &to_f64(&want), 1e-6, 0.0);
        // softmax over the 3 channels at temperature 0.5 + step
        let probs = ex.read_output(c, "p").unwrap();
        let t = 0.5 + step as f64;
        let hw = 20;
        let mut want_p = vec![0.0; s.numel()];
        for i in 0..hw {
            let m = (0..3).map(|ch| got[ch * hw + i] as f64 / t).fold(f64::MIN, f64::max);
            let sum: f64 = (0..3).map(|ch| (got[ch * hw + i] as f64 / t - m).exp()).sum();
            for ch in 0..3 {
                want_p[ch * hw + i] = (got[ch * hw + i] as f64 / t - m).exp() / sum;
            }
        }
        assert_close(&format!("graph.softmax_T{t}"), &probs, &want_p, 1e-6, 1e-5);
    }
    assert!(ex.set_param("seed", -1.0).is_ok());
    assert!(ex.run(c).is_err(), "a negative seed must be rejected at run time");
}

#[test]
fn inputs_set_once_survive_replays() {
    let c = ctx();
    let mut rng = Rng::new(12);
    let av = rng.vec(S.numel(), -1.0, 1.0);
    let bv = rng.vec(S.numel(), -1.0, 1.0);
    let mut g = GraphBuilder::new(c);
    chain(&mut g).unwrap();
    let mut ex = Executor::new(c, g.build().unwrap()).unwrap();
    ex.set_input(c, "a", &av).unwrap();
    ex.set_input(c, "b", &bv).unwrap();
    ex.run(c).unwrap();
    let first = ex.read_output(c, "y").unwrap();
    // No set_input: the planner must not have lent the inputs' buffers to
    // intermediates, or this replay would read clobbered inputs.
    ex.run(c).unwrap();
    assert_exact("graph.replay_without_new_inputs", &ex.read_output(c, "y").unwrap(), &first);
    assert_eq!(ex.input_tensor("a").unwrap().to_vec(c).unwrap(), av);
}
