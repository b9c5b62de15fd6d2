//! Operations on trees with Flax NNX's semantics (`flax.nnx.statelib`).
//!
//! Outputs share leaves with inputs (and, where nothing changes, whole
//! subtrees); no variable or tensor byte is copied except by [`deep_copy`].

use std::collections::HashMap;
use std::sync::Arc;

use indexmap::IndexMap;

use crate::error::{bail, Result};
use crate::key::{format_path_short, Key};
use crate::limits::check_depth;
use crate::tree::{empty_node, prune, Child, Leaf, Node};

pub(crate) mod memo;
mod partition;

pub use partition::{check_filters, filter, matches, split};

/// The leaves below `node` with their paths, sorted by path as
/// `nnx.to_flat_state` sorts them. Empty subtrees give nothing.
pub fn flatten(node: &Node) -> Vec<(Vec<Key>, Leaf)> {
    let mut out = Vec::new();
    let mut path = Vec::new();
    flatten_into(node, &mut path, &mut out);
    out
}

fn flatten_into(node: &Node, path: &mut Vec<Key>, out: &mut Vec<(Vec<Key>, Leaf)>) {
    for (key, child) in node.sorted() {
        path.push(*key);
        match child {
            Child::Leaf(leaf) => out.push((path.clone(), leaf.clone())),
            Child::Node(n) => flatten_into(n, path, out),
        }
        path.pop();
    }
}

/// Visits the leaves in insertion order (depth first), as NNX's
/// `flatten_mapping` does.
fn for_each_leaf_in_order<'a>(
    node: &'a Node,
    path: &mut Vec<&'a Key>,
    f: &mut impl FnMut(&[&'a Key], &'a Leaf),
) {
    for (key, child) in node.iter() {
        path.push(key);
        match child {
            Child::Leaf(leaf) => f(path, leaf),
            Child::Node(n) => for_each_leaf_in_order(n, path, f),
        }
        path.pop();
    }
}

/// `merge_state`: the union of the states' leaves; at the same path the later
/// state wins. Keys keep the order of their first appearance, as in NNX,
/// which merges flat dictionaries. Where NNX fails (a leaf, then a path
/// running through it), the later entry replaces the leaf. One state merges
/// to itself.
pub fn merge(nodes: &[Arc<Node>]) -> Result<Arc<Node>> {
    match nodes {
        [] => bail!(InvalidArgument, "merge needs at least one state"),
        [only] => Ok(only.clone()),
        _ if nodes.iter().all(|n| !n.has_leaves()) => Ok(empty_node()),
        [first, others @ ..] => {
            // Merging the same, unchanged nodes again gives the same result.
            if let Some(result) = memo::cached_merge(first, others) {
                return Ok(result);
            }
            let mut merged = Node::new();
            let mut conflict = false;
            for node in nodes {
                if merge_into(&mut merged, node).is_err() {
                    conflict = true;
                    break;
                }
            }
            let result = Arc::new(if conflict { merge_flat(nodes) } else { merged });
            memo::store_merge(first, others, &result);
            Ok(result)
        }
    }
}

/// A leaf met a later subtree: the tree-wise merge no longer equals NNX's
/// flat-dictionary merge.
struct LeafThenSubtree;

fn merge_into(dst: &mut Node, src: &Node) -> Result<(), LeafThenSubtree> {
    for (key, child) in src.iter() {
        match child {
            Child::Leaf(leaf) => {
                dst.insert(*key, Child::Leaf(leaf.clone()));
            }
            Child::Node(n) => {
                let Some(pruned) = prune(n) else { continue };
                match dst.node_mut(key, |existing| merge_into(existing, &pruned)) {
                    Some(merged) => merged?,
                    None if dst.get(key).is_some() => return Err(LeafThenSubtree),
                    None => {
                        dst.insert(*key, Child::Node(pruned));
                    }
                }
            }
        }
    }
    Ok(())
}

/// NNX's merge, literally: one flat dictionary of all the states' leaves
/// (later wins, first position kept), then unflattened.
fn merge_flat(nodes: &[Arc<Node>]) -> Node {
    let mut flat: IndexMap<Vec<Key>, Leaf> = IndexMap::new();
    for node in nodes {
        let mut path = Vec::new();
        for_each_leaf_in_order(node, &mut path, &mut |p, leaf| {
            flat.insert(p.iter().map(|k| *(*k)).collect(), leaf.clone());
        });
    }
    unflatten(flat)
}

