//! A node's entries: a small vector or an index map, or another node's
//! entries seen in key order (the canonical twin), and walks over them.

use std::hash::BuildHasherDefault;
use std::sync::Arc;

use indexmap::IndexMap;
use rustc_hash::FxHasher;
use smallvec::SmallVec;

use super::*;
use crate::key::Key;

pub(crate) type Index = IndexMap<Key, Child, BuildHasherDefault<FxHasher>>;

/// Nodes up to this many keys keep a plain vector and find keys by a linear
/// scan (a key compares in one instruction: texts are interned); larger ones
/// switch to an index map. Most nodes of a model are small, and building
/// them is the bulk of what filter and split do, so they save the hash
/// table's allocation.
pub(crate) const SMALL: usize = 8;

/// How many entries a node holds inline, in its own allocation; more go to
/// a separate one. Filter and split outputs are mostly nodes of one or two
/// entries (the part of a module that falls to one output), and building
/// such a node is then one allocation, not two. Inline room costs every
/// node its size, used or not: with four slots (a node of 184 bytes) a
/// split of a model-shaped state was a third slower than with two (120).
pub(crate) const INLINE: usize = 2;

pub(crate) type SmallEntries = SmallVec<[(Key, Child); INLINE]>;

/// A node's entries in insertion order.
#[derive(Clone, Debug)]
pub(crate) enum Entries {
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
pub(crate) struct Order {
    pub(crate) indices: [u8; SMALL],
    pub(crate) len: u8,
}

impl Order {
    /// The indices of `entries` in key order (an insertion sort: at most
    /// `SMALL` of them).
    pub(crate) fn by_key(entries: &Entries) -> Order {
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

    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.indices[..self.len as usize]
    }
}

impl Default for Entries {
    fn default() -> Self {
        Entries::Small(SmallEntries::new())
    }
}

impl Entries {
    pub(crate) fn with_capacity(capacity: usize) -> Entries {
        if capacity <= SMALL {
            Entries::Small(SmallEntries::with_capacity(capacity))
        } else {
            Entries::Large(Box::new(Index::with_capacity_and_hasher(
                capacity,
                Default::default(),
            )))
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Entries::Small(v) => v.len(),
            Entries::Large(m) => m.len(),
            Entries::Picked(_, order) => order.len as usize,
        }
    }

    pub(crate) fn get(&self, key: &Key) -> Option<&Child> {
        match self {
            Entries::Small(v) => v.iter().find(|(k, _)| k == key).map(|(_, c)| c),
            Entries::Large(m) => m.get(key),
            Entries::Picked(..) => self.iter().find(|(k, _)| *k == key).map(|(_, c)| c),
        }
    }

    pub(crate) fn get_mut(&mut self, key: &Key) -> Option<&mut Child> {
        self.own();
        match self {
            Entries::Small(v) => v.iter_mut().find(|(k, _)| k == key).map(|(_, c)| c),
            Entries::Large(m) => m.get_mut(key),
            Entries::Picked(..) => unreachable!("owned above"),
        }
    }

    pub(crate) fn get_index(&self, index: usize) -> Option<(&Key, &Child)> {
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
    pub(crate) fn take_nodes(&mut self, out: &mut Vec<Arc<Node>>) {
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
    pub(crate) fn own(&mut self) {
        if let Entries::Picked(..) = self {
            let owned: SmallEntries = self.iter().map(|(k, c)| (*k, c.clone())).collect();
            *self = Entries::Small(owned);
        }
    }

    /// Sets `key`, keeping its position if present; returns its index and
    /// what was there.
    pub(crate) fn insert_full(&mut self, key: Key, child: Child) -> (usize, Option<Child>) {
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

    pub(crate) fn shift_remove(&mut self, key: &Key) -> Option<Child> {
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

    pub(crate) fn iter(&self) -> Iter<'_> {
        match self {
            Entries::Small(v) => Iter(Walk::Small(v.iter())),
            Entries::Large(m) => Iter(Walk::Large(m.iter())),
            Entries::Picked(node, order) => Iter(Walk::Picked(&node.entries, *order, 0)),
        }
    }
}

/// Children of a node in insertion order.
pub struct Iter<'a>(pub(crate) Walk<'a>);

pub(crate) enum Walk<'a> {
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

/// Children of a node in key order.
pub struct Sorted<'a>(pub(crate) InKeyOrder<'a>);

pub(crate) enum InKeyOrder<'a> {
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
