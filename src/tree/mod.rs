//! The nested tree: ordered nodes of keys to children, and leaves.
//!
//! Nodes are immutable once shared: a [`Node`] sits behind an `Arc`, and a
//! change clones only the nodes on the path to it (copy on write). Leaves are
//! shared `Arc`s, so no operation copies a variable or a tensor byte.

use std::sync::{Arc, OnceLock};

use smallvec::SmallVec;

mod canonical;
mod entries;
mod summary;

pub use canonical::{canonical, prune};
use entries::*;
pub use entries::{Iter, Sorted};
pub use summary::LeafTypes;
use summary::*;

use crate::array::Array;
use crate::key::Key;
use crate::variable::Variable;

/// A leaf: a variable or a bare array.
#[derive(Clone, Debug)]
pub enum Leaf {
    Variable(Arc<Variable>),
    Array(Arc<Array>),
}

impl Leaf {
    /// What kind of child this leaf is.
    pub fn kind(&self) -> Kind {
        match self {
            Leaf::Variable(_) => Kind::Variable,
            Leaf::Array(_) => Kind::Array,
        }
    }

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
            Child::Leaf(leaf) => leaf.kind(),
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
///
/// The operations recurse once per level, so a tree must stay within
/// [`crate::MAX_DEPTH`] levels: `State`'s setters and every loader check
/// it; a tree built node by node with [`Node::insert`] is the builder's to
/// keep within it. Freeing is safe at any depth (see `FREED_RECURSIVELY`).
#[derive(Debug)]
pub struct Node {
    entries: Entries,
    /// What is below, kept up to date by every change (see [`Summary`]), so
    /// that operations can place or share a whole subtree without a walk.
    summary: Summary,
    /// Facts derived from the subtree, made on first need and dropped by any
    /// change to this node (a change below goes through `insert` or
    /// `child_mut`, so it drops them too). Boxed, and only once needed, to
    /// keep nodes small.
    derived: OnceLock<Box<Derived>>,
}

#[derive(Debug, Default)]
struct Derived {
    /// For a large node whose keys are not in order: the entries' indices
    /// in key order (a small node sorts on the stack as it is walked).
    order: OnceLock<Box<[u32]>>,
    /// What the operations remember of this node (see [`Node::memo`]).
    memo: OnceLock<Box<dyn std::any::Any + Send + Sync>>,
}

/// A copy has the same entries and nothing derived yet: it is cheap to
/// derive again, and the copy is usually about to change.
impl Clone for Node {
    fn clone(&self) -> Self {
        Node {
            entries: self.entries.clone(),
            summary: self.summary,
            derived: OnceLock::new(),
        }
    }
}

/// The nodes on a path, taken out of their parents by
/// [`Node::node_at_mut`]; put back bottom up when this goes, each parent's
/// summary brought up to date with its changed child.
struct Detached<'a> {
    root: &'a mut Node,
    path: &'a [Key],
    /// The node at each level so far, with what its parent's summary
    /// counted for it: on the stack for paths of up to 8 keys, as model
    /// paths are, since every set goes through here.
    taken: SmallVec<[(Arc<Node>, Summary); 8]>,
}

impl Detached<'_> {
    /// The deepest node reached, writable.
    fn last(&mut self) -> &mut Node {
        match self.taken.last_mut() {
            Some((node, _)) => Arc::make_mut(node),
            None => self.root,
        }
    }
}

impl Drop for Detached<'_> {
    fn drop(&mut self) {
        while let Some((node, before)) = self.taken.pop() {
            let key = &self.path[self.taken.len()];
            self.last().put_node(key, node, before);
        }
    }
}

/// A shared empty node: the stand-in for a node taken out of its parent
/// for a moment (see [`Node::node_at_mut`]), and what an operation gives
/// where it selects nothing, so that neither allocates. Nodes are copied
/// on write, so sharing one is safe.
pub fn empty_node() -> Arc<Node> {
    static EMPTY: OnceLock<Arc<Node>> = OnceLock::new();
    EMPTY.get_or_init(|| Arc::new(Node::new())).clone()
}

/// Nodes this many levels high or less are freed the ordinary way, one
/// nested call per level; higher ones without recursion, so that freeing a
/// tree never needs stack in proportion to its depth.
const FREED_RECURSIVELY: u8 = 16;

