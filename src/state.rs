//! `State`: a handle on a tree, or on a nested part of one (a live view).
//!
//! A handle is a shared root plus a path from it. Readers take an immutable
//! snapshot of the root (one `Arc` clone under a read lock) and work on it
//! without locks; writers swap in a new root under the write lock, cloning
//! only the nodes on the path they change. So every handle can be used from
//! many threads, and a reader sees the tree before or after a mutation,
//! never half of it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use crate::array::Array;
use crate::error::{bail, Result};
use crate::filter::Filter;
use crate::key::{format_path, format_path_short, Key};
use crate::limits::{check_depth, MAX_DEPTH};
use crate::ops;
use crate::table::View;
use crate::tree::{empty_node, Child, Kind, Leaf, Node};
use crate::variable::Variable;

/// The tree a state and its views share, and how many changes it has had.
struct RootCell {
    node: RwLock<Content>,
    changes: AtomicU64,
}

/// How a root holds its tree: as nodes, or as a view of a columnar table
/// (what split, filter and merge give for a columnar input, and
/// `deep_copy`), turned into nodes the first time anything else needs them.
enum Content {
    Tree(Arc<Node>),
    Rows(Arc<View>),
}

impl Content {
    /// The tree, made from the view if need be, and the view it replaced:
    /// the caller drops that outside the lock (the tree holds all its
    /// leaves, but the table's last view frees the table).
    fn make_tree(&mut self) -> (&mut Arc<Node>, Option<Arc<View>>) {
        let replaced = match self {
            Content::Tree(_) => None,
            Content::Rows(view) => {
                let node = Arc::new(view.to_node());
                match std::mem::replace(self, Content::Tree(node)) {
                    Content::Rows(view) => Some(view),
                    Content::Tree(_) => unreachable!("matched above"),
                }
            }
        };
        match self {
            Content::Tree(node) => (node, replaced),
            Content::Rows(_) => unreachable!("made a tree above"),
        }
    }
}

type Root = Arc<RootCell>;

/// The prefix of a state that is not a view, shared so that making one
/// allocates nothing for it.
fn no_prefix() -> Arc<[Key]> {
    static EMPTY: OnceLock<Arc<[Key]>> = OnceLock::new();
    EMPTY.get_or_init(|| Arc::from([])).clone()
}

/// A nested, ordered mapping from keys to variables, arrays and nested
/// states. Cloning the handle (`Clone`) gives another handle on the same
/// tree; [`State::copy`] gives an independent tree.
#[derive(Clone)]
pub struct State {
    root: Root,
    prefix: Arc<[Key]>,
}

impl Default for State {
    fn default() -> Self {
        State::new()
    }
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.node() {
            Ok(node) => f.write_str(&crate::display::to_string(&node)),
            Err(e) => write!(f, "State(<{e}>)"),
        }
    }
}

/// What a path leads to.
#[derive(Clone, Debug)]
pub enum Entry {
    State(State),
    Leaf(Leaf),
}

impl Entry {
    /// What kind of child it is.
    pub fn kind(&self) -> Kind {
        match self {
            Entry::State(_) => Kind::State,
            Entry::Leaf(leaf) => leaf.kind(),
        }
    }
}

impl State {
    pub fn new() -> State {
        State::from_node(empty_node())
    }

    pub fn from_node(node: impl Into<Arc<Node>>) -> State {
        State::with_content(Content::Tree(node.into()))
    }

    fn with_content(content: Content) -> State {
        State {
            root: Arc::new(RootCell {
                node: RwLock::new(content),
                changes: AtomicU64::new(0),
            }),
            prefix: no_prefix(),
        }
    }

    /// A state holding `node`'s leaves in columnar form where it has one
    /// (see [`View::of_node`]), so that its first split, filter or merge
    /// costs a pass over its rows.
    pub fn columnar(node: Node) -> State {
        match View::of_node(&node) {
            Some(view) => State::from_rows(Arc::new(view)),
            None => State::from_node(node),
        }
    }

    fn from_rows(view: Arc<View>) -> State {
        State::with_content(Content::Rows(view))
    }

    /// A state of an output: its view, or an empty tree for none.
    fn from_output(view: Option<Arc<View>>) -> State {
        view.map_or_else(State::new, State::from_rows)
    }

