//! The nested tree: ordered nodes of keys to children, and leaves.
//!
//! Nodes are immutable once shared: a [`Node`] sits behind an `Arc`, and a
//! change clones only the nodes on the path to it (copy on write). Leaves are
//! shared `Arc`s, so no operation copies a variable or a tensor byte.

use std::hash::BuildHasherDefault;
use std::sync::{Arc, OnceLock};

use indexmap::IndexMap;
use rustc_hash::FxHasher;
use smallvec::SmallVec;

use crate::array::Array;
use crate::key::Key;
use crate::variable::Variable;

type Index = IndexMap<Key, Child, BuildHasherDefault<FxHasher>>;

/// Nodes up to this many keys keep a plain vector and find keys by a linear
/// scan (a key compares in one instruction: texts are interned); larger ones
/// switch to an index map. Most nodes of a model are small, and building
/// them is the bulk of what filter and split do, so they save the hash
/// table's allocation.
const SMALL: usize = 8;

/// How many entries a node holds inline, in its own allocation; more go to
/// a separate one. Filter and split outputs are mostly nodes of one or two
/// entries (the part of a module that falls to one output), and building
/// such a node is then one allocation, not two. Inline room costs every
/// node its size, used or not: with four slots (a node of 184 bytes) a
/// split of a model-shaped state was a third slower than with two (120).
const INLINE: usize = 2;

type SmallEntries = SmallVec<[(Key, Child); INLINE]>;

/// A node's entries in insertion order.
#[derive(Clone, Debug)]
enum Entries {
    Small(SmallEntries),
    Large(Box<Index>),
    /// Another node's entries in this order, not copied: the canonical twin
    /// of a small node whose keys are only out of order (see [`canonical`]),
    /// made without touching its leaves. It holds that node's very entries,
    /// so it keeps nothing alive that the twin would not. A change copies
    /// the entries out first.
    Picked(Arc<Node>, Order),
}

/// Indices into a small node's entries, in the order they are to be seen.
#[derive(Clone, Copy, Debug)]
struct Order {
    indices: [u8; SMALL],
    len: u8,
}

impl Order {
    /// The indices of `entries` in key order (an insertion sort: at most
    /// `SMALL` of them).
    fn by_key(entries: &Entries) -> Order {
        let len = entries.len().min(SMALL);
        let key = |i: u8| entries.get_index(i as usize).map(|(k, _)| k);
        let mut indices = [0u8; SMALL];
        for i in 0..len as u8 {
            let mut j = i as usize;
            while j > 0 && key(indices[j - 1]) > key(i) {
                indices[j] = indices[j - 1];
                j -= 1;
            }
            indices[j] = i;
        }
        Order {
            indices,
            len: len as u8,
        }
    }

    fn as_slice(&self) -> &[u8] {
        &self.indices[..self.len as usize]
    }
}

impl Default for Entries {
    fn default() -> Self {
        Entries::Small(SmallEntries::new())
    }
}

impl Entries {
    fn with_capacity(capacity: usize) -> Entries {
        if capacity <= SMALL {
            Entries::Small(SmallEntries::with_capacity(capacity))
        } else {
            Entries::Large(Box::new(Index::with_capacity_and_hasher(
                capacity,
                Default::default(),
            )))
        }
    }

    fn len(&self) -> usize {
        match self {
            Entries::Small(v) => v.len(),
            Entries::Large(m) => m.len(),
            Entries::Picked(_, order) => order.len as usize,
        }
    }

    fn position(&self, key: &Key) -> Option<usize> {
        match self {
            Entries::Small(v) => v.iter().position(|(k, _)| k == key),
            Entries::Large(m) => m.get_index_of(key),
            Entries::Picked(..) => self.iter().position(|(k, _)| k == key),
        }
    }

    fn get(&self, key: &Key) -> Option<&Child> {
        match self {
            Entries::Small(v) => v.iter().find(|(k, _)| k == key).map(|(_, c)| c),
            Entries::Large(m) => m.get(key),
            Entries::Picked(..) => self.iter().find(|(k, _)| *k == key).map(|(_, c)| c),
        }
    }

