//! A columnar form of a state: one shared [`Table`] holding a tree's
//! structure and leaves as arrays, and [`View`]s of it, each the row numbers
//! of the leaves one state holds.
//!
//! A split or filter of a view is one pass over its rows' leaf types,
//! writing row numbers into its outputs; a merge of views of one table is a
//! pass over their rows. Neither touches a leaf or allocates a node, which
//! is what a first call on a tree pays per leaf. Any other use of a state
//! turns its view into a tree once (see [`View::to_node`]): the result is
//! exactly the tree the tree's own operations would have given.
//!
//! Outputs are independent as in NNX: the table counts, per row, the views
//! holding it, and lets a leaf go when its count reaches zero, so dropping a
//! part frees what only that part held.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use crate::error::{bail, Result};
use crate::filter::{compile_all, Filter, Matcher};
use crate::key::{format_path_tuple, Key};
use crate::ops::memo::{Memo, PartitionKey};
use crate::ops::FlatEntry;
use crate::tree::{Child, Leaf, LeafTypes, Node};
use crate::types;

/// Marks a row number among node numbers in a list of children.
const ROW: u32 = 1 << 31;

/// The structure and leaves of a tree in depth-first order with every
/// node's keys sorted (the order of NNX's split and filter outputs), so a
/// lower row number is an earlier path.
pub struct Table {
    /// Node 0 is the root; every other node comes after its parent.
    node_parent: Vec<u32>,
    node_key: Vec<Key>,
    node_depth: Vec<u32>,
    /// A node's place in the depth-first order of nodes and rows together:
    /// how a merge tells whether its parts meet children in table order.
    node_pre: Vec<u32>,
    row_parent: Vec<u32>,
    row_key: Vec<Key>,
    row_pre: Vec<u32>,
    row_types: Vec<LeafTypes>,
    held: Mutex<Held>,
}

/// Per row, how many views hold it, and its leaf while any does.
struct Held {
    count: Vec<u32>,
    leaves: Vec<Option<Leaf>>,
}

impl Table {
    /// A table of the root alone, with room for `nodes` nested nodes and
    /// `rows` rows.
    fn with_capacity(nodes: usize, rows: usize) -> Table {
        let with_root = |root: u32| {
            let mut v = Vec::with_capacity(nodes + 1);
            v.push(root);
            v
        };
        let mut node_key = Vec::with_capacity(nodes + 1);
        node_key.push(Key::int(0));
        Table {
            node_parent: with_root(0),
            node_key,
            node_depth: with_root(0),
            node_pre: with_root(0),
            row_parent: Vec::with_capacity(rows),
            row_key: Vec::with_capacity(rows),
            row_pre: Vec::with_capacity(rows),
            row_types: Vec::with_capacity(rows),
            held: Mutex::new(Held {
                count: Vec::new(),
                leaves: Vec::with_capacity(rows),
            }),
        }
    }

    /// Adds a nested node (`pre`: its place in depth-first order); its
    /// number.
    fn push_node(&mut self, parent: u32, key: Key, depth: u32, pre: u32) -> u32 {
        let id = self.node_key.len() as u32;
        self.node_parent.push(parent);
        self.node_key.push(key);
        self.node_depth.push(depth);
        self.node_pre.push(pre);
        id
    }

    /// Adds a row; its number.
    fn push_row(&mut self, parent: u32, key: Key, pre: u32, leaf: Leaf) -> u32 {
        let row = self.row_key.len() as u32;
        self.row_parent.push(parent);
        self.row_key.push(key);
        self.row_pre.push(pre);
        self.row_types.push(LeafTypes::of(&leaf));
        let held = self.held.get_mut().unwrap_or_else(|p| p.into_inner());
        held.leaves.push(Some(leaf));
        row
    }

