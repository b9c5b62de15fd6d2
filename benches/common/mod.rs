//! The model-shaped state every benchmark uses: `layers/<i>/attn/{q,k,v,o}:
//! Param`, `layers/<i>/norm/{scale: Param, mean, var: BatchStat}`,
//! `layers/<i>/cache/{k,v}: Cache`, nine leaves a layer. Each benchmark
//! uses a part of this module.
#![allow(dead_code)]

use std::sync::Arc;

use nnx_state::{Child, Key, Node, TypeId};

/// The leaves of one layer, in the order a model builds them.
pub const LAYER: [(&str, &str, TypeId); LEAVES_PER_LAYER] = [
    ("attn", "q", TypeId::PARAM),
    ("attn", "k", TypeId::PARAM),
    ("attn", "v", TypeId::PARAM),
    ("attn", "o", TypeId::PARAM),
    ("norm", "scale", TypeId::PARAM),
    ("norm", "mean", TypeId::BATCH_STAT),
    ("norm", "var", TypeId::BATCH_STAT),
    ("cache", "k", TypeId::CACHE),
    ("cache", "v", TypeId::CACHE),
];

pub const LEAVES_PER_LAYER: usize = 9;

/// The tree of `layers` layers, in [`LAYER`]'s order or (`sorted`) in key
/// order at every level; `leaf(index, type)` makes the leaf numbered
/// `index` in that order.
pub fn model(layers: usize, sorted: bool, leaf: impl FnMut(usize, TypeId) -> Child) -> Node {
    model_keyed(layers, sorted, |i| Key::int(i as i64), leaf)
}

/// [`model`] with layer `i` under `layer_key(i)`: text keys such as
/// `layer_10` make the layers node one whose keys are out of key order
/// (`layer_10` sorts before `layer_2`), as a model's dict of named blocks.
pub fn model_keyed(
    layers: usize,
    sorted: bool,
    layer_key: impl Fn(usize) -> Key,
    mut leaf: impl FnMut(usize, TypeId) -> Child,
) -> Node {
    let mut order = LAYER;
    if sorted {
        order.sort_by_key(|(group, name, _)| (*group, *name));
    }
    let mut all = Node::new();
    for i in 0..layers {
        let mut layer = Node::new();
        let mut group = Node::new();
        for (j, (g, name, t)) in order.iter().enumerate() {
            group.insert(Key::str(name), leaf(i * LEAVES_PER_LAYER + j, *t));
            if order.get(j + 1).is_none_or(|next| next.0 != *g) {
                let done = std::mem::take(&mut group);
                layer.insert(Key::str(g), Child::Node(Arc::new(done)));
            }
        }
        all.insert(layer_key(i), Child::Node(Arc::new(layer)));
    }
    let mut root = Node::new();
    root.insert(Key::str("layers"), Child::Node(Arc::new(all)));
    root
}

/// New nodes over the same leaves, with nothing derived or remembered:
/// what an operation meets the first time it sees a tree.
pub fn structure_copy(node: &Node) -> Node {
    let mut out = Node::with_capacity(node.len());
    for (key, child) in node.iter() {
        let copy = match child {
            Child::Node(n) => Child::Node(Arc::new(structure_copy(n))),
            Child::Leaf(leaf) => Child::Leaf(leaf.clone()),
        };
        out.insert(*key, copy);
    }
    out
}