impl Drop for Node {
    fn drop(&mut self) {
        if self.summary.height <= FREED_RECURSIVELY {
            return;
        }
        // Take the nested nodes out, and free each one that nothing else
        // holds after taking its own nested nodes out: every node is then
        // freed with no nested node left in it.
        let mut pending = Vec::new();
        self.entries.take_nodes(&mut pending);
        while let Some(node) = pending.pop() {
            if let Some(mut node) = Arc::into_inner(node) {
                node.entries.take_nodes(&mut pending);
            }
        }
    }
}

impl Default for Node {
    fn default() -> Self {
        Node::new()
    }
}

impl Node {
    pub fn new() -> Node {
        Node::with_capacity(0)
    }

    pub fn with_capacity(capacity: usize) -> Node {
        Node {
            entries: Entries::with_capacity(capacity),
            summary: Summary::EMPTY,
            derived: OnceLock::new(),
        }
    }

    fn derived(&self) -> &Derived {
        self.derived.get_or_init(Default::default)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.len() == 0
    }

    pub fn get(&self, key: &Key) -> Option<&Child> {
        self.entries.get(key)
    }

    /// Runs `f` on the child at `key`, which it may change, and brings this
    /// node's summary up to date with the result. `None` when `key` is
    /// absent. Changes go through here rather than a plain `&mut Child` so
    /// that no change can leave the summary stale.
    pub fn child_mut<R>(&mut self, key: &Key, f: impl FnOnce(&mut Child) -> R) -> Option<R> {
        self.derived = OnceLock::new();
        let child = self.entries.get_mut(key)?;
        let before = Summary::of(child);
        let result = f(child);
        self.summary = self.summary.with(child, Some(&before));
        Some(result)
    }

    /// Runs `f` on the nested node at `key`, made writable (copied first if
    /// shared); `None` when `key` holds a leaf or nothing.
    pub fn node_mut<R>(&mut self, key: &Key, f: impl FnOnce(&mut Node) -> R) -> Option<R> {
        self.child_mut(key, |child| match child {
            Child::Node(n) => Some(f(Arc::make_mut(n))),
            Child::Leaf(_) => None,
        })
        .flatten()
    }

    /// Runs `f` on the node at `path` below this one, each node on the way
    /// made writable. With `create`, what is in the way (nothing, or a leaf)
    /// is replaced by a new empty node; without, that gives `None`.
    ///
    /// Without recursion: the nodes on the way are taken out of their
    /// parents one level at a time, and put back bottom up once `f` has
    /// run, each parent's summary brought up to date with its changed
    /// child. So the stack it uses does not grow with the path.
    pub fn node_at_mut<R>(
        &mut self,
        path: &[Key],
        create: bool,
        f: impl FnOnce(&mut Node) -> R,
    ) -> Option<R> {
        let mut way = Detached {
            root: self,
            path,
            taken: SmallVec::new(),
        };
        for key in path {
            let parent = way.last();
            if create && !matches!(parent.get(key), Some(Child::Node(_))) {
                parent.insert(*key, Child::Node(Arc::new(Node::new())));
            }
            let detached = parent.take_node(key)?;
            way.taken.push(detached);
        }
        Some(f(way.last()))
        // `way` puts the nodes back as it goes, also if `f` panics.
    }

    /// Takes the nested node at `key` out, leaving an empty stand-in that
    /// [`Node::put_node`] replaces; `None` when `key` holds a leaf or
    /// nothing. Returns the node and what this node's summary counts for it.
    fn take_node(&mut self, key: &Key) -> Option<(Arc<Node>, Summary)> {
        let child = self.entries.get_mut(key)?;
        let Child::Node(node) = child else {
            return None;
        };
        self.derived = OnceLock::new();
        let before = node.summary;
        let node = std::mem::replace(node, empty_node());
        Some((node, before))
    }

    /// Puts back a node taken out by [`Node::take_node`], maybe changed.
    fn put_node(&mut self, key: &Key, node: Arc<Node>, before: Summary) {
        let child = self
            .entries
            .get_mut(key)
            .expect("a taken node's key stays while it is out");
        *child = Child::Node(node);
        self.summary = self.summary.with(child, Some(&before));
    }

    pub fn get_index(&self, index: usize) -> Option<(&Key, &Child)> {
        self.entries.get_index(index)
    }