    fn read_root(&self) -> std::sync::RwLockReadGuard<'_, Content> {
        self.root.node.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_root(&self) -> std::sync::RwLockWriteGuard<'_, Content> {
        self.root.node.write().unwrap_or_else(|p| p.into_inner())
    }

    fn root_snapshot(&self) -> Arc<Node> {
        if let Content::Tree(node) = &*self.read_root() {
            return node.clone();
        }
        let mut guard = self.write_root();
        let (node, replaced) = guard.make_tree();
        let node = node.clone();
        drop(guard);
        drop(replaced);
        node
    }

    /// Whether this state is held in columnar form (see [`State::columnar`]):
    /// a matter of speed only, no answer depends on it.
    pub fn is_columnar(&self) -> bool {
        self.rows().is_some()
    }

    /// This state's view of a columnar table, if it is a whole state held
    /// in that form.
    fn rows(&self) -> Option<Arc<View>> {
        if !self.prefix.is_empty() {
            return None;
        }
        match &*self.read_root() {
            Content::Rows(view) => Some(view.clone()),
            Content::Tree(_) => None,
        }
    }

    /// A snapshot of this state's node. Fails when this is a view whose path
    /// no longer leads to a nested state in its parent.
    pub fn node(&self) -> Result<Arc<Node>> {
        let mut node = self.root_snapshot();
        for depth in 0..self.prefix.len() {
            node = match node.get(&self.prefix[depth]) {
                Some(Child::Node(n)) => n.clone(),
                other => return Err(self.view_gone(depth, other)),
            };
        }
        Ok(node)
    }

    /// Why this view's path no longer leads to a nested state: what stands
    /// at `prefix[..=depth]` instead.
    fn view_gone(&self, depth: usize, found: Option<&Child>) -> crate::Error {
        let at = format_path(&self.prefix[..=depth]);
        match found {
            Some(Child::Leaf(_)) => crate::Error::new(
                crate::ErrorKind::WrongKind,
                format!("this nested state was replaced: a leaf stands at '{at}' in its parent"),
            ),
            _ => crate::Error::new(
                crate::ErrorKind::KeyNotFound,
                format!("this nested state no longer exists: nothing at '{at}' in its parent"),
            ),
        }
    }

    /// A number that stays the same while the tree this state belongs to
    /// (its own, or its parent's for a view) does not change: which
    /// children it has where, not what its variables hold. Read before
    /// reading the state, an unchanged number means what was read still
    /// holds.
    pub fn version(&self) -> u64 {
        self.root.changes.load(Ordering::SeqCst)
    }

    /// Runs `f` on this state's node, writable, under the root's write lock.
    /// `f` must leave the node unchanged when it fails.
    fn modify<R>(&self, f: impl FnOnce(&mut Node) -> Result<R>) -> Result<R> {
        let mut guard = self.write_root();
        let (root, replaced) = guard.make_tree();
        let result = self.modify_tree(root, f);
        drop(guard);
        drop(replaced);
        result
    }

    fn modify_tree<R>(
        &self,
        root: &mut Arc<Node>,
        f: impl FnOnce(&mut Node) -> Result<R>,
    ) -> Result<R> {
        // Counted under the lock, as `version` documents.
        self.root.changes.fetch_add(1, Ordering::SeqCst);
        // Check the view before cloning anything on the way down.
        let mut probe: &Node = root;
        for depth in 0..self.prefix.len() {
            probe = match probe.get(&self.prefix[depth]) {
                Some(Child::Node(n)) => n,
                other => return Err(self.view_gone(depth, other)),
            };
        }
        Arc::make_mut(root)
            .node_at_mut(&self.prefix, false, f)
            .expect("the view was checked above under the same lock")
    }

    /// What `path` leads to: a live view for a nested state, or the leaf.
    /// The empty path is this state itself.
    pub fn get(&self, path: &[Key]) -> Result<Entry> {
        let node = self.node()?;
        match lookup(&node, path)? {
            Found::Node => Ok(Entry::State(self.view_unchecked(path))),
            Found::Leaf(leaf) => Ok(Entry::Leaf(leaf.clone())),
        }
    }

    pub fn kind(&self, path: &[Key]) -> Result<Kind> {
        let node = self.node()?;
        Ok(match lookup(&node, path)? {
            Found::Node => Kind::State,
            Found::Leaf(leaf) => leaf.kind(),
        })
    }

    pub fn contains(&self, path: &[Key]) -> Result<bool> {
        let node = self.node()?;
        Ok(lookup(&node, path).is_ok())
    }

    /// A live view of the nested state at `path`: changes through it are
    /// changes of this state, and it sees changes made here.
    pub fn view(&self, path: &[Key]) -> Result<State> {
        match self.get(path)? {
            Entry::State(s) => Ok(s),
            Entry::Leaf(_) => bail!(
                WrongKind,
                "'{}' is a leaf, not a nested state",
                format_path(path)
            ),
        }
    }

    fn view_unchecked(&self, path: &[Key]) -> State {
        if path.is_empty() {
            return self.clone();
        }
        let prefix: Vec<Key> = self.prefix.iter().chain(path).cloned().collect();
        State {
            root: self.root.clone(),
            prefix: prefix.into(),
        }
    }

    pub fn get_leaf(&self, path: &[Key]) -> Result<Leaf> {
        match self.get(path)? {
            Entry::Leaf(leaf) => Ok(leaf),
            Entry::State(_) => bail!(
                WrongKind,
                "'{}' is a nested state, not a leaf",
                format_path(path)
            ),
        }
    }

    pub fn get_variable(&self, path: &[Key]) -> Result<Arc<Variable>> {
        match self.get_leaf(path)? {
            Leaf::Variable(v) => Ok(v),
            Leaf::Array(_) => bail!(
                WrongKind,
                "'{}' is a bare array, not a variable",
                format_path(path)
            ),
        }
    }

    pub fn get_array(&self, path: &[Key]) -> Result<Arc<Array>> {
        match self.get_leaf(path)? {
            Leaf::Array(a) => Ok(a),
            Leaf::Variable(_) => bail!(
                WrongKind,
                "'{}' is a variable, not a bare array",
                format_path(path)
            ),
        }
    }

    /// Fails with `TooDeep` unless `child`, put at `path` below this state,
    /// stays within the nesting limit counted from the root.
    fn check_nesting(&self, path: &[Key], child: &Child) -> Result<()> {
        let above = self.prefix.len() + path.len();
        let below = match child {
            Child::Leaf(_) => 0,
            Child::Node(n) => n.height(MAX_DEPTH.saturating_sub(above)),
        };
        check_depth(above + below, || {
            let full: Vec<Key> = self.prefix.iter().chain(path).cloned().collect();
            match child {
                Child::Leaf(_) => format!("the path '{}'", format_path_short(&full)),
                Child::Node(_) => format!(
                    "a state of {below} levels at '{}'",
                    format_path_short(&full)
                ),
            }
        })
    }

    /// Puts `child` at `path`, creating missing nested states on the way and
    /// replacing what was there. A path that runs through a leaf, or one
    /// that would nest the state past [`MAX_DEPTH`] levels, fails.
    pub fn set(&self, path: &[Key], child: Child) -> Result<()> {
        let Some((last, parents)) = path.split_last() else {
            bail!(InvalidArgument, "cannot set the empty path");
        };
        self.check_nesting(path, &child)?;
        let replaced = self.modify(|node| {
            // Check first, so a failure changes nothing.
            let mut probe: Option<&Node> = Some(node);
            for (depth, key) in parents.iter().enumerate() {
                probe = match probe.and_then(|n| n.get(key)) {
                    Some(Child::Node(n)) => Some(n),
                    Some(Child::Leaf(_)) => bail!(
                        PathThroughLeaf,
                        "path '{}' runs through the leaf at '{}'",
                        format_path(path),
                        format_path(&path[..=depth])
                    ),
                    None => None,
                };
            }
            // No leaf is in the way (checked above): only missing nodes are
            // made.
            Ok(node
                .node_at_mut(parents, true, |parent| parent.insert(*last, child))
                .expect("create makes every node on the way"))
        })?;
        // Dropping the old child may run release callbacks: not under the lock.
        drop(replaced);
        Ok(())
    }

    pub fn set_variable(&self, path: &[Key], variable: Arc<Variable>) -> Result<()> {
        self.set(path, Child::Leaf(Leaf::Variable(variable)))
    }

    pub fn set_array(&self, path: &[Key], array: Arc<Array>) -> Result<()> {
        self.set(path, Child::Leaf(Leaf::Array(array)))
    }

    /// NNX's `replace_by_pure_dict` with its default replace function, for
    /// array values: the leaf at each path is replaced by one holding the
    /// new array (a variable by [`Variable::replaced`], a new variable of
    /// its type with a copy of its metadata; a bare array by the array).
    /// Then, as NNX updates the state with the nested dicts it rebuilds
    /// from its flat state, each top-level nested state that holds leaves
    /// takes the form a flat round trip gives (keys sorted at every level,
    /// no empty nested states). Every path must lead to a leaf; on failure
    /// nothing changes. A path given twice takes its last array.
    pub fn replace_values(&self, replacements: &[(Vec<Key>, Arc<Array>)]) -> Result<()> {
        let replaced = self.modify(|node| {
            let mut leaves = Vec::with_capacity(replacements.len());
            for (path, array) in replacements {
                leaves.push(match lookup(node, path)? {
                    Found::Leaf(Leaf::Variable(v)) => {
                        Leaf::Variable(Arc::new(v.replaced(array.clone())))
                    }
                    Found::Leaf(Leaf::Array(_)) => Leaf::Array(array.clone()),
                    Found::Node => bail!(
                        WrongKind,
                        "'{}' is a nested state, not a leaf",
                        format_path(path)
                    ),
                });
            }
            let mut old = Vec::with_capacity(leaves.len());
            for ((path, _), leaf) in replacements.iter().zip(leaves) {
                let (last, parents) = path.split_last().expect("a leaf's path is not empty");
                old.push(
                    node.node_at_mut(parents, false, |parent| {
                        parent.insert(*last, Child::Leaf(leaf))
                    })
                    .expect("checked above: nodes all the way"),
                );
            }
            let keys: Vec<Key> = node.keys().copied().collect();
            for key in &keys {
                node.child_mut(key, |child| {
                    if let Child::Node(nested) = child {
                        if let Some(canonical) = crate::tree::canonical(nested) {
                            old.push(Some(std::mem::replace(child, Child::Node(canonical))));
                        }
                    }
                });
            }
            Ok(old)
        })?;
        // Dropping the old leaves may run release callbacks: not under the lock.
        drop(replaced);
        Ok(())
    }

    /// Puts a snapshot of `other` at `path`: its leaves are shared, its
    /// structure is not, so later changes to `other` are not seen here.
    pub fn set_state(&self, path: &[Key], other: &State) -> Result<()> {
        let node = other.node()?;
        self.set(path, Child::Node(node))
    }

    /// Removes and returns what is at `path`.
    pub fn remove(&self, path: &[Key]) -> Result<Child> {
        let Some((last, parents)) = path.split_last() else {
            bail!(InvalidArgument, "cannot remove the empty path");
        };
        let removed = self.modify(|node| {
            // Fails, naming the problem, unless something is at `path`.
            lookup(node, path)?;
            Ok(node
                .node_at_mut(parents, false, |parent| parent.remove(last))
                .expect("checked above: nodes all the way"))
        })?;
        match removed {
            Some(child) => Ok(child),
            None => bail!(KeyNotFound, "nothing at '{}'", format_path(path)),
        }
    }

    /// Number of keys at this level.
    pub fn len(&self) -> Result<usize> {
        Ok(self.node()?.len())
    }

    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.node()?.is_empty())
    }

    /// The keys at this level, in order.
    pub fn keys(&self) -> Result<Vec<Key>> {
        Ok(self.node()?.keys().cloned().collect())
    }

    pub fn key_at(&self, index: usize) -> Result<Key> {
        let node = self.node()?;
        match node.get_index(index) {
            Some((key, _)) => Ok(*key),
            None => bail!(
                IndexOutOfRange,
                "index {index} is out of range for a state with {} keys",
                node.len()
            ),
        }
    }

    pub fn num_leaves(&self) -> Result<usize> {
        if let Some(view) = self.rows() {
            return Ok(view.num_leaves());
        }
        Ok(self.node()?.num_leaves())
    }

    /// An independent state with the same structure and the same leaves.
    /// Costs O(1): nodes are copied on write.
    pub fn copy(&self) -> Result<State> {
        if let Some(view) = self.rows() {
            return Ok(State::from_rows(view));
        }
        Ok(State::from_node(self.node()?))
    }

    /// An independent state with new variables and copies of every array.
    /// The copy is columnar where it can be (see [`State::columnar`]).
    pub fn deep_copy(&self) -> Result<State> {
        let node = self.node()?;
        let mut copier = ops::LeafCopier::default();
        Ok(
            match View::of_node_with(&node, &mut |leaf| copier.copy(leaf))? {
                Some(view) => State::from_rows(Arc::new(view)),
                // The leaves copied before the view gave up are used again.
                None => State::from_node(ops::deep_copy_with(&node, &mut copier)?),
            },
        )
    }

    /// (path, leaf) pairs sorted by path.
    pub fn flatten(&self) -> Result<Vec<(Vec<Key>, Leaf)>> {
        if let Some(view) = self.rows() {
            return Ok(view.flatten());
        }
        Ok(ops::flatten(&*self.node()?))
    }

    /// A flat state whose subtrees' paths lie together, without repeats
    /// (as `to_flat_state` and a model's walk give), makes a columnar state
    /// (see [`State::columnar`]); any other a tree.
    pub fn from_flat(pairs: impl IntoIterator<Item = (Vec<Key>, Leaf)>) -> Result<State> {
        let pairs: Vec<(Vec<Key>, Leaf)> = pairs.into_iter().collect();
        State::from_flat_entries(&pairs)
    }

    /// [`State::from_flat`] of borrowed entries, whose paths are not copied.
    pub fn from_flat_entries<E: ops::FlatEntry>(entries: &[E]) -> Result<State> {
        ops::check_flat_entries(entries)?;
        Ok(match View::of_flat(entries) {
            Some(view) => State::from_rows(Arc::new(view)),
            None => State::from_node(ops::from_checked_flat_entries(entries)),
        })
    }

    pub fn filter(&self, filters: &[Filter]) -> Result<Vec<State>> {
        self.partition(filters, false)
    }

    pub fn split(&self, filters: &[Filter]) -> Result<Vec<State>> {
        self.partition(filters, true)
    }

    /// A columnar state's outputs are views of its table; a tree's are trees.
    fn partition(&self, filters: &[Filter], exhaustive: bool) -> Result<Vec<State>> {
        if let Some(view) = self.rows() {
            ops::check_filters(filters)?;
            let parts = view.partition_shared(filters, exhaustive)?;
            return Ok(parts.into_iter().map(State::from_output).collect());
        }
        let node = self.node()?;
        let parts = match exhaustive {
            true => ops::split(&node, filters)?,
            false => ops::filter(&node, filters)?,
        };
        Ok(parts.into_iter().map(State::from_node).collect())
    }

    pub fn merge(states: &[&State]) -> Result<State> {
        if let Some(merged) = State::merge_columnar(states) {
            return Ok(merged);
        }
        let nodes = states
            .iter()
            .map(|s| s.node())
            .collect::<Result<Vec<_>>>()?;
        Ok(State::from_node(ops::merge(&nodes)?))
    }

    /// The merge of columnar states of one table (states without leaves
    /// add nothing to a merge), or `None` for the tree to merge.
    fn merge_columnar(states: &[&State]) -> Option<State> {
        let mut views = Vec::with_capacity(states.len());
        for state in states {
            match state.rows() {
                Some(view) => views.push(view),
                None if state.prefix.is_empty() => match &*state.read_root() {
                    Content::Tree(node) if !node.has_leaves() => {}
                    _ => return None,
                },
                None => return None,
            }
        }
        match views.as_slice() {
            [] => None,
            [only] => Some(State::from_rows(only.clone())),
            _ => {
                let parts: Vec<&Arc<View>> = views.iter().collect();
                View::merge_shared(&parts).map(State::from_rows)
            }
        }
    }

    pub fn diff(&self, other: &State) -> Result<State> {
        let (a, b) = (self.node()?, other.node()?);
        Ok(State::from_node(ops::diff(&a, &b)))
    }

    /// In place: `src`'s leaves overwrite this state's at their paths, all
    /// at once for readers.
    pub fn update(&self, src: &State) -> Result<()> {
        let src = src.node()?;
        self.check_nesting(&[], &Child::Node(src.clone()))?;
        let replaced = self.modify(|node| {
            let mut replaced = Vec::new();
            ops::update(node, &src, &mut replaced);
            Ok(replaced)
        })?;
        // Dropping replaced leaves may run release callbacks: not under the lock.
        drop(replaced);
        Ok(())
    }

    /// Whether both handles show the same structure holding the same leaves.
    pub fn same_as(&self, other: &State) -> Result<bool> {
        Ok(self.node()?.same_as(&*other.node()?))
    }

    /// An NNX-like listing of the tree.
    pub fn to_string_tree(&self) -> Result<String> {
        Ok(crate::display::to_string(&*self.node()?))
    }
}

enum Found<'a> {
    Node,
    Leaf(&'a Leaf),
}

fn lookup<'a>(node: &'a Node, path: &[Key]) -> Result<Found<'a>> {
    let mut current = node;
    for (depth, key) in path.iter().enumerate() {
        match current.get(key) {
            Some(Child::Node(n)) => current = n,
            Some(Child::Leaf(leaf)) if depth + 1 == path.len() => return Ok(Found::Leaf(leaf)),
            Some(Child::Leaf(_)) => bail!(
                PathThroughLeaf,
                "path '{}' runs through the leaf at '{}'",
                format_path(path),
                format_path(&path[..=depth])
            ),
            None => bail!(
                KeyNotFound,
                "nothing at '{}' (no key {} at '{}')",
                format_path(path),
                key,
                format_path(&path[..depth])
            ),
        }
    }
    Ok(Found::Node)
}
