//! Model families, each built from graph nodes: a module per family reads
//! its `config.json`, builds its graphs once and exposes a small library API
//! (the CLI in `src/cli/` is a thin layer over it). [`registry`] gives every
//! family one face: find a model directory, load it, upscale / downscale.

pub mod ensemble;
pub mod hcflow;
pub mod json;
pub mod pixelcnn;
pub mod registry;
pub mod sr3;
pub mod tiling;

pub use registry::{find, load, load_as, Model, UpscaleOptions};
pub use tiling::{TilePolicy, TiledPass};