    fn get_mut(&mut self, key: &Key) -> Option<&mut Child> {
        self.own();
        match self {
            Entries::Small(v) => v.iter_mut().find(|(k, _)| k == key).map(|(_, c)| c),
            Entries::Large(m) => m.get_mut(key),
            Entries::Picked(..) => unreachable!("owned above"),
        }
    }

    fn get_index(&self, index: usize) -> Option<(&Key, &Child)> {
        match self {
            Entries::Small(v) => v.get(index).map(|(k, c)| (k, c)),
            Entries::Large(m) => m.get_index(index),
            Entries::Picked(node, order) => node
                .entries
                .get_index(*order.as_slice().get(index)? as usize),
        }
    }

    /// Empties the entries, dropping the leaves and moving the nested
    /// nodes (and a twin's source) to `out`.
    fn take_nodes(&mut self, out: &mut Vec<Arc<Node>>) {
        let mut keep = |child: Child| {
            if let Child::Node(n) = child {
                out.push(n);
            }
        };
        match std::mem::take(self) {
            Entries::Small(v) => v.into_iter().for_each(|(_, c)| keep(c)),
            Entries::Large(m) => m.into_iter().for_each(|(_, c)| keep(c)),
            Entries::Picked(source, _) => out.push(source),
        }
    }

    /// Copies picked entries out, so that they can change.
    fn own(&mut self) {
        if let Entries::Picked(..) = self {
            let owned: SmallEntries = self.iter().map(|(k, c)| (*k, c.clone())).collect();
            *self = Entries::Small(owned);
        }
    }

    /// Sets `key`, keeping its position if present; returns its index and
    /// what was there.
    fn insert_full(&mut self, key: Key, child: Child) -> (usize, Option<Child>) {
        self.own();
        if let Entries::Small(v) = self {
            if let Some(i) = v.iter().position(|(k, _)| *k == key) {
                return (i, Some(std::mem::replace(&mut v[i].1, child)));
            }
            if v.len() < SMALL {
                v.push((key, child));
                return (v.len() - 1, None);
            }
            let mut index = Index::with_capacity_and_hasher(SMALL * 2, Default::default());
            index.extend(v.drain(..));
            *self = Entries::Large(Box::new(index));
        }
        match self {
            Entries::Large(m) => m.insert_full(key, child),
            Entries::Small(_) | Entries::Picked(..) => unreachable!("made large above"),
        }
    }

    fn shift_remove(&mut self, key: &Key) -> Option<Child> {
        self.own();
        match self {
            Entries::Small(v) => {
                let i = v.iter().position(|(k, _)| k == key)?;
                Some(v.remove(i).1)
            }
            Entries::Large(m) => m.shift_remove(key),
            Entries::Picked(..) => unreachable!("owned above"),
        }
    }

    fn iter(&self) -> Iter<'_> {
        match self {
            Entries::Small(v) => Iter(Walk::Small(v.iter())),
            Entries::Large(m) => Iter(Walk::Large(m.iter())),
            Entries::Picked(node, order) => Iter(Walk::Picked(&node.entries, *order, 0)),
        }
    }
}

/// Children of a node in insertion order.
pub struct Iter<'a>(Walk<'a>);

