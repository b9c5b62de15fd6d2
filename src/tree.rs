//! The nested tree: ordered nodes of keys to children, and leaves.
//!
//! Nodes are immutable once shared: a [`Node`] sits behind an `Arc`, and a
//! change clones only the nodes on the path to it (copy on write). Leaves are
//! shared `Arc`s, so no operation copies a variable or a tensor byte.

use std::hash::BuildHasherDefault;
use std::sync::{Arc, OnceLock};

use indexmap::IndexMap;
use rustc_hash::FxHasher;

use crate::array::Array;
use crate::key::Key;
use crate::variable::Variable;

type Entries = IndexMap<Key, Child, BuildHasherDefault<FxHasher>>;

/// A leaf: a variable or a bare array.
#[derive(Clone, Debug)]
pub enum Leaf {
    Variable(Arc<Variable>),
    Array(Arc<Array>),
}

impl Leaf {
    /// Whether both are the very same object.
    pub fn same(&self, other: &Leaf) -> bool {
        match (self, other) {
            (Leaf::Variable(a), Leaf::Variable(b)) => Arc::ptr_eq(a, b),
            (Leaf::Array(a), Leaf::Array(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    pub fn as_variable(&self) -> Option<&Arc<Variable>> {
        match self {
            Leaf::Variable(v) => Some(v),
            Leaf::Array(_) => None,
        }
    }

    pub fn as_array(&self) -> Option<&Arc<Array>> {
        match self {
            Leaf::Array(a) => Some(a),
            Leaf::Variable(_) => None,
        }
    }
}

impl From<Arc<Variable>> for Leaf {
    fn from(v: Arc<Variable>) -> Self {
        Leaf::Variable(v)
    }
}

impl From<Arc<Array>> for Leaf {
    fn from(a: Arc<Array>) -> Self {
        Leaf::Array(a)
    }
}

/// What a key maps to: a nested node or a leaf.
#[derive(Clone, Debug)]
pub enum Child {
    Node(Arc<Node>),
    Leaf(Leaf),
}

impl Child {
    pub fn kind(&self) -> Kind {
        match self {
            Child::Node(_) => Kind::State,
            Child::Leaf(Leaf::Variable(_)) => Kind::Variable,
            Child::Leaf(Leaf::Array(_)) => Kind::Array,
        }
    }
}

impl From<Leaf> for Child {
    fn from(leaf: Leaf) -> Self {
        Child::Leaf(leaf)
    }
}

/// The kind of a child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    State,
    Variable,
    Array,
}

/// An insertion-ordered map from keys to children.
#[derive(Clone, Debug)]
pub struct Node {
    entries: Entries,
    /// Whether the keys are in ascending order, so sorted walks need not sort.
    sorted: bool,
    /// This node in the form every filter output takes (see [`canonical`]),
    /// made on first need and dropped by any change: `None` when the node is
    /// in that form already.
    canonical: OnceLock<Option<Arc<Node>>>,
}

impl Default for Node {
    fn default() -> Self {
        Node::new()
    }
}

impl Node {
    pub fn new() -> Node {
        Node {
            entries: Entries::default(),
            sorted: true,
            canonical: OnceLock::new(),
        }
    }

    pub fn with_capacity(capacity: usize) -> Node {
        Node {
            entries: Entries::with_capacity_and_hasher(capacity, Default::default()),
            sorted: true,
            canonical: OnceLock::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, key: &Key) -> Option<&Child> {
        self.entries.get(key)
    }

    pub fn get_mut(&mut self, key: &Key) -> Option<&mut Child> {
        self.canonical.take();
        self.entries.get_mut(key)
    }

    pub fn get_index(&self, index: usize) -> Option<(&Key, &Child)> {
        self.entries.get_index(index)
    }

    /// Sets `key`: an existing key keeps its position, a new one goes last.
    /// Returns what was there.
    pub fn insert(&mut self, key: Key, child: Child) -> Option<Child> {
        self.canonical.take();
        let (index, old) = self.entries.insert_full(key, child);
        if self.sorted && old.is_none() && index > 0 {
            let (before, _) = self.entries.get_index(index - 1).expect("index - 1 exists");
            let (new, _) = self.entries.get_index(index).expect("index exists");
            self.sorted = before < new;
        }
        old
    }

    /// Removes `key`, keeping the order of the others.
    pub fn remove(&mut self, key: &Key) -> Option<Child> {
        self.canonical.take();
        self.entries.shift_remove(key)
    }

    /// Children in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&Key, &Child)> {
        self.entries.iter()
    }

    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.entries.keys()
    }

    /// Children in key order.
    pub fn sorted(&self) -> Sorted<'_> {
        if self.sorted {
            Sorted::InOrder(self.entries.iter())
        } else {
            let mut entries: Vec<(&Key, &Child)> = self.entries.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            Sorted::Collected(entries.into_iter())
        }
    }

    /// Number of leaves below this node.
    pub fn num_leaves(&self) -> usize {
        self.entries
            .values()
            .map(|child| match child {
                Child::Node(n) => n.num_leaves(),
                Child::Leaf(_) => 1,
            })
            .sum()
    }

    /// Whether some leaf lies below this node.
    pub fn has_leaves(&self) -> bool {
        self.entries.values().any(|child| match child {
            Child::Node(n) => n.has_leaves(),
            Child::Leaf(_) => true,
        })
    }

    /// Equal structure (same keys in the same order at every level) holding
    /// the very same leaves.
    pub fn same_as(&self, other: &Node) -> bool {
        self.len() == other.len()
            && self.iter().zip(other.iter()).all(|((ka, a), (kb, b))| {
                ka == kb
                    && match (a, b) {
                        (Child::Node(x), Child::Node(y)) => Arc::ptr_eq(x, y) || x.same_as(y),
                        (Child::Leaf(x), Child::Leaf(y)) => x.same(y),
                        _ => false,
                    }
            })
    }
}

/// The node as filter outputs have it: keys sorted at every level and no
/// empty nested nodes. Shares `node` itself, or parts of it, where they are
/// that way already; the answer is cached in the node until it changes, so
/// repeated operations on an unchanged tree share these subtrees instead of
/// rebuilding them. `None` when no leaf lies below.
pub fn canonical(node: &Arc<Node>) -> Option<Arc<Node>> {
    let twin = node.canonical.get_or_init(|| {
        let mut out = Node::with_capacity(node.len());
        let mut same = node.sorted;
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
        if same {
            None
        } else {
            Some(Arc::new(out))
        }
    });
    match twin {
        None if node.is_empty() => None,
        None => Some(node.clone()),
        Some(t) if t.is_empty() => None,
        Some(t) => Some(t.clone()),
    }
}

/// Children of a node in key order.
pub enum Sorted<'a> {
    InOrder(indexmap::map::Iter<'a, Key, Child>),
    Collected(std::vec::IntoIter<(&'a Key, &'a Child)>),
}

impl<'a> Iterator for Sorted<'a> {
    type Item = (&'a Key, &'a Child);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Sorted::InOrder(it) => it.next(),
            Sorted::Collected(it) => it.next(),
        }
    }
}