    /// The finished table's view of `rows`, in that order; `None` when it
    /// has too many nodes for row numbers to be told from node numbers.
    fn into_view(mut self, rows: Vec<u32>) -> Option<View> {
        if self.nodes() >= ROW as usize {
            return None;
        }
        let held = self.held.get_mut().unwrap_or_else(|p| p.into_inner());
        held.count = vec![0; held.leaves.len()];
        let ascending = rows.windows(2).all(|w| w[0] < w[1]);
        Some(View::new(Arc::new(self), rows, ascending))
    }

    fn held(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn rows(&self) -> usize {
        self.row_key.len()
    }

    fn nodes(&self) -> usize {
        self.node_key.len()
    }

    /// Row `row`'s leaf (a new reference: the caller may hold it without
    /// the table's lock).
    fn leaf(&self, row: u32) -> Leaf {
        self.held().leaves[row as usize]
            .clone()
            .expect("a row of a live view is held")
    }

    /// Writes the keys from the root to `node` into `out`, root first.
    fn node_path<'a>(&'a self, node: u32, out: &mut Vec<&'a Key>) {
        out.clear();
        let mut n = node;
        while n != 0 {
            out.push(&self.node_key[n as usize]);
            n = self.node_parent[n as usize];
        }
        out.reverse();
    }
}

/// Builds a table from a tree in one sorted walk.
struct Builder {
    table: Table,
    pre: u32,
    /// Every child as (parent, key, node or `ROW`-tagged row number), in
    /// the walk's order; kept only when the tree's insertion order differs
    /// from key order somewhere, to list the rows in insertion order after.
    children: Option<Vec<(u32, Key, u32)>>,
    /// A nested node without leaves was met: no view can stand for it.
    empty_found: bool,
}

/// Each node's children as (key, node or `ROW`-tagged row), in key order:
/// those of node `n` at `list[start[n]..start[n + 1]]`.
struct Children {
    start: Vec<u32>,
    list: Vec<(Key, u32)>,
}

impl Builder {
    fn add(
        &mut self,
        node: &Node,
        id: u32,
        depth: u32,
        leaf_of: &mut impl FnMut(&Leaf) -> Result<Leaf>,
    ) -> Result<()> {
        for (key, child) in node.sorted() {
            let pre = self.pre;
            self.pre += 1;
            let entry = match child {
                Child::Node(n) if !n.has_leaves() => {
                    self.empty_found = true;
                    return Ok(());
                }
                Child::Node(n) => {
                    let child_id = self.table.push_node(id, *key, depth + 1, pre);
                    self.add(n, child_id, depth + 1, leaf_of)?;
                    child_id
                }
                Child::Leaf(leaf) => self.table.push_row(id, *key, pre, leaf_of(leaf)?) | ROW,
            };
            if let Some(children) = &mut self.children {
                children.push((id, *key, entry));
            }
        }
        Ok(())
    }

    /// The children listed by node, each node's in the walk's key order.
    fn children_by_node(&mut self) -> Children {
        let flat = self.children.take().expect("kept for this");
        Children::of(self.table.nodes(), flat)
    }
}

impl Children {
    /// Lists (parent, key, child) by parent (a counting sort, which keeps
    /// each node's children in the order given).
    fn of(nodes: usize, flat: Vec<(u32, Key, u32)>) -> Children {
        let mut start = vec![0u32; nodes + 1];
        for &(parent, _, _) in &flat {
            start[parent as usize + 1] += 1;
        }
        for n in 0..nodes {
            start[n + 1] += start[n];
        }
        let mut fill = start.clone();
        let mut list = vec![(Key::int(0), 0u32); flat.len()];
        for (parent, key, entry) in flat {
            list[fill[parent as usize] as usize] = (key, entry);
            fill[parent as usize] += 1;
        }
        Children { start, list }
    }

    fn range(&self, node: u32) -> std::ops::Range<usize> {
        self.start[node as usize] as usize..self.start[node as usize + 1] as usize
    }

    fn of_node(&self, node: u32) -> &[(Key, u32)] {
        &self.list[self.range(node)]
    }

    fn of_node_mut(&mut self, node: u32) -> &mut [(Key, u32)] {
        let range = self.range(node);
        &mut self.list[range]
    }

