//! A prototype, measured before any change to the core: the columnar layout
//! the speed issue names as one way past the per-leaf limit of a first call.
//!
//! The core keeps a state as a tree of nodes that hold their leaves; a
//! split builds new nodes and takes a new reference to every leaf it places
//! one by one. Here a state is instead a *table* shared by every state made
//! from it (the structure as arrays in depth-first order: each node's parent
//! and key, each leaf's parent node, key, type id and the leaf itself) and a
//! *view*: the ascending row numbers of the leaves this state holds. A split
//! is one pass over the type ids of the view's rows, writing row numbers
//! into its outputs; it touches neither a leaf nor a node.
//!
//! Outputs that share the table would keep every leaf of the table alive as
//! long as any output lives, where NNX's outputs are independent: dropping
//! a part frees the leaves only it held. The `counted` variant keeps that
//! semantics: the table counts, per row, the views that hold it (one lock
//! per view made or dropped, a pass over its rows), and lets a leaf go when
//! its count reaches zero. The plain variant does not count; it measures
//! what exact release costs.
//!
//! merge of views of one table orders the result as NNX does: keys in the
//! order they first appear in the parts, level by level (Flax flattens the
//! parts into one dict and nests it again). When that order is the table's
//! own (the parts of a split merged in any order that keeps each node's
//! children first seen in table order) the result is the sorted union of
//! the rows; otherwise the rows are ordered by a walk over first-seen
//! children. Both are checked against the tree's `merge` before timing.
//!
//! Timed, at 10,008 to 1,000,008 leaves, interleaved round by round, the
//! medians: the tree (`nnx_state`'s core as it is: a fresh copy of the
//! structure per sample, dropping the result included) and the table (a
//! fresh table per sample, made untimed; making and dropping the outputs
//! included). Under `cargo test` it runs once on a small state, checks the
//! table against the tree, and times nothing. Options after `--`:
//! `--sizes 10000,100000`, `--seconds 0.5`.

use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nnx_state::{Array, Child, Filter, Key, Leaf, Node, State, TypeId, Variable};

mod common;
use common::{model, structure_copy, LEAVES_PER_LAYER};

/// Row type of a bare array: no type filter matches it.
const ARRAY_TYPE: u32 = u32::MAX;

/// The structure and leaves of a state in depth-first order with every
/// node's keys sorted (the order of NNX's split and filter outputs), shared
/// by every view made from it. (The view of the whole input would carry its
/// own order, insertion order, as a permutation made with the table; no
/// operation timed here reads it.)
struct Table {
    /// Node 0 is the root; every other node's parent comes before it.
    node_parent: Vec<u32>,
    node_key: Vec<Key>,
    /// A node's place in the depth-first order of nodes and rows together.
    node_pre: Vec<u32>,
    row_parent: Vec<u32>,
    row_key: Vec<Key>,
    row_pre: Vec<u32>,
    row_type: Vec<u32>,
    /// Per row, how many counted views hold it, and its leaf while any does.
    held: Mutex<Held>,
}

struct Held {
    count: Vec<u32>,
    leaves: Vec<Option<Leaf>>,
}

impl Table {
    fn of(node: &Node) -> Table {
        let mut t = Table {
            node_parent: vec![0],
            node_key: vec![Key::int(0)],
            node_pre: vec![0],
            row_parent: Vec::new(),
            row_key: Vec::new(),
            row_pre: Vec::new(),
            row_type: Vec::new(),
            held: Mutex::new(Held {
                count: Vec::new(),
                leaves: Vec::new(),
            }),
        };
        let mut leaves = Vec::new();
        let mut pre = 1;
        t.add(node, 0, &mut pre, &mut leaves);
        let held = t.held.get_mut().unwrap();
        held.count = vec![0; leaves.len()];
        held.leaves = leaves;
        t
    }

