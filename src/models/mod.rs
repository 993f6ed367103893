//! Model families, each built from graph nodes: a module per family reads
//! its `config.json`, builds its graphs once and exposes a small library API
//! (the CLI in `src/cli/` is a thin layer over it).

pub mod hcflow;
pub mod pixelcnn;
pub mod sr3;