/// Builds a tree from (path, leaf) pairs in order. Each entry replaces what
/// is at its path; a path that runs through a leaf replaces that leaf with a
/// subtree.
fn unflatten(pairs: impl IntoIterator<Item = (Vec<Key>, Leaf)>) -> Node {
    let mut root = Node::new();
    for (path, leaf) in pairs {
        let Some((last, parents)) = path.split_last() else {
            continue;
        };
        root.node_at_mut(parents, true, |parent| {
            parent.insert(*last, Child::Leaf(leaf));
        });
    }
    root
}

/// Fails unless `path` can name a flat entry: not empty, and within the
/// nesting limit.
pub fn check_flat_path(path: &[Key]) -> Result<()> {
    if path.is_empty() {
        bail!(InvalidArgument, "a flat entry needs a non-empty path");
    }
    check_depth(path.len(), || {
        format!("the flat entry at '{}'", format_path_short(path))
    })
}

/// One entry of a flat list, as [`from_flat_entries`] reads it.
pub trait FlatEntry {
    fn path(&self) -> &[Key];
    fn leaf(&self) -> &Leaf;
}

impl FlatEntry for (Vec<Key>, Leaf) {
    fn path(&self) -> &[Key] {
        &self.0
    }
    fn leaf(&self) -> &Leaf {
        &self.1
    }
}

/// `from_flat_state`: a tree from (path, leaf) pairs. On a repeated path the
/// later leaf wins at the first one's position, as in a Python dict.
pub fn from_flat(pairs: impl IntoIterator<Item = (Vec<Key>, Leaf)>) -> Result<Node> {
    let pairs: Vec<(Vec<Key>, Leaf)> = pairs.into_iter().collect();
    from_flat_entries(&pairs)
}

/// [`from_flat`] of borrowed entries: the paths are read where they are,
/// not copied.
pub fn from_flat_entries<E: FlatEntry>(entries: &[E]) -> Result<Node> {
    check_flat_entries(entries)?;
    Ok(from_checked_flat_entries(entries))
}

/// Fails unless every entry's path can name a flat entry (see
/// [`check_flat_path`]).
pub fn check_flat_entries<E: FlatEntry>(entries: &[E]) -> Result<()> {
    entries.iter().try_for_each(|e| check_flat_path(e.path()))
}

/// [`from_flat_entries`] of entries [`check_flat_entries`] passed.
pub fn from_checked_flat_entries<E: FlatEntry>(entries: &[E]) -> Node {
    // Flat states are nearly always grouped (every subtree's paths next to
    // each other, as `to_flat_state` and a model's walk give them) and free
    // of repeats: then the tree is built in one pass, bottom up. Otherwise
    // the dictionary semantics take the general route.
    if let Some(node) = build_grouped(entries, 0) {
        return node;
    }
    let mut flat: IndexMap<Vec<Key>, Leaf> = IndexMap::with_capacity(entries.len());
    for entry in entries {
        flat.insert(entry.path().to_vec(), entry.leaf().clone());
    }
    unflatten(flat)
}

/// The node made of `entries`, whose paths agree before `depth`, if the
/// paths with the same key at `depth` are next to each other and no path is
/// repeated or runs through another's leaf.
fn build_grouped<E: FlatEntry>(entries: &[E], depth: usize) -> Option<Node> {
    let mut node = Node::new();
    let mut rest = entries;
    while let Some((first, others)) = rest.split_first() {
        let path = first.path();
        // A path that ends above `depth`: a leaf where a subtree is too.
        let key = *path.get(depth)?;
        let run = 1 + others
            .iter()
            .position(|e| e.path().get(depth) != Some(&key))
            .unwrap_or(others.len());
        let (group, after) = rest.split_at(run);
        let child = if path.len() == depth + 1 {
            if run > 1 {
                return None; // repeated, or a leaf and then paths through it
            }
            Child::Leaf(first.leaf().clone())
        } else {
            Child::Node(Arc::new(build_grouped(group, depth + 1)?))
        };
        if node.get(&key).is_some() {
            return None; // the key's paths are not all together
        }
        node.insert(key, child);
        rest = after;
    }
    Some(node)
}

/// `diff(a, b)`: the leaves of `a` whose path is not a leaf path of `b`.
/// As in NNX, an empty `b` (no keys at all) returns `a` itself.
pub fn diff(a: &Arc<Node>, b: &Node) -> Arc<Node> {
    if b.is_empty() {
        return a.clone();
    }
    Arc::new(diff_node(a, Some(b)))
}

