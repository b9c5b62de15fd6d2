//! filter and split: each leaf to the first filter that matches it, whole
//! subtrees at once where their path and types decide.

use std::sync::Arc;

use super::memo::{self, PartitionKey};
use crate::error::{bail, Result};
use crate::filter::{check_order, compile_all, Filter, Matcher};
use crate::key::{format_path_tuple, Key};
use crate::tree::{canonical, empty_node, Child, Leaf, LeafTypes, Node};
use crate::types;

/// `filter_state`: one output per filter; each leaf goes to the first filter
/// that matches it, or nowhere.
pub fn filter(node: &Arc<Node>, filters: &[Filter]) -> Result<Vec<Arc<Node>>> {
    partition(node, filters, false)
}

/// `split_state`: like [`filter`], but a leaf that no filter matches is an
/// error (`NonExhaustive`) and nothing is returned.
pub fn split(node: &Arc<Node>, filters: &[Filter]) -> Result<Vec<Arc<Node>>> {
    partition(node, filters, true)
}

/// Whether `filter` selects the leaf at `path`, as `filter_state` would
/// decide for that leaf in a state.
pub fn matches(filter: &Filter, path: &[Key], leaf: &Leaf) -> Result<bool> {
    let registry = types::snapshot();
    let path: Vec<&Key> = path.iter().collect();
    filter.compile(&registry)?.matches(&path, leaf)
}

/// The filters of one call, ready to place leaves and, where a node's path
/// and the kinds of leaves below it decide, whole subtrees.
struct Placer<'f> {
    matchers: Vec<Matcher<'f>>,
    /// Whether some leaf went to no output.
    unmatched: bool,
    /// Emptied output vectors to reuse for nested nodes (one per depth).
    spare: Vec<Vec<Node>>,
}

impl<'f> Placer<'f> {
    /// The output every leaf below a node at `prefix` goes to (`Some(None)`:
    /// none), when the path and `kinds` decide it for all of them.
    fn subtree_target(&self, prefix: &[&Key], kinds: LeafTypes) -> Option<Option<usize>> {
        for (i, m) in self.matchers.iter().enumerate() {
            if m.decide(prefix, kinds)? {
                return Some(Some(i));
            }
        }
        Some(None)
    }

    fn leaf_target(&self, path: &[&Key], leaf: &Leaf) -> Result<Option<usize>> {
        for (i, m) in self.matchers.iter().enumerate() {
            if m.matches(path, leaf)? {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    /// Puts the leaves below `node` (at `path`) into `outs`, the node's
    /// counterpart in each output. A nested node whose leaves all go to one
    /// output is shared (in its canonical form), not rebuilt; the others are
    /// built in key order, so every output is canonical.
    fn place<'a>(
        &mut self,
        node: &'a Node,
        path: &mut Vec<&'a Key>,
        outs: &mut [Node],
    ) -> Result<()> {
        for (key, child) in node.sorted() {
            path.push(key);
            match child {
                Child::Leaf(leaf) => match self.leaf_target(path, leaf)? {
                    Some(i) => {
                        outs[i].insert(*key, child.clone());
                    }
                    None => self.unmatched = true,
                },
                Child::Node(n) if !n.has_leaves() => {}
                Child::Node(n) => match self.subtree_target(path, n.leaf_types()) {
                    Some(Some(i)) => {
                        let shared = canonical(n).expect("a node with leaves");
                        outs[i].insert(*key, Child::Node(shared));
                    }
                    Some(None) => self.unmatched = true,
                    None => {
                        let mut subs = self.spare.pop().unwrap_or_default();
                        subs.resize_with(outs.len(), Node::new);
                        self.place(n, path, &mut subs)?;
                        for (out, sub) in outs.iter_mut().zip(subs.drain(..)) {
                            if !sub.is_empty() {
                                out.insert(*key, Child::Node(Arc::new(sub)));
                            }
                        }
                        self.spare.push(subs);
                    }
                },
            }
            path.pop();
        }
        Ok(())
    }
}

/// Fails unless `filters` can make a filter or split: at least one, and
/// `...` only at the end.
pub fn check_filters(filters: &[Filter]) -> Result<()> {
    if filters.is_empty() {
        bail!(InvalidArgument, "at least one filter is required");
    }
    check_order(filters)
}

fn partition(node: &Arc<Node>, filters: &[Filter], exhaustive: bool) -> Result<Vec<Arc<Node>>> {
    check_filters(filters)?;
    // Nothing to place (filters are checked when they are made: they
    // compile for any node).
    if !node.has_leaves() {
        return Ok(vec![empty_node(); filters.len()]);
    }
    // The same filters on the same, unchanged node give the same outputs:
    // reuse them when the filters look only at paths and types.
    let remembered = PartitionKey::applies(filters);
    if let Some(outputs) = remembered
        .then(|| memo::cached_partition(node, filters, exhaustive))
        .flatten()
    {
        return Ok(outputs);
    }
    let registry = types::snapshot();
    let matchers = compile_all(filters, &registry)?;
    let mut placer = Placer {
        matchers,
        unmatched: false,
        spare: Vec::new(),
    };
    let outputs: Vec<Arc<Node>> = match placer.subtree_target(&[], node.leaf_types()) {
        Some(target) => {
            placer.unmatched = target.is_none();
            let shared = target.and_then(|_| canonical(node));
            (0..filters.len())
                .map(|i| match &shared {
                    Some(shared) if Some(i) == target => shared.clone(),
                    _ => empty_node(),
                })
                .collect()
        }
        None => {
            let mut outs: Vec<Node> = (0..filters.len()).map(|_| Node::new()).collect();
            placer.place(node, &mut Vec::new(), &mut outs)?;
            outs.into_iter()
                .map(|out| match out.is_empty() {
                    true => empty_node(),
                    false => Arc::new(out),
                })
                .collect()
        }
    };
    if exhaustive && placer.unmatched {
        let (count, first) = remainder(node, &placer)?;
        bail!(
            NonExhaustive,
            "Non-exhaustive filters, got a non-empty remainder: {count} leaf(s) matched no filter, \
             the first at {first}.\nUse `...` to match all remaining elements."
        );
    }
    if remembered {
        memo::store_partition(node, filters, exhaustive, &outputs);
    }
    Ok(outputs)
}

/// The number of leaves no filter matches, and the first of them in sorted
/// order: for the message of a failed split.
fn remainder(node: &Node, placer: &Placer<'_>) -> Result<(usize, String)> {
    let mut count = 0;
    let mut first = None;
    let mut path = Vec::new();
    let mut error = None;
    for_each_leaf_sorted(node, &mut path, &mut |p, leaf| {
        if error.is_some() {
            return;
        }
        match placer.leaf_target(p, leaf) {
            Ok(None) => {
                count += 1;
                first.get_or_insert_with(|| format_path_tuple(p));
            }
            Ok(Some(_)) => {}
            Err(e) => error = Some(e),
        }
    });
    match error {
        Some(e) => Err(e),
        None => Ok((count, first.unwrap_or_default())),
    }
}

fn for_each_leaf_sorted<'a>(
    node: &'a Node,
    path: &mut Vec<&'a Key>,
    f: &mut impl FnMut(&[&'a Key], &'a Leaf),
) {
    for (key, child) in node.sorted() {
        path.push(key);
        match child {
            Child::Leaf(leaf) => f(path, leaf),
            Child::Node(n) => for_each_leaf_sorted(n, path, f),
        }
        path.pop();
    }
}