    /// The rows below `node` (table node `id`) in the tree's own order.
    fn insertion_order(&self, node: &Node, id: u32, out: &mut Vec<u32>) {
        let children = self.of_node(id);
        for (key, child) in node.iter() {
            let at = children
                .binary_search_by(|(k, _)| k.cmp(key))
                .expect("every child was listed");
            let entry = children[at].1;
            match child {
                Child::Node(n) => self.insertion_order(n, entry, out),
                Child::Leaf(_) => out.push(entry & !ROW),
            }
        }
    }
}

/// Some rows of a table: the leaves of one state, in that state's order
/// (its depth-first order, every node's children as the state has them).
pub struct View {
    table: Arc<Table>,
    rows: Box<[u32]>,
    /// Whether `rows` ascend (the state's order is key order).
    ascending: bool,
    /// The rows in key order, made on first need when they do not ascend.
    sorted: OnceLock<Box<[u32]>>,
    /// What split, filter and merge remember of this view.
    memo: OnceLock<Box<Memo<View>>>,
}

impl View {
    /// Counts the rows as held by one more view.
    fn new(table: Arc<Table>, rows: Vec<u32>, ascending: bool) -> View {
        {
            let mut held = table.held();
            for &r in &rows {
                held.count[r as usize] += 1;
            }
        }
        View {
            table,
            rows: rows.into_boxed_slice(),
            ascending,
            sorted: OnceLock::new(),
            memo: OnceLock::new(),
        }
    }

    /// The columnar form of `node`, or `None` where it has none: a tree
    /// without leaves, with a nested node without leaves (a view has no
    /// rows to stand for it), or too large for row numbers.
    pub fn of_node(node: &Node) -> Option<View> {
        View::of_node_with(node, &mut |leaf| Ok(leaf.clone())).unwrap_or(None)
    }

    /// [`View::of_node`] holding `leaf_of(leaf)` for each leaf instead (a
    /// deep copy's copies): fails where `leaf_of` fails.
    pub fn of_node_with(
        node: &Node,
        leaf_of: &mut impl FnMut(&Leaf) -> Result<Leaf>,
    ) -> Result<Option<View>> {
        let leaves = node.num_leaves();
        if leaves == 0 || leaves >= ROW as usize {
            return Ok(None);
        }
        let in_key_order = node.sorted_below();
        let mut b = Builder {
            table: Table::with_capacity(0, leaves),
            pre: 1,
            children: (!in_key_order).then(|| Vec::with_capacity(leaves + leaves / 2)),
            empty_found: false,
        };
        b.add(node, 0, 0, leaf_of)?;
        if b.empty_found {
            return Ok(None);
        }
        let rows: Vec<u32> = if in_key_order {
            (0..b.table.rows() as u32).collect()
        } else {
            let mut rows = Vec::with_capacity(leaves);
            b.children_by_node().insertion_order(node, 0, &mut rows);
            rows
        };
        Ok(b.table.into_view(rows))
    }