fn diff_node(a: &Node, b: Option<&Node>) -> Node {
    let mut out = Node::new();
    for (key, child) in a.sorted() {
        let other = b.and_then(|b| b.get(key));
        match child {
            Child::Leaf(leaf) => {
                if !matches!(other, Some(Child::Leaf(_))) {
                    out.insert(*key, Child::Leaf(leaf.clone()));
                }
            }
            Child::Node(n) => {
                let other_node = match other {
                    Some(Child::Node(m)) => Some(&**m),
                    _ => None,
                };
                let sub = diff_node(n, other_node);
                if !sub.is_empty() {
                    out.insert(*key, Child::Node(Arc::new(sub)));
                }
            }
        }
    }
    out
}

/// In place, `src`'s leaves overwrite `dst`'s at their paths. Missing
/// subtrees are created; a leaf of `dst` in the way of a `src` subtree is
/// replaced by it. What was replaced is pushed to `replaced`, so the caller
/// can drop it (which may run release callbacks) outside any lock.
pub fn update(dst: &mut Node, src: &Node, replaced: &mut Vec<Child>) {
    for (key, child) in src.iter() {
        match child {
            Child::Leaf(leaf) => {
                replaced.extend(dst.insert(*key, Child::Leaf(leaf.clone())));
            }
            Child::Node(n) => {
                let Some(pruned) = prune(n) else { continue };
                let merged = dst.node_mut(key, |existing| update(existing, &pruned, replaced));
                if merged.is_none() {
                    replaced.extend(dst.insert(*key, Child::Node(pruned)));
                }
            }
        }
    }
}

/// A copy with new variables and arrays holding copies of the bytes. A
/// variable or array held at several paths is copied once and stays shared.
pub fn deep_copy(node: &Node) -> Result<Node> {
    deep_copy_with(node, &mut LeafCopier::default())
}

/// [`deep_copy`] taking its copies from `copier`: a leaf it copied before
/// is not copied again.
pub fn deep_copy_with(node: &Node, copier: &mut LeafCopier) -> Result<Node> {
    let mut out = Node::with_capacity(node.len());
    for (key, child) in node.iter() {
        let copied = match child {
            Child::Node(n) => Child::Node(Arc::new(deep_copy_with(n, copier)?)),
            Child::Leaf(leaf) => Child::Leaf(copier.copy(leaf)?),
        };
        out.insert(*key, copied);
    }
    Ok(out)
}

/// Copies leaves for a deep copy: each variable or array once, however
/// many paths hold it.
#[derive(Default)]
pub struct LeafCopier {
    copies: HashMap<usize, Leaf>,
}

impl LeafCopier {
    pub fn copy(&mut self, leaf: &Leaf) -> Result<Leaf> {
        let identity = match leaf {
            Leaf::Variable(v) => Arc::as_ptr(v) as *const u8 as usize,
            Leaf::Array(a) => Arc::as_ptr(a) as *const u8 as usize,
        };
        if let Some(done) = self.copies.get(&identity) {
            return Ok(done.clone());
        }
        let fresh = match leaf {
            Leaf::Variable(v) => Leaf::Variable(Arc::new(v.deep_copy()?)),
            Leaf::Array(a) => Leaf::Array(Arc::new(a.deep_copy()?)),
        };
        self.copies.insert(identity, fresh.clone());
        Ok(fresh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf() -> Leaf {
        Leaf::Array(Arc::new(
            crate::array::Array::from_slice(&[1], &[0.0f32]).unwrap(),
        ))
    }

    fn path(text: &str) -> Vec<Key> {
        crate::key::parse_path(text).unwrap()
    }

    /// The one-pass build of grouped flat states agrees with the dictionary
    /// route, and hands over to it for the inputs it cannot take.
    #[test]
    fn from_flat_takes_grouped_input_in_one_pass_and_the_rest_as_a_dict() {
        let cases: &[&[&str]] = &[
            &["layers/0/a", "layers/0/b", "layers/1/a", "x"],
            &["b/x", "a", "b/y"],   // b's paths apart
            &["a/x", "a/x", "b"],   // a repeat
            &["a/x", "a", "a/x"],   // through a leaf and back
            &["a", "a/x"],          // a path through a leaf
            &["a/x/y", "a/x", "c"], // a leaf where a subtree is
        ];
        for paths in cases {
            let pairs: Vec<(Vec<Key>, Leaf)> = paths.iter().map(|p| (path(p), leaf())).collect();
            let mut flat: IndexMap<Vec<Key>, Leaf> = IndexMap::new();
            for (p, l) in pairs.clone() {
                flat.insert(p, l);
            }
            let expected = unflatten(flat);
            let built = from_flat(pairs.clone()).unwrap();
            assert!(built.same_as(&expected), "{paths:?}");
            let grouped = build_grouped(&pairs, 0);
            assert_eq!(grouped.is_some(), paths == &cases[0], "{paths:?}");
        }
    }
}
