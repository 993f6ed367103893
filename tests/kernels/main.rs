//! Kernel tests: every op against a naive f64 CPU reference on fresh random
//! non-zero inputs, with outputs poisoned (NaN) before the kernel runs so an
//! element the kernel forgets to write fails the comparison.
//! Run with `--nocapture` to see the measured max error of every check.

mod common;

mod attention;
mod context;
mod conv;
mod conv_cat;
mod elementwise;
mod flow;
mod gated_stack;
mod grad;
mod half;
mod matmul;
mod norm;
mod norm_cat;
mod params_reflect;
mod probe;
mod reduce;
mod reshape;
mod rng;
mod shaders;
mod softmax;
mod texel;
mod winograd;