    fn add(&mut self, node: &Node, id: u32, pre: &mut u32, leaves: &mut Vec<Option<Leaf>>) {
        for (key, child) in node.sorted() {
            match child {
                Child::Node(n) => {
                    let child_id = self.node_parent.len() as u32;
                    self.node_parent.push(id);
                    self.node_key.push(*key);
                    self.node_pre.push(*pre);
                    *pre += 1;
                    self.add(n, child_id, pre, leaves);
                }
                Child::Leaf(leaf) => {
                    self.row_parent.push(id);
                    self.row_key.push(*key);
                    self.row_pre.push(*pre);
                    *pre += 1;
                    self.row_type.push(match leaf {
                        Leaf::Variable(v) => v.type_id().raw(),
                        Leaf::Array(_) => ARRAY_TYPE,
                    });
                    leaves.push(Some(leaf.clone()));
                }
            }
        }
    }

    fn rows(&self) -> usize {
        self.row_type.len()
    }

    /// A row's path, root first.
    fn path(&self, row: u32) -> Vec<Key> {
        let mut path = vec![self.row_key[row as usize]];
        let mut n = self.row_parent[row as usize];
        while n != 0 {
            path.push(self.node_key[n as usize]);
            n = self.node_parent[n as usize];
        }
        path.reverse();
        path
    }
}

/// A state: some rows of a table, in the state's order (ascending, so
/// sorted by path, for split and filter outputs).
struct View {
    table: Arc<Table>,
    rows: Vec<u32>,
    counted: bool,
}

impl View {
    fn new(table: Arc<Table>, rows: Vec<u32>, counted: bool) -> View {
        if counted {
            let mut held = table.held.lock().unwrap();
            for &r in &rows {
                held.count[r as usize] += 1;
            }
        }
        View {
            table,
            rows,
            counted,
        }
    }

    fn all(table: Arc<Table>, counted: bool) -> View {
        let rows = (0..table.rows() as u32).collect();
        View::new(table, rows, counted)
    }

    /// NNX's split: each leaf to the first filter that takes it, an error
    /// when none does. Filters are type tables (`Registry::subtype_table`)
    /// or a per-row answer made in one pass (`path_contains`).
    fn split(&self, filters: &[RowFilter]) -> Result<Vec<View>, String> {
        let mut outs: Vec<Vec<u32>> = vec![Vec::new(); filters.len()];
        for &r in &self.rows {
            let t = self.table.row_type[r as usize];
            match filters.iter().position(|f| f.takes(t, r)) {
                Some(i) => outs[i].push(r),
                None => return Err(format!("no filter takes {:?}", self.table.path(r))),
            }
        }
        Ok(outs
            .into_iter()
            .map(|rows| View::new(self.table.clone(), rows, self.counted))
            .collect())
    }

    fn filter(&self, filter: &RowFilter) -> View {
        let rows = self
            .rows
            .iter()
            .copied()
            .filter(|&r| filter.takes(self.table.row_type[r as usize], r))
            .collect();
        View::new(self.table.clone(), rows, self.counted)
    }

    /// NNX's merge of views of one table (the case of a split's parts; any
    /// other merge would go through the tree).
    fn merge(parts: &[&View]) -> View {
        let table = &parts[0].table;
        assert!(parts.iter().all(|p| Arc::ptr_eq(&p.table, table)));
        // Walk the rows in the parts' order; every node and row is "seen" the
        // first time; the result is in table order when, under every node,
        // children are first seen in table order.
        let mut seen = vec![false; table.node_parent.len()];
        let mut last_child_pre = vec![0u32; table.node_parent.len()];
        let mut row_seen = vec![false; table.rows()];
        let mut in_order = true;
        let mut first_seen: Vec<u32> = Vec::new();
        for p in parts {
            for &r in &p.rows {
                if std::mem::replace(&mut row_seen[r as usize], true) {
                    continue; // the same row again: same path, same leaf
                }
                first_seen.push(r);
                let parent = table.row_parent[r as usize] as usize;
                in_order &= table.row_pre[r as usize] > last_child_pre[parent];
                last_child_pre[parent] = table.row_pre[r as usize];
                let mut n = parent;
                while n != 0 && !std::mem::replace(&mut seen[n], true) {
                    let up = table.node_parent[n] as usize;
                    in_order &= table.node_pre[n] > last_child_pre[up];
                    last_child_pre[up] = table.node_pre[n];
                    n = up;
                }
            }
        }
        let rows = if in_order {
            (0..table.rows() as u32)
                .filter(|&r| row_seen[r as usize])
                .collect()
        } else {
            ordered_by_first_sight(table, &first_seen)
        };
        View::new(table.clone(), rows, parts[0].counted)
    }