    /// The columnar form of a flat state in which every subtree's paths
    /// lie together, none is repeated and none runs through another's leaf
    /// (what `to_flat_state` and a model's walk give), in the entries'
    /// order; `None` for any other (the tree's `from_flat` builds those,
    /// with a dictionary's rules for repeats). The paths are checked by the
    /// caller.
    pub fn of_flat<E: FlatEntry>(entries: &[E]) -> Option<View> {
        let n = entries.len();
        if n == 0 || n >= ROW as usize {
            return None;
        }
        // The structure in the entries' order: a nested node is made where
        // a path leaves the previous one's, so a subtree whose paths lie
        // apart gets two nodes of one key, found below.
        let mut node_key: Vec<Key> = vec![Key::int(0)];
        let mut children: Vec<(u32, Key, u32)> = Vec::with_capacity(n + n / 2);
        let mut open: Vec<u32> = vec![0];
        let mut previous: &[Key] = &[];
        for (i, entry) in entries.iter().enumerate() {
            let path = entry.path();
            let (last, parents) = path.split_last().expect("checked: not empty");
            let shared = parents
                .iter()
                .zip(previous)
                .take_while(|(a, b)| a == b)
                .count()
                .min(previous.len().saturating_sub(1));
            open.truncate(shared + 1);
            for key in &parents[shared..] {
                let id = node_key.len() as u32;
                node_key.push(*key);
                children.push((*open.last().expect("the root stays"), *key, id));
                open.push(id);
            }
            children.push((*open.last().expect("the root stays"), *last, i as u32 | ROW));
            previous = path;
        }
        if node_key.len() >= ROW as usize {
            return None;
        }
        let mut by_node = Children::of(node_key.len(), children);
        // Each node's children in key order; a key twice under one node is a
        // repeat, a leaf with paths through it, or a subtree apart.
        for n in 0..node_key.len() {
            let list = by_node.of_node_mut(n as u32);
            list.sort_unstable_by_key(|c| c.0);
            if list.windows(2).any(|w| w[0].0 == w[1].0) {
                return None;
            }
        }
        let mut t = Table::with_capacity(node_key.len(), n);
        // Numbered depth first in key order; entry i becomes row row_of[i].
        let mut row_of = vec![0u32; n];
        let mut pre = 1u32;
        let mut stack: Vec<(u32, u32, usize)> = vec![(0, 0, 0)]; // (entries' node, table node, next child)
        while let Some(top) = stack.last_mut() {
            let (node, id, next) = *top;
            let Some(&(key, child)) = by_node.of_node(node).get(next) else {
                stack.pop();
                continue;
            };
            top.2 += 1;
            if child & ROW != 0 {
                let i = (child & !ROW) as usize;
                row_of[i] = t.push_row(id, key, pre, entries[i].leaf().clone());
            } else {
                let child_id = t.push_node(id, key, stack.len() as u32, pre);
                stack.push((child, child_id, 0));
            }
            pre += 1;
        }
        // The entries' order is the state's own (depth first, each node's
        // children in the order first met).
        t.into_view(row_of)
    }

    pub fn num_leaves(&self) -> usize {
        self.rows.len()
    }

    /// The rows in key order (row numbers ascending).
    fn sorted_rows(&self) -> &[u32] {
        if self.ascending {
            return &self.rows;
        }
        self.sorted.get_or_init(|| {
            let all = self.table.rows();
            if self.rows.len() == all {
                return (0..all as u32).collect();
            }
            if self.rows.len() * 8 < all {
                let mut rows = self.rows.to_vec();
                rows.sort_unstable();
                return rows.into_boxed_slice();
            }
            // Many rows of the table: marking them and reading the marks in
            // order is one linear pass each.
            let mut held = vec![false; all];
            for &r in self.rows.iter() {
                held[r as usize] = true;
            }
            (0..all as u32).filter(|&r| held[r as usize]).collect()
        })
    }

    /// The tree this view stands for, holding the very same leaves.
    pub fn to_node(&self) -> Node {
        let t = &*self.table;
        let held = t.held();
        // The open nodes from the root down: the rows come depth first, so
        // a node is complete once a row outside it comes.
        let mut open: Vec<(u32, Node)> = vec![(0, Node::new())];
        let mut chain = Vec::new();
        for &r in self.rows.iter() {
            let parent = t.row_parent[r as usize];
            if open.last().map(|o| o.0) != Some(parent) {
                // Up from the row's parent to the deepest node still open.
                chain.clear();
                let mut n = parent;
                loop {
                    let depth = t.node_depth[n as usize] as usize;
                    if open.get(depth).map(|o| o.0) == Some(n) {
                        close_to(t, &mut open, depth + 1);
                        break;
                    }
                    chain.push(n);
                    n = t.node_parent[n as usize];
                }
                open.extend(chain.iter().rev().map(|&n| (n, Node::new())));
            }
            let leaf = held.leaves[r as usize]
                .clone()
                .expect("a row of a live view is held");
            let node = &mut open.last_mut().expect("the root stays").1;
            node.insert(t.row_key[r as usize], Child::Leaf(leaf));
        }
        close_to(t, &mut open, 1);
        open.pop().expect("the root").1
    }

