//! The form filter outputs take (keys sorted at every level, no empty
//! nested nodes), shared where a subtree has it already; and pruning.

use std::sync::{Arc, OnceLock};

use super::*;

/// The node as filter outputs have it: keys sorted at every level and no
/// empty nested nodes. Shares `node` itself, or the parts of it that are
/// that way already (a node whose summary says so answers at once).
/// `None` when no leaf lies below.
pub fn canonical(node: &Arc<Node>) -> Option<Arc<Node>> {
    if !node.has_leaves() {
        return None;
    }
    if node.is_canonical() {
        return Some(node.clone());
    }
    // A small node whose children are all in canonical form, and whose own
    // keys are only out of order: a twin that lists them in order, without
    // copying or touching them.
    let settled = |child: &Child| match child {
        Child::Leaf(_) => true,
        Child::Node(n) => n.is_canonical(),
    };
    if node.len() <= SMALL && node.iter().all(|(_, c)| settled(c)) {
        return Some(Arc::new(Node {
            summary: Summary {
                sorted: true,
                sorted_below: true,
                no_empty: true,
                ..node.summary
            },
            derived: OnceLock::new(),
            entries: Entries::Picked(node.clone(), Order::by_key(&node.entries)),
        }));
    }
    let mut out = Node::with_capacity(node.len());
    let mut same = node.summary.sorted;
    for (key, child) in node.sorted() {
        match child {
            Child::Leaf(_) => {
                out.insert(*key, child.clone());
            }
            Child::Node(n) => match canonical(n) {
                Some(c) => {
                    same &= Arc::ptr_eq(&c, n);
                    out.insert(*key, Child::Node(c));
                }
                None => same = false,
            },
        }
    }
    Some(if same { node.clone() } else { Arc::new(out) })
}

/// The node without its empty subtrees (recursively), or `None` when no leaf
/// is left. Shares the input when it has nothing to drop.
pub fn prune(node: &Arc<Node>) -> Option<Arc<Node>> {
    match prune_inner(node) {
        Pruned::Unchanged => Some(node.clone()),
        Pruned::Empty => None,
        Pruned::Rebuilt(n) => Some(Arc::new(*n)),
    }
}

enum Pruned {
    Unchanged,
    Empty,
    Rebuilt(Box<Node>),
}

fn prune_inner(node: &Node) -> Pruned {
    if node.summary.no_empty {
        // Nothing to drop below; and only a node without entries is empty.
        return if node.is_empty() {
            Pruned::Empty
        } else {
            Pruned::Unchanged
        };
    }
    let mut rebuilt: Option<Node> = None;
    for (index, (key, child)) in node.iter().enumerate() {
        let replacement = match child {
            Child::Leaf(_) => None,
            Child::Node(n) => match prune_inner(n) {
                Pruned::Unchanged => None,
                Pruned::Empty => Some(None),
                Pruned::Rebuilt(n) => Some(Some(Child::Node(Arc::new(*n)))),
            },
        };
        match (&mut rebuilt, replacement) {
            (None, None) => {}
            (None, Some(first_change)) => {
                let mut copy = Node::with_capacity(node.len());
                for (k, c) in node.iter().take(index) {
                    copy.insert(*k, c.clone());
                }
                if let Some(c) = first_change {
                    copy.insert(*key, c);
                }
                rebuilt = Some(copy);
            }
            (Some(copy), None) => {
                copy.insert(*key, child.clone());
            }
            (Some(copy), Some(change)) => {
                if let Some(c) = change {
                    copy.insert(*key, c);
                }
            }
        }
    }
    match rebuilt {
        Some(n) if n.is_empty() => Pruned::Empty,
        Some(n) => Pruned::Rebuilt(Box::new(n)),
        None if node.is_empty() => Pruned::Empty,
        None => Pruned::Unchanged,
    }
}
