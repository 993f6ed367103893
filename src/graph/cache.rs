//! One cached executor per graph kind, rebuilt when its key (input shape,
//! batch size) changes. The old executor is dropped before the new one is
//! built, so a model never holds two sets of planned buffers at once.

use crate::graph::Executor;
use crate::Result;

pub struct GraphCache<K> {
    slot: Option<(K, Executor)>,
}

impl<K> Default for GraphCache<K> {
    fn default() -> Self {
        GraphCache { slot: None }
    }
}

impl<K: PartialEq> GraphCache<K> {
    pub fn new() -> Self {
        Self::default()
    }

    /// The executor built for `key`, building it (after freeing any other) if needed.
    pub fn get_or_build(&mut self, key: K, build: impl FnOnce() -> Result<Executor>) -> Result<&mut Executor> {
        if !matches!(&self.slot, Some((k, _)) if *k == key) {
            self.slot = None;
            self.slot = Some((key, build()?));
        }
        Ok(&mut self.slot.as_mut().expect("just built").1)
    }

    /// The cached executor, whatever its key.
    pub fn get(&self) -> Option<&Executor> {
        self.slot.as_ref().map(|(_, e)| e)
    }
}