    /// (path, leaf) of every leaf, sorted by path, as `ops::flatten` gives.
    pub fn flatten(&self) -> Vec<(Vec<Key>, Leaf)> {
        let t = &*self.table;
        let rows = self.sorted_rows();
        let held = t.held();
        let mut prefix = Vec::new();
        let mut prefix_of = None;
        rows.iter()
            .map(|&r| {
                let parent = t.row_parent[r as usize];
                if prefix_of != Some(parent) {
                    t.node_path(parent, &mut prefix);
                    prefix_of = Some(parent);
                }
                let mut path: Vec<Key> = Vec::with_capacity(prefix.len() + 1);
                path.extend(prefix.iter().map(|k| **k));
                path.push(t.row_key[r as usize]);
                let leaf = held.leaves[r as usize]
                    .clone()
                    .expect("a row of a live view is held");
                (path, leaf)
            })
            .collect()
    }

    fn memo(&self) -> &Memo<View> {
        self.memo.get_or_init(Default::default)
    }

    /// [`View::partition`] of a shared view: the same call with filters
    /// that look only at paths and types gives the outputs it gave last
    /// time, while they are all still held (as the tree's memo does).
    pub fn partition_shared(
        &self,
        filters: &[Filter],
        exhaustive: bool,
    ) -> Result<Vec<Option<Arc<View>>>> {
        let remembered = PartitionKey::applies(filters);
        if remembered {
            if let Some(outputs) = self.memo().cached_partition(filters, exhaustive) {
                return Ok(outputs);
            }
        }
        let outputs: Vec<Option<Arc<View>>> = self
            .partition(filters, exhaustive)?
            .into_iter()
            .map(|o| o.map(Arc::new))
            .collect();
        if remembered {
            self.memo().store_partition(filters, exhaustive, &outputs);
        }
        Ok(outputs)
    }

    /// [`View::merge`] of shared views: merging the same views again gives
    /// the result of last time while it is still held.
    pub fn merge_shared(parts: &[&Arc<View>]) -> Option<Arc<View>> {
        let (first, others) = parts.split_first()?;
        if let Some(result) = first.memo().cached_merge(others) {
            return Some(result);
        }
        let views: Vec<&View> = parts.iter().map(|p| &***p).collect();
        let result = Arc::new(View::merge(&views)?);
        first.memo().store_merge(others, &result);
        Some(result)
    }

    /// NNX's `filter_state` (`exhaustive`: `split_state`) with the tree's
    /// semantics: each leaf, in key order, to the first filter that matches
    /// it; `None` for an output that gets nothing. The caller checks the
    /// filters' number and order, as for the tree.
    pub fn partition(&self, filters: &[Filter], exhaustive: bool) -> Result<Vec<Option<View>>> {
        let t = &*self.table;
        let registry = types::snapshot();
        let matchers = compile_all(filters, &registry)?;
        let mut placer = RowPlacer {
            table: t,
            matchers: &matchers,
            by_type: vec![[TypeAnswer::Unasked; 64]; matchers.len()],
            path: Vec::new(),
            path_of: None,
        };
        // Each row's output first, then outputs of their exact size: one
        // allocation each, where growing them would reallocate often.
        let rows = self.sorted_rows();
        let mut targets = Vec::with_capacity(rows.len());
        let mut sizes = vec![0usize; filters.len() + 1];
        for &r in rows {
            let target = placer.target(r)?.unwrap_or(filters.len());
            sizes[target] += 1;
            targets.push(target as u32);
        }
        let unmatched = sizes[filters.len()];
        let first_unmatched = targets
            .iter()
            .position(|&t| t as usize == filters.len())
            .map(|i| rows[i]);
        let mut outs: Vec<Vec<u32>> = sizes[..filters.len()]
            .iter()
            .map(|&n| Vec::with_capacity(n))
            .collect();
        for (&r, &target) in rows.iter().zip(&targets) {
            if let Some(out) = outs.get_mut(target as usize) {
                out.push(r);
            }
        }
        if exhaustive {
            if let Some(r) = first_unmatched {
                placer.row_path(r);
                bail!(
                    NonExhaustive,
                    "Non-exhaustive filters, got a non-empty remainder: {unmatched} leaf(s) matched \
                     no filter, the first at {}.\nUse `...` to match all remaining elements.",
                    format_path_tuple(&placer.path)
                );
            }
        }
        Ok(outs
            .into_iter()
            .map(|rows| (!rows.is_empty()).then(|| View::new(self.table.clone(), rows, true)))
            .collect())
    }