    /// (path, leaf) of every row in the view's order (for a split or filter
    /// output, sorted by path as the tree's `flatten` gives).
    fn flatten(&self) -> Vec<(Vec<Key>, Leaf)> {
        let held = self.table.held.lock().unwrap();
        self.rows
            .iter()
            .map(|&r| {
                let leaf = held.leaves[r as usize].clone().expect("a held row");
                (self.table.path(r), leaf)
            })
            .collect()
    }
}

impl Drop for View {
    fn drop(&mut self) {
        if !self.counted {
            return;
        }
        let mut released = Vec::new();
        {
            let mut held = self.table.held.lock().unwrap();
            for &r in &self.rows {
                let c = &mut held.count[r as usize];
                *c -= 1;
                if *c == 0 {
                    released.push(held.leaves[r as usize].take());
                }
            }
        }
        drop(released); // outside the lock: a leaf's drop may free memory
    }
}

/// The general order of a merge: the children of every node in the order
/// first met, depth first. `first_seen` lists the rows in the order they
/// were first met; a node is met with the first of its rows. Walking
/// `first_seen` in order lists every node's children already in the order
/// met, so they go into one flat array (counted, then filled: no list per
/// node) and one walk down reads the result.
fn ordered_by_first_sight(table: &Table, first_seen: &[u32]) -> Vec<u32> {
    const ROW: u32 = 1 << 31; // an entry is a row (tagged) or a node
    let nodes = table.node_parent.len();
    // Each (parent, child) pair as met, in the order met.
    let mut met = vec![false; nodes];
    let mut pairs: Vec<(u32, u32)> = Vec::with_capacity(first_seen.len() * 2);
    for &r in first_seen {
        let mut n = table.row_parent[r as usize];
        pairs.push((n, r | ROW));
        while n != 0 && !std::mem::replace(&mut met[n as usize], true) {
            let up = table.node_parent[n as usize];
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
    let mut rows = Vec::with_capacity(first_seen.len());
    let mut stack = vec![0u32];
    while let Some(item) = stack.pop() {
        if item & ROW != 0 {
            rows.push(item & !ROW);
        } else {
            let n = item as usize;
            let range = start[n] as usize..start[n + 1] as usize;
            stack.extend(children[range].iter().rev());
        }
    }
    rows
}

/// A filter as the table asks it: by the row's type id, or by a per-row
/// answer made once for the table.
enum RowFilter {
    Types(Vec<bool>),
    Rows(Vec<bool>),
}

impl RowFilter {
    fn of_type(t: TypeId) -> RowFilter {
        RowFilter::Types(nnx_state::types::snapshot().subtype_table(t).unwrap())
    }

    /// `PathContains(key)`: one pass over the nodes (a node contains it when
    /// its parent does or its own key is it), then over the rows.
    fn path_contains(table: &Table, key: Key) -> RowFilter {
        let mut node = vec![false; table.node_parent.len()];
        for n in 1..node.len() {
            node[n] = node[table.node_parent[n] as usize] || table.node_key[n] == key;
        }
        RowFilter::Rows(
            (0..table.rows())
                .map(|r| node[table.row_parent[r] as usize] || table.row_key[r] == key)
                .collect(),
        )
    }

    fn takes(&self, type_id: u32, row: u32) -> bool {
        match self {
            RowFilter::Types(t) => t.get(type_id as usize).copied().unwrap_or(false),
            RowFilter::Rows(r) => r[row as usize],
        }
    }
}

/// A new variable of `type_id` over a one-element array, as in `ops`.
fn leaf(type_id: TypeId) -> Child {
    let value = Arc::new(Array::from_slice(&[1], &[0.0f32]).unwrap());
    Child::Leaf(Leaf::Variable(Arc::new(
        Variable::new(type_id, Some(value)).unwrap(),
    )))
}

/// (path, leaf) of every leaf of `node` in its own order (the tree's
/// `flatten` sorts).
fn in_order(node: &Node) -> Vec<(Vec<Key>, Leaf)> {
    fn walk(node: &Node, path: &mut Vec<Key>, out: &mut Vec<(Vec<Key>, Leaf)>) {
        for (key, child) in node.iter() {
            path.push(*key);
            match child {
                Child::Node(n) => walk(n, path, out),
                Child::Leaf(leaf) => out.push((path.clone(), leaf.clone())),
            }
            path.pop();
        }
    }
    let mut out = Vec::new();
    walk(node, &mut Vec::new(), &mut out);
    out
}

fn same_pairs(a: &[(Vec<Key>, Leaf)], b: &[(Vec<Key>, Leaf)]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.0 == y.0 && x.1.same(&y.1))
}

/// The table answers as the tree does: split, filter, merge in the split's
/// order and in reverse (the general order), leaf for leaf.
fn check(state: &State, counted: bool) {
    let table = Arc::new(Table::of(&state.node().unwrap()));
    let view = View::all(table.clone(), counted);
    let types = [TypeId::PARAM, TypeId::BATCH_STAT, TypeId::CACHE];
    let tree_filters: Vec<Filter> = types.iter().map(|t| Filter::of_type(*t)).collect();
    let row_filters: Vec<RowFilter> = types.iter().map(|t| RowFilter::of_type(*t)).collect();
    let tree_parts = state.split(&tree_filters).unwrap();
    let parts = view.split(&row_filters).unwrap();
    for (t, v) in tree_parts.iter().zip(&parts) {
        assert!(same_pairs(&t.flatten().unwrap(), &v.flatten()), "split");
    }
    let attn = state
        .filter(&[Filter::path_contains("attn", true)])
        .unwrap();
    let ours = view.filter(&RowFilter::path_contains(&table, Key::str("attn")));
    assert!(
        same_pairs(&attn[0].flatten().unwrap(), &ours.flatten()),
        "filter"
    );
    for reversed in [false, true] {
        let mut t: Vec<&State> = tree_parts.iter().collect();
        let mut v: Vec<&View> = parts.iter().collect();
        if reversed {
            t.reverse();
            v.reverse();
        }
        let merged = in_order(&State::merge(&t).unwrap().node().unwrap());
        let ours = View::merge(&v).flatten();
        if !same_pairs(&merged, &ours) {
            for (a, b) in merged.iter().zip(&ours).take(12) {
                eprintln!("{:?} | {:?}", a.0, b.0);
            }
        }
        assert!(same_pairs(&merged, &ours), "merge (reversed: {reversed})");
    }
    // Dropping every part but the first lets their leaves go, and only theirs.
    if counted {
        drop(view);
        let kept = parts.into_iter().next().unwrap();
        let held = table.held.lock().unwrap();
        let alive = held.leaves.iter().filter(|l| l.is_some()).count();
        assert_eq!(alive, kept.rows.len(), "release");
    }
}

type Op<'a> = (String, Box<dyn Fn() -> Duration + 'a>);

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let smoke = !args.iter().any(|a| a == "--bench");
    let value = |name: &str| {
        let at = args.iter().position(|a| a == name)?;
        args.get(at + 1).cloned()
    };
    let sizes: Vec<usize> = match value("--sizes") {
        Some(s) => s.split(',').map(|x| x.parse().expect("a size")).collect(),
        None if smoke => vec![100],
        None => vec![10_000, 100_000, 1_000_000],
    };
    let budget = Duration::from_secs_f64(
        value("--seconds")
            .map(|s| s.parse().expect("seconds"))
            .unwrap_or(if smoke { 0.0 } else { 1.0 }),
    );
    let types = [TypeId::PARAM, TypeId::BATCH_STAT, TypeId::CACHE];
    let tree_three: Vec<Filter> = types.iter().map(|t| Filter::of_type(*t)).collect();
    let tree_param = [Filter::of_type(TypeId::PARAM)];
    let tree_attn = [Filter::path_contains("attn", true)];
    let row_three: Vec<RowFilter> = types.iter().map(|t| RowFilter::of_type(*t)).collect();
    let row_param = RowFilter::of_type(TypeId::PARAM);

    println!(
        "{:>9} {:<34} {:>12} {:>10} {:>10}",
        "leaves", "operation", "median", "ns/leaf", "x table"
    );
    for &size in &sizes {
        let layers = size.div_ceil(LEAVES_PER_LAYER);
        let state = State::from_node(model(layers, false, |_, t| leaf(t)));
        let leaves = state.num_leaves().unwrap();
        check(&state, true);
        check(&state, false);
        if smoke {
            continue;
        }
        let node = state.node().unwrap();
        let fresh_tree = || State::from_node(structure_copy(&node));
        let fresh_table = || Arc::new(Table::of(&node));
        let tree_parts = state.split(&tree_three).unwrap();
        let timed = |run: &dyn Fn()| {
            let t = Instant::now();
            run();
            t.elapsed()
        };
        let mut ops: Vec<Op<'_>> = Vec::new();
        // The tree, as the core is now.
        ops.push((
            "tree: split(Param, BatchStat, Cache)".into(),
            Box::new(|| {
                let s = fresh_tree();
                timed(&|| drop(black_box(s.split(&tree_three).unwrap())))
            }),
        ));
        ops.push((
            "tree: filter(Param)".into(),
            Box::new(|| {
                let s = fresh_tree();
                timed(&|| drop(black_box(s.filter(&tree_param).unwrap())))
            }),
        ));
        ops.push((
            "tree: filter(PathContains(attn))".into(),
            Box::new(|| {
                let s = fresh_tree();
                timed(&|| drop(black_box(s.filter(&tree_attn).unwrap())))
            }),
        ));
        ops.push((
            "tree: merge(3 parts)".into(),
            Box::new(|| {
                let inputs: Vec<State> = tree_parts
                    .iter()
                    .map(|p| State::from_node(structure_copy(&p.node().unwrap())))
                    .collect();
                let refs: Vec<&State> = inputs.iter().collect();
                timed(&|| drop(black_box(State::merge(&refs).unwrap())))
            }),
        ));
        for counted in [true, false] {
            let tag = if counted { "table" } else { "table, uncounted" };
            let row_three = &row_three;
            let row_param = &row_param;
            let fresh_view = move || View::all(fresh_table(), counted);
            ops.push((
                format!("{tag}: split"),
                Box::new(move || {
                    let v = fresh_view();
                    timed(&|| drop(black_box(v.split(row_three).unwrap())))
                }),
            ));
            ops.push((
                format!("{tag}: filter(Param)"),
                Box::new(move || {
                    let v = fresh_view();
                    timed(&|| drop(black_box(v.filter(row_param))))
                }),
            ));
            ops.push((
                format!("{tag}: filter(PathContains)"),
                Box::new(move || {
                    let v = fresh_view();
                    timed(&|| {
                        let f = RowFilter::path_contains(&v.table, Key::str("attn"));
                        drop(black_box(v.filter(&f)))
                    })
                }),
            ));
            for reversed in [false, true] {
                let name = if reversed {
                    "merge(3 parts, reversed)"
                } else {
                    "merge(3 parts)"
                };
                ops.push((
                    format!("{tag}: {name}"),
                    Box::new(move || {
                        let v = fresh_view();
                        let mut parts = v.split(row_three).unwrap();
                        if reversed {
                            parts.reverse();
                        }
                        let refs: Vec<&View> = parts.iter().collect();
                        timed(&|| drop(black_box(View::merge(&refs))))
                    }),
                ));
            }
        }
        let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); ops.len()];
        let started = Instant::now();
        while samples[0].len() < 5
            || (started.elapsed() < budget * ops.len() as u32 && samples[0].len() < 1000)
        {
            for (i, (_, run)) in ops.iter().enumerate() {
                samples[i].push(run());
            }
        }
        let medians: Vec<Duration> = samples.into_iter().map(median).collect();
        let table_split = medians[4].as_nanos() as f64;
        for ((name, _), m) in ops.iter().zip(&medians) {
            let ns = m.as_nanos() as f64;
            println!(
                "{:>9} {:<34} {:>10.3}ms {:>10.1} {:>10.1}",
                leaves,
                name,
                ns / 1e6,
                ns / leaves as f64,
                ns / table_split
            );
        }
    }
}