/// The node without its empty subtrees (recursively), or `None` when no leaf
/// is left. Shares the input when it has nothing to drop.
pub fn prune(node: &Arc<Node>) -> Option<Arc<Node>> {
    match prune_inner(node) {
        Pruned::Unchanged => Some(node.clone()),
        Pruned::Empty => None,
        Pruned::Rebuilt(n) => Some(Arc::new(n)),
    }
}

enum Pruned {
    Unchanged,
    Empty,
    Rebuilt(Node),
}

fn prune_inner(node: &Node) -> Pruned {
    let mut rebuilt: Option<Node> = None;
    for (index, (key, child)) in node.iter().enumerate() {
        let replacement = match child {
            Child::Leaf(_) => None,
            Child::Node(n) => match prune_inner(n) {
                Pruned::Unchanged => None,
                Pruned::Empty => Some(None),
                Pruned::Rebuilt(n) => Some(Some(Child::Node(Arc::new(n)))),
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
        Some(n) => Pruned::Rebuilt(n),
        None if node.is_empty() => Pruned::Empty,
        None => Pruned::Unchanged,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::TypeId;

    fn var() -> Leaf {
        Leaf::Variable(Arc::new(Variable::new(TypeId::PARAM, None).unwrap()))
    }

    #[test]
    fn insertion_order_and_sorted_flag() {
        let mut node = Node::new();
        node.insert(Key::str("b"), var().into());
        node.insert(Key::str("a"), var().into());
        assert_eq!(
            node.keys().cloned().collect::<Vec<_>>(),
            vec![Key::str("b"), Key::str("a")]
        );
        let sorted: Vec<_> = node.sorted().map(|(k, _)| *k).collect();
        assert_eq!(sorted, vec![Key::str("a"), Key::str("b")]);
        // Replacing an existing key keeps its place.
        node.insert(Key::str("b"), var().into());
        assert_eq!(node.get_index(0).unwrap().0, &Key::str("b"));
    }

    #[test]
    fn prune_drops_empty_subtrees_and_shares_clean_ones() {
        let mut inner = Node::new();
        inner.insert(Key::str("x"), var().into());
        let clean = Arc::new(inner);
        assert!(Arc::ptr_eq(&prune(&clean).unwrap(), &clean));

        let mut dirty = (*clean).clone();
        dirty.insert(Key::str("empty"), Child::Node(Arc::new(Node::new())));
        let pruned = prune(&Arc::new(dirty)).unwrap();
        assert_eq!(pruned.len(), 1);
        assert!(prune(&Arc::new(Node::new())).is_none());
    }
}