    /// NNX's `merge_state` of views of one table (`None` when they are not
    /// all of one table: the tree merges those). Every path of a table
    /// holds one leaf, so a path met again brings the leaf it had: the
    /// result is the union of the rows, keys in the order first met, level
    /// by level, as NNX's merge of flat dictionaries orders them.
    pub fn merge(parts: &[&View]) -> Option<View> {
        let (first, others) = parts.split_first()?;
        let table = &first.table;
        if !others.iter().all(|p| Arc::ptr_eq(&p.table, table)) {
            return None;
        }
        let t = &**table;
        // Whether, under every node, children are first met in table order:
        // then the result is the rows in table order.
        let mut node_met = vec![false; t.nodes()];
        let mut last_child_pre = vec![0u32; t.nodes()];
        let mut row_met = vec![false; t.rows()];
        let mut in_order = true;
        let mut met = 0usize;
        for part in parts {
            for &r in part.rows.iter() {
                if std::mem::replace(&mut row_met[r as usize], true) {
                    continue;
                }
                met += 1;
                let parent = t.row_parent[r as usize] as usize;
                in_order &= t.row_pre[r as usize] > last_child_pre[parent];
                last_child_pre[parent] = t.row_pre[r as usize];
                let mut n = parent;
                while n != 0 && !std::mem::replace(&mut node_met[n], true) {
                    let up = t.node_parent[n] as usize;
                    in_order &= t.node_pre[n] > last_child_pre[up];
                    last_child_pre[up] = t.node_pre[n];
                    n = up;
                }
            }
        }
        let rows = if in_order {
            let mut rows = Vec::with_capacity(met);
            rows.extend((0..t.rows() as u32).filter(|&r| row_met[r as usize]));
            rows
        } else {
            // The rows in the order first met, listed only now: the usual
            // merge (the parts of a split) never needs them.
            let mut first_met = Vec::with_capacity(met);
            row_met.fill(false);
            for part in parts {
                for &r in part.rows.iter() {
                    if !std::mem::replace(&mut row_met[r as usize], true) {
                        first_met.push(r);
                    }
                }
            }
            in_order_first_met(t, &first_met)
        };
        Some(View::new(table.clone(), rows, in_order))
    }
}

impl Drop for View {
    fn drop(&mut self) {
        let mut released = Vec::new();
        {
            let mut held = self.table.held();
            for &r in self.rows.iter() {
                let count = &mut held.count[r as usize];
                *count -= 1;
                if *count == 0 {
                    released.push(held.leaves[r as usize].take());
                }
            }
        }
        // Outside the lock: freeing a leaf may run a release callback.
        drop(released);
    }
}

impl std::fmt::Debug for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "View({} of {} rows)", self.rows.len(), self.table.rows())
    }
}

/// Closes the open nodes past the first `len`, deepest first, each put
/// into its parent.
fn close_to(t: &Table, open: &mut Vec<(u32, Node)>, len: usize) {
    while open.len() > len {
        let (id, node) = open.pop().expect("longer than len");
        let parent = &mut open.last_mut().expect("len is at least 1").1;
        parent.insert(t.node_key[id as usize], Child::Node(Arc::new(node)));
    }
}