    /// Sets `key`: an existing key keeps its position, a new one goes last.
    /// Returns what was there.
    pub fn insert(&mut self, key: Key, child: Child) -> Option<Child> {
        self.derived = OnceLock::new();
        let summary = self.summary.with(&child, None);
        let (index, old) = self.entries.insert_full(key, child);
        self.summary = summary;
        match &old {
            Some(old) => self.summary.leaves -= Summary::of(old).leaves,
            None if self.summary.sorted && index > 0 => {
                let (before, _) = self.entries.get_index(index - 1).expect("index - 1 exists");
                let (new, _) = self.entries.get_index(index).expect("index exists");
                self.summary.sorted = before < new;
            }
            None => {}
        }
        self.summary.sorted_below &= self.summary.sorted;
        old
    }

    /// Removes `key`, keeping the order of the others.
    pub fn remove(&mut self, key: &Key) -> Option<Child> {
        self.derived = OnceLock::new();
        let old = self.entries.shift_remove(key)?;
        self.summary.leaves -= Summary::of(&old).leaves;
        Some(old)
    }

    /// Children in insertion order.
    pub fn iter(&self) -> Iter<'_> {
        self.entries.iter()
    }

    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.entries.iter().map(|(k, _)| k)
    }

    /// Children in key order. A small unsorted node sorts its few indices on
    /// the stack; a large one sorts once and keeps the order until it
    /// changes.
    pub fn sorted(&self) -> Sorted<'_> {
        if self.summary.sorted {
            return Sorted(InKeyOrder::Listed(self.entries.iter()));
        }
        if self.len() <= SMALL {
            let order = Order::by_key(&self.entries);
            return Sorted(InKeyOrder::Listed(Iter(Walk::Picked(
                &self.entries,
                order,
                0,
            ))));
        }
        let key = |i: usize| self.entries.get_index(i).map(|(k, _)| k);
        let order = self.derived().order.get_or_init(|| {
            let mut order: Vec<u32> = (0..self.len() as u32).collect();
            order.sort_unstable_by(|&a, &b| key(a as usize).cmp(&key(b as usize)));
            order.into_boxed_slice()
        });
        Sorted(InKeyOrder::Large(self, order.iter()))
    }

    /// What the operations remember about this node (see `ops::memo`),
    /// made on first need and dropped by any change to it. The tree keeps
    /// the slot; what goes in it is the operations' business.
    pub(crate) fn memo<T: std::any::Any + Default + Send + Sync>(&self) -> Option<&T> {
        let slot = self.derived().memo.get_or_init(|| Box::new(T::default()));
        slot.downcast_ref()
    }

    /// The memo if one was made, without making one.
    pub(crate) fn memo_if_made<T: std::any::Any>(&self) -> Option<&T> {
        self.derived.get()?.memo.get()?.downcast_ref()
    }

    /// The kinds of leaves below this node, or more (see the node summary
    /// in `tree::summary`): lets a filter that looks only at types place a
    /// whole subtree without visiting its leaves.
    pub fn leaf_types(&self) -> LeafTypes {
        self.summary.types
    }

    /// Number of leaves below this node.
    pub fn num_leaves(&self) -> usize {
        self.summary.leaves as usize
    }

    /// How many levels lie below this node, exactly: 0 for an empty node,
    /// 1 for one holding only leaves. Walks the subtree (without recursion)
    /// only when the bound kept in the summary is past `at_most`: that is
    /// all a caller checking a limit needs to know, and a tree whose bound
    /// is within it answers at once.
    pub fn height(&self, at_most: usize) -> usize {
        let bound = self.summary.height as usize;
        if bound <= at_most {
            return bound;
        }
        let mut deepest = 0;
        let mut pending: Vec<(&Node, usize)> = vec![(self, 0)];
        while let Some((node, depth)) = pending.pop() {
            for (_, child) in node.iter() {
                deepest = deepest.max(depth + 1);
                if let Child::Node(n) = child {
                    pending.push((n, depth + 1));
                }
            }
        }
        deepest
    }

    /// Whether some leaf lies below this node.
    pub fn has_leaves(&self) -> bool {
        self.summary.leaves > 0
    }

    /// Keys in order at every level, as far as the summary tells (it may
    /// say no where the answer is yes, never the reverse).
    pub(crate) fn sorted_below(&self) -> bool {
        self.summary.sorted_below
    }

    /// Whether the node is, as far as its summary tells, in the form filter
    /// outputs take (see [`canonical`]): leaves below, keys in order at
    /// every level, no empty nested node.
    fn is_canonical(&self) -> bool {
        self.has_leaves() && self.summary.sorted_below && self.summary.no_empty
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