enum Walk<'a> {
    Small(std::slice::Iter<'a, (Key, Child)>),
    Large(indexmap::map::Iter<'a, Key, Child>),
    /// Entries in the given order.
    Picked(&'a Entries, Order, usize),
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a Key, &'a Child);

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.0 {
            Walk::Small(it) => it.next().map(|(k, c)| (k, c)),
            Walk::Large(it) => it.next(),
            Walk::Picked(entries, order, next) => {
                let i = *order.as_slice().get(*next)?;
                *next += 1;
                entries.get_index(i as usize)
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.0 {
            Walk::Small(it) => it.size_hint(),
            Walk::Large(it) => it.size_hint(),
            Walk::Picked(_, order, next) => {
                let left = order.as_slice().len() - *next;
                (left, Some(left))
            }
        }
    }
}

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

/// Facts about a subtree that each change updates in constant time from
/// the changed child's own summary: a node being built or edited pays a
/// few instructions per change, and split, filter, merge and prune read
/// them instead of walking the leaves.
#[derive(Clone, Copy, Debug, Default)]
struct Summary {
    /// The kinds of leaves below, or more: a change that takes a leaf away
    /// leaves its kind in. Enough to place a subtree whose kinds all go to
    /// one output, which is all it is used for.
    types: LeafTypes,
    /// The number of leaves below, exactly.
    leaves: u64,
    /// Whether this node's keys are in ascending order, so sorted walks
    /// need not sort.
    sorted: bool,
    /// Keys in order here and at every level below. With `no_empty`, the
    /// form filter outputs take (see [`canonical`]), so an output can share
    /// this node as is. Like `no_empty`, it may be false when it is true
    /// (some edits do not look far enough to tell), never the reverse.
    sorted_below: bool,
    /// No nested node without leaves, here or below (see [`prune`]).
    no_empty: bool,
    /// How many levels lie below, or more: a leaf here makes 1, a nested
    /// node one more than its own. Like `types`, a change that takes a
    /// deep child away leaves the bound as it was. Lets `State` check the
    /// nesting limit when it puts a subtree somewhere, and tells `drop`
    /// when freeing needs care (see [`Node::exact_height`]).
    height: u8,
}

impl Summary {
    const EMPTY: Summary = Summary {
        types: LeafTypes { bits: 0 },
        leaves: 0,
        sorted: true,
        sorted_below: true,
        no_empty: true,
        height: 0,
    };

    fn of(child: &Child) -> Summary {
        match child {
            Child::Leaf(leaf) => Summary {
                types: LeafTypes::of(leaf),
                ..Summary::LEAF
            },
            Child::Node(n) => n.summary,
        }
    }

    /// What a leaf adds, but for its type.
    const LEAF: Summary = Summary {
        leaves: 1,
        ..Summary::EMPTY
    };

    /// This summary with `child` added (or changed: `before` is what it
    /// summarized before).
    fn with(self, child: &Child, before: Option<&Summary>) -> Summary {
        let mut sum = self.plus(Summary::of(child));
        sum.leaves -= before.map_or(0, |b| b.leaves);
        sum
    }

    /// This summary with a child summarized by `below` added.
    fn plus(self, below: Summary) -> Summary {
        Summary {
            types: self.types.union(below.types),
            leaves: self.leaves + below.leaves,
            sorted: self.sorted,
            sorted_below: self.sorted_below && below.sorted_below,
            no_empty: self.no_empty && below.no_empty && below.leaves > 0,
            height: self.height.max(below.height.saturating_add(1)),
        }
    }
}

#[derive(Debug, Default)]
struct Derived {
    /// For a large node whose keys are not in order: the entries' indices
    /// in key order (a small node sorts on the stack as it is walked).
    order: OnceLock<Box<[u32]>>,
    /// What the operations remember of this node (see [`Node::memo`]).
    memo: OnceLock<Box<dyn std::any::Any + Send + Sync>>,
}

/// Which kinds of leaves lie below a node, in one word: a bit per variable
/// type id below `LeafTypes::OVERFLOW` (62), that bit when some variable's
/// type id is too large for the set, and bit `LeafTypes::ARRAY` (63) for
/// bare arrays.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeafTypes {
    bits: u64,
}

impl LeafTypes {
    /// The bit that stands for bare arrays.
    pub(crate) const ARRAY: u32 = 63;
    /// The bit that stands for all type ids from this one up.
    pub(crate) const OVERFLOW: u32 = 62;

    /// The kind of one leaf.
    pub(crate) fn of(leaf: &Leaf) -> LeafTypes {
        let bit = match leaf {
            Leaf::Array(_) => Self::ARRAY,
            Leaf::Variable(v) => v.type_id().raw().min(Self::OVERFLOW),
        };
        LeafTypes { bits: 1 << bit }
    }

    fn union(self, other: LeafTypes) -> LeafTypes {
        LeafTypes {
            bits: self.bits | other.bits,
        }
    }

    fn overflowed(self) -> bool {
        self.bits & (1 << Self::OVERFLOW) != 0
    }

    /// The type ids present (and `LeafTypes::ARRAY` (63) for bare arrays), or
    /// `None` when the set overflowed and cannot tell.
    pub fn members(self) -> Option<impl Iterator<Item = u32>> {
        let bits = self.bits()?;
        Some((0..=Self::ARRAY).filter(move |i| bits & (1 << i) != 0))
    }

    pub fn is_empty(self) -> bool {
        self.bits == 0
    }

    /// The set as bits (bit `i` for type id `i`, `ARRAY` for bare arrays),
    /// or `None` when it overflowed and cannot tell.
    pub(crate) fn bits(self) -> Option<u64> {
        (!self.overflowed()).then_some(self.bits)
    }
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
    /// counted for it.
    taken: Vec<(Arc<Node>, Summary)>,
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
/// for a moment (see [`Node::node_at_mut`]), so that taking one out
/// allocates nothing.
fn empty_node() -> Arc<Node> {
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
            taken: Vec::with_capacity(path.len()),
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

    /// The position of `key` in insertion order.
    pub fn index_of(&self, key: &Key) -> Option<usize> {
        self.entries.position(key)
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

    /// The kinds of leaves below this node, or more (see [`Summary`]): lets
    /// a filter that looks only at types place a whole subtree without
    /// visiting its leaves.
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

    /// Whether the node is, as far as its summary tells, in the form filter
    /// outputs take (see [`canonical`]): leaves below, keys in order at
    /// every level, no empty nested node.
    fn is_canonical(&self) -> bool {
        self.has_leaves() && self.summary.sorted_below && self.summary.no_empty
    }

    /// Checks this node's summary, and those below, against what the
    /// entries hold: the kinds may be more than those present, the leaf
    /// count must be exact, and each flag may be false when the property
    /// holds but not the reverse. For tests and fuzzing.
    #[doc(hidden)]
    pub fn check_summary(&self) -> Result<(), String> {
        self.actual_summary().map(|_| ())
    }

    /// The summary this node should have (with the kinds actually present),
    /// once the summaries below are checked.
    fn actual_summary(&self) -> Result<Summary, String> {
        let keys: Vec<&Key> = self.keys().collect();
        let sorted = keys.windows(2).all(|w| w[0] < w[1]);
        let mut actual = Summary {
            sorted,
            sorted_below: sorted,
            ..Summary::EMPTY
        };
        for (key, child) in self.iter() {
            let below = match child {
                Child::Node(n) => n.actual_summary().map_err(|e| format!("{key}/{e}"))?,
                Child::Leaf(_) => Summary::of(child),
            };
            actual = actual.plus(below);
        }
        let claimed = self.summary;
        let problems = [
            (
                claimed.types.bits & actual.types.bits != actual.types.bits,
                "kinds",
            ),
            (claimed.leaves != actual.leaves, "leaf count"),
            (claimed.sorted && !actual.sorted, "sorted"),
            (claimed.sorted_below && !actual.sorted_below, "sorted below"),
            (claimed.no_empty && !actual.no_empty, "no empty subtree"),
            (claimed.height < actual.height, "height"),
        ];
        match problems.iter().find(|(wrong, _)| *wrong) {
            Some((_, what)) => Err(format!(
                ": summary wrong ({what}): {claimed:?}, actual {actual:?}"
            )),
            None => Ok(actual),
        }
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

/// Children of a node in key order.
pub struct Sorted<'a>(InKeyOrder<'a>);

enum InKeyOrder<'a> {
    /// In key order already, or (a small node) its indices sorted on the
    /// stack.
    Listed(Iter<'a>),
    /// A large node's indices in key order, kept in the node.
    Large(&'a Node, std::slice::Iter<'a, u32>),
}

impl<'a> Iterator for Sorted<'a> {
    type Item = (&'a Key, &'a Child);

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.0 {
            InKeyOrder::Listed(it) => it.next(),
            InKeyOrder::Large(node, order) => {
                let i = *order.next()?;
                node.entries.get_index(i as usize)
            }
        }
    }
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