/// The rows of a merge in its order when the parts met some node's
/// children out of table order: every node's children as first met, depth
/// first. Walking `first_met` lists each node's children already in the
/// order met, so they go into one flat array (counted, then filled) and a
/// walk down from the root reads the result.
fn in_order_first_met(t: &Table, first_met: &[u32]) -> Vec<u32> {
    let nodes = t.nodes();
    let mut met = vec![false; nodes];
    let mut pairs: Vec<(u32, u32)> = Vec::with_capacity(first_met.len() * 2);
    for &r in first_met {
        let mut n = t.row_parent[r as usize];
        pairs.push((n, r | ROW));
        while n != 0 && !std::mem::replace(&mut met[n as usize], true) {
            let up = t.node_parent[n as usize];
            pairs.push((up, n));
            n = up;
        }
    }
    // Children of node n at children[start[n]..start[n + 1]], in order met.
    let mut start = vec![0u32; nodes + 1];
    for &(parent, _) in &pairs {
        start[parent as usize + 1] += 1;
    }
    for n in 0..nodes {
        start[n + 1] += start[n];
    }
    let mut fill = start.clone();
    let mut children = vec![0u32; pairs.len()];
    for &(parent, child) in &pairs {
        children[fill[parent as usize] as usize] = child;
        fill[parent as usize] += 1;
    }
    let mut rows = Vec::with_capacity(first_met.len());
    let mut stack = vec![0u32];
    while let Some(item) = stack.pop() {
        if item & ROW != 0 {
            rows.push(item & !ROW);
        } else {
            let range = start[item as usize] as usize..start[item as usize + 1] as usize;
            stack.extend(children[range].iter().rev());
        }
    }
    rows
}

/// What one matcher answers for every leaf of one type, whatever its path.
#[derive(Clone, Copy)]
enum TypeAnswer {
    Unasked,
    Decided(bool),
    /// The path or the leaf decide.
    Depends,
}

/// The filters of one call, placing rows.
struct RowPlacer<'t, 'm, 'f> {
    table: &'t Table,
    matchers: &'m [Matcher<'f>],
    /// Per matcher, per bit of a row's [`LeafTypes`].
    by_type: Vec<[TypeAnswer; 64]>,
    /// The path of the last row that needed one, and that row.
    path: Vec<&'t Key>,
    path_of: Option<u32>,
}

impl<'t> RowPlacer<'t, '_, '_> {
    fn row_path(&mut self, row: u32) {
        if self.path_of == Some(row) {
            return;
        }
        let t = self.table;
        let parent = t.row_parent[row as usize];
        let same_parent = self.path_of.map(|p| t.row_parent[p as usize]) == Some(parent);
        if same_parent {
            self.path.pop();
        } else {
            t.node_path(parent, &mut self.path);
        }
        self.path.push(&t.row_key[row as usize]);
        self.path_of = Some(row);
    }

    /// The first matcher that takes the row, as the tree's placer decides:
    /// by its type where that decides for every path (a decision made once
    /// per type), else by its path and type, else by the leaf itself (its
    /// tag, or a callback).
    fn target(&mut self, row: u32) -> Result<Option<usize>> {
        let kinds = self.table.row_types[row as usize];
        let bit = kinds.bits.trailing_zeros() as usize;
        for (i, m) in self.matchers.iter().enumerate() {
            let answer = match self.by_type[i][bit] {
                TypeAnswer::Unasked => {
                    // A decision at the root holds at every path: a path
                    // only ever turns "depends" into "matches".
                    let a = match m.decide(&[], kinds) {
                        Some(b) => TypeAnswer::Decided(b),
                        None => TypeAnswer::Depends,
                    };
                    self.by_type[i][bit] = a;
                    a
                }
                a => a,
            };
            let matched = match answer {
                TypeAnswer::Decided(b) => b,
                TypeAnswer::Unasked | TypeAnswer::Depends => {
                    self.row_path(row);
                    match m.decide_at_leaf(&self.path, kinds) {
                        Some(b) => b,
                        // Not under the table's lock: a callback may call
                        // back into the library.
                        None => m.matches(&self.path, &self.table.leaf(row))?,
                    }
                }
            };
            if matched {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }
}
