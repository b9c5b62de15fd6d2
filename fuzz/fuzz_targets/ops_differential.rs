//! Differential fuzzing of the core operations against a reference model.
//!
//! The input decodes (with `arbitrary`) into a sequence of operations on a
//! small world of states, views of them, variables and arrays: set (of
//! variables, arrays and nested states, at int and str keys), remove, get,
//! views, copy and deep copy, filter, split, merge, diff, update, from_flat,
//! flatten, tag and value changes and type registration. Each operation runs
//! on the library and on the model below, and after each one the results
//! (paths in order, leaf identity, error kinds) and every state of the world
//! must agree.
//!
//! The model is deliberately simple and written from the documented rules,
//! not from the library: nodes are vectors of (key, child) searched
//! linearly; keys are an enum whose derived order is the documented one
//! (ints before strings, ints numerically, strings by bytes, a shorter path
//! first); filter, split and diff outputs are rebuilt from the sorted list of
//! leaves; merge and from_flat replay their leaves in order (later wins, a
//! leaf in the way of a later path is replaced, keys keep their first
//! position); empty subtrees vanish from every output; the Everything rule;
//! the non-exhaustive error.
//!
//! merge and from_flat follow NNX's flat dictionary: the leaves of all
//! inputs, in order, where a repeated path keeps its first position and takes
//! the later leaf; that list is then replayed (README, "Semantics"). So in
//! `{a: {x: X}}, {a: Y}, {a: {x: Z}}` the path `a/x` comes before `a` and the
//! result is `{a: Y}`, as in flax. Callbacks are called in order, as NNX
//! evaluates filter lists and `Any`/`All`: a failing callback that is
//! reached fails the operation.

#![no_main]

use std::sync::Arc;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use nnx_state::tree::Node;
use nnx_state::{
    types, Array, Child, Entry, ErrorKind, Filter, Key, Kind, Leaf, MetaValue, State, TypeId,
    Variable,
};

const STR_KEYS: [&str; 8] = ["a", "b", "c", "", "0", "ab", "é", "Z"];
const INT_KEYS: [i64; 7] = [0, 1, 2, 10, -1, i64::MIN, i64::MAX];
const TAGS: [&str; 3] = ["x", "y", ""];
const MAX_DEPTH: usize = 4;
const MAX_OPS: usize = 96;
const MAX_HANDLES: usize = 20;
const MAX_ROOTS: usize = 14;
const MAX_LEAVES: usize = 48;
const MAX_FILTER_DEPTH: usize = 4;
/// A type id no registration will reach.
const UNKNOWN_TYPE: u32 = 0x7fff_fff0;

// ---------------------------------------------------------------------------
// The input

#[derive(Arbitrary, Debug, Clone, Copy)]
enum KeySpec {
    S(u8),
    I(u8),
}

type PathSpec = Vec<KeySpec>;

#[derive(Arbitrary, Debug)]
enum FilterSpec {
    OfType(u8),
    UnknownType,
    WithTag(u8),
    PathContains(KeySpec, bool),
    PathIn(Vec<PathSpec>),
    Any(Vec<FilterSpec>),
    All(Vec<FilterSpec>),
    Not(Box<FilterSpec>),
    Everything,
    Nothing,
    Callback {
        modulus: u8,
        fail_on: Option<KeySpec>,
    },
}

#[derive(Arbitrary, Debug)]
enum Op {
    NewVariable {
        ty: u8,
        tag: u8,
        value: Option<u8>,
    },
    NewArray {
        len: u8,
    },
    RegisterType {
        parent: u8,
        n: u8,
    },
    RegisterConflict {
        ty: u8,
        other: u8,
    },
    SetTag {
        leaf: u8,
        tag: u8,
    },
    SetValue {
        leaf: u8,
        array: u8,
    },
    Set {
        st: u8,
        path: PathSpec,
        leaf: u8,
    },
    SetState {
        st: u8,
        path: PathSpec,
        src: u8,
    },
    Remove {
        st: u8,
        path: PathSpec,
    },
    View {
        st: u8,
        path: PathSpec,
    },
    Get {
        st: u8,
        path: PathSpec,
    },
    KeyAt {
        st: u8,
        index: u8,
    },
    Copy {
        st: u8,
    },
    DeepCopy {
        st: u8,
    },
    Filter {
        st: u8,
        filters: Vec<FilterSpec>,
        split: bool,
    },
    Merge {
        sts: Vec<u8>,
    },
    Diff {
        a: u8,
        b: u8,
    },
    Update {
        dst: u8,
        src: u8,
    },
    FromFlat {
        pairs: Vec<(PathSpec, u8)>,
    },
    FlatRoundTrip {
        st: u8,
    },
}

// ---------------------------------------------------------------------------
// The model

/// A key. The derived order is the documented one: ints before strings,
/// ints numerically, strings by UTF-8 bytes; `Vec<MKey>` then orders paths
/// element by element with a shorter prefix first.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum MKey {
    Int(i64),
    Str(String),
}

type MPath = Vec<MKey>;

impl MKey {
    fn from_spec(spec: KeySpec) -> MKey {
        match spec {
            KeySpec::S(i) => MKey::Str(STR_KEYS[i as usize % STR_KEYS.len()].to_owned()),
            KeySpec::I(i) => MKey::Int(INT_KEYS[i as usize % INT_KEYS.len()]),
        }
    }

    fn to_lib(&self) -> Key {
        match self {
            MKey::Int(i) => Key::int(*i),
            MKey::Str(s) => Key::str(s),
        }
    }

    fn from_lib(key: &Key) -> MKey {
        match key {
            Key::Int(i) => MKey::Int(*i),
            Key::Str(s) => MKey::Str(s.as_str().to_owned()),
        }
    }

    fn plain(&self) -> String {
        match self {
            MKey::Int(i) => i.to_string(),
            MKey::Str(s) => s.clone(),
        }
    }
}

fn mpath(spec: &[KeySpec]) -> MPath {
    spec.iter()
        .take(MAX_DEPTH)
        .map(|k| MKey::from_spec(*k))
        .collect()
}

fn lib_path(path: &[MKey]) -> Vec<Key> {
    path.iter().map(MKey::to_lib).collect()
}

/// A node: (key, child) in insertion order.
#[derive(Clone, Debug, Default, PartialEq)]
struct MNode(Vec<(MKey, MChild)>);

#[derive(Clone, Debug, PartialEq)]
enum MChild {
    Node(MNode),
    Leaf(usize),
}

impl MNode {
    fn get(&self, key: &MKey) -> Option<&MChild> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, c)| c)
    }

    fn get_mut(&mut self, key: &MKey) -> Option<&mut MChild> {
        self.0.iter_mut().find(|(k, _)| k == key).map(|(_, c)| c)
    }

    /// An existing key keeps its place; a new one goes last.
    fn insert(&mut self, key: MKey, child: MChild) {
        match self.get_mut(&key) {
            Some(slot) => *slot = child,
            None => self.0.push((key, child)),
        }
    }

    fn remove(&mut self, key: &MKey) {
        self.0.retain(|(k, _)| k != key);
    }

    fn child_node_mut(&mut self, key: &MKey) -> &mut MNode {
        match self.get_mut(key) {
            Some(MChild::Node(n)) => n,
            _ => unreachable!("the caller put a node here"),
        }
    }
}

/// What the documented failures of a view are: a leaf in the way is
/// `WrongKind`, nothing there is `KeyNotFound`.
fn resolve<'a>(root: &'a MNode, prefix: &[MKey]) -> Result<&'a MNode, ErrorKind> {
    let mut node = root;
    for key in prefix {
        node = match node.get(key) {
            Some(MChild::Node(n)) => n,
            Some(MChild::Leaf(_)) => return Err(ErrorKind::WrongKind),
            None => return Err(ErrorKind::KeyNotFound),
        };
    }
    Ok(node)
}

fn resolve_mut<'a>(root: &'a mut MNode, prefix: &[MKey]) -> Result<&'a mut MNode, ErrorKind> {
    resolve(root, prefix)?;
    let mut node = root;
    for key in prefix {
        node = node.child_node_mut(key);
    }
    Ok(node)
}

enum Found<'a> {
    Node(&'a MNode),
    Leaf(usize),
}

fn lookup<'a>(node: &'a MNode, path: &[MKey]) -> Result<Found<'a>, ErrorKind> {
    let mut current = node;
    for (depth, key) in path.iter().enumerate() {
        match current.get(key) {
            Some(MChild::Node(n)) => current = n,
            Some(MChild::Leaf(id)) if depth + 1 == path.len() => return Ok(Found::Leaf(*id)),
            Some(MChild::Leaf(_)) => return Err(ErrorKind::PathThroughLeaf),
            None => return Err(ErrorKind::KeyNotFound),
        }
    }
    Ok(Found::Node(current))
}

/// `set`: missing nested states are created, a leaf on the way is an error,
/// the last key is replaced in place or appended.
fn model_set(node: &mut MNode, path: &[MKey], child: MChild) -> Result<(), ErrorKind> {
    let (last, parents) = path.split_last().ok_or(ErrorKind::InvalidArgument)?;
    let mut probe = Some(&*node);
    for key in parents {
        probe = match probe.and_then(|n| n.get(key)) {
            Some(MChild::Node(n)) => Some(n),
            Some(MChild::Leaf(_)) => return Err(ErrorKind::PathThroughLeaf),
            None => None,
        };
    }
    let mut cursor = node;
    for key in parents {
        if cursor.get(key).is_none() {
            cursor.insert(key.clone(), MChild::Node(MNode::default()));
        }
        cursor = cursor.child_node_mut(key);
    }
    cursor.insert(last.clone(), child);
    Ok(())
}

/// The replaying rule of merge, update and from_flat: a leaf in the way of
/// a path is replaced (in place) by a nested state.
fn set_replacing(node: &mut MNode, path: &[MKey], id: usize) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cursor = node;
    for key in parents {
        if !matches!(cursor.get(key), Some(MChild::Node(_))) {
            cursor.insert(key.clone(), MChild::Node(MNode::default()));
        }
        cursor = cursor.child_node_mut(key);
    }
    cursor.insert(last.clone(), MChild::Leaf(id));
}

fn leaves_in_order(node: &MNode) -> Vec<(MPath, usize)> {
    fn walk(node: &MNode, path: &mut MPath, out: &mut Vec<(MPath, usize)>) {
        for (key, child) in &node.0 {
            path.push(key.clone());
            match child {
                MChild::Leaf(id) => out.push((path.clone(), *id)),
                MChild::Node(n) => walk(n, path, out),
            }
            path.pop();
        }
    }
    let mut out = Vec::new();
    walk(node, &mut Vec::new(), &mut out);
    out
}

fn sorted_leaves(node: &MNode) -> Vec<(MPath, usize)> {
    let mut leaves = leaves_in_order(node);
    leaves.sort_by(|a, b| a.0.cmp(&b.0));
    leaves
}

fn unflatten(pairs: impl IntoIterator<Item = (MPath, usize)>) -> MNode {
    let mut root = MNode::default();
    for (path, id) in pairs {
        set_replacing(&mut root, &path, id);
    }
    root
}

/// A flat dictionary: a repeated path keeps its first place, the later leaf.
fn dedupe(pairs: impl IntoIterator<Item = (MPath, usize)>) -> Vec<(MPath, usize)> {
    let mut out: Vec<(MPath, usize)> = Vec::new();
    for (path, id) in pairs {
        match out.iter_mut().find(|(p, _)| *p == path) {
            Some(entry) => entry.1 = id,
            None => out.push((path, id)),
        }
    }
    out
}

fn is_leaf_path(node: &MNode, path: &[MKey]) -> bool {
    matches!(lookup(node, path), Ok(Found::Leaf(_)))
}

#[derive(Clone, Debug)]
enum TagMeta {
    None,
    Str(String),
    Int(i64),
}

#[derive(Clone, Debug)]
enum LeafMeta {
    Var { ty: u32, tag: TagMeta },
    Arr,
}

struct LeafRec {
    lib: Leaf,
    meta: LeafMeta,
}

/// A known variable type: id, name, parent.
#[derive(Clone, Debug)]
struct TypeRec {
    id: u32,
    name: String,
    parent: Option<u32>,
}

const BUILTINS: [(&str, Option<u32>); 12] = [
    ("Variable", None),
    ("Param", Some(0)),
    ("BatchStat", Some(0)),
    ("Cache", Some(0)),
    ("Intermediate", Some(0)),
    ("Perturbation", Some(4)),
    ("RngState", Some(0)),
    ("RngKey", Some(6)),
    ("RngCount", Some(6)),
    ("OptState", Some(0)),
    ("OptArray", Some(9)),
    ("OptVariable", Some(9)),
];

/// A filter in model form.
#[derive(Clone, Debug)]
enum MFilter {
    OfType(u32),
    WithTag(String),
    PathContains(MKey, bool),
    PathIn(Vec<MPath>),
    Any(Vec<MFilter>),
    All(Vec<MFilter>),
    Not(Box<MFilter>),
    Everything,
    Nothing,
    Callback(u8, Option<MKey>),
}

/// The callback filters' predicate, a pure function of the path: fails at a
/// path holding `fail_on`, else matches when a hash of the path is a
/// multiple of `modulus + 2`.
fn callback(modulus: u8, fail_on: &Option<MKey>, path: &[MKey]) -> Result<bool, ()> {
    if let Some(bad) = fail_on {
        if path.contains(bad) {
            return Err(());
        }
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for key in path {
        let (tag, text) = match key {
            MKey::Int(i) => (1u8, i.to_string()),
            MKey::Str(s) => (2u8, s.clone()),
        };
        for b in std::iter::once(tag).chain(text.bytes()).chain([0xff]) {
            hash ^= b as u64;
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    Ok(hash.is_multiple_of(modulus as u64 + 2))
}

struct Handle {
    lib: State,
    root: usize,
    prefix: MPath,
}

struct World {
    types: Vec<TypeRec>,
    leaves: Vec<LeafRec>,
    /// Library root handles and the model trees.
    roots: Vec<(State, MNode)>,
    handles: Vec<Handle>,
    log: Vec<String>,
}

fn fail(world: &World, message: String) -> ! {
    let mut text = String::from("ops so far:\n");
    for (i, op) in world.log.iter().enumerate() {
        text.push_str(&format!("  {i}: {op}\n"));
    }
    panic!("{text}{message}");
}

fn kind_of<T>(r: &nnx_state::Result<T>) -> Result<(), ErrorKind> {
    match r {
        Ok(_) => Ok(()),
        Err(e) => Err(e.kind()),
    }
}

impl World {
    fn new() -> World {
        let types = BUILTINS
            .iter()
            .enumerate()
            .map(|(i, (name, parent))| TypeRec {
                id: i as u32,
                name: (*name).to_owned(),
                parent: *parent,
            })
            .collect();
        let mut world = World {
            types,
            leaves: Vec::new(),
            roots: Vec::new(),
            handles: Vec::new(),
            log: Vec::new(),
        };
        world.new_variable(TypeId::PARAM.raw(), TagMeta::None, None);
        world.new_array(2);
        world.add_root(State::new(), MNode::default());
        world.add_root(State::new(), MNode::default());
        world
    }

    fn add_root(&mut self, lib: State, model: MNode) {
        if self.roots.len() >= MAX_ROOTS {
            return;
        }
        self.roots.push((lib.clone(), model));
        self.add_handle(Handle {
            lib,
            root: self.roots.len() - 1,
            prefix: Vec::new(),
        });
    }

    fn add_handle(&mut self, handle: Handle) {
        if self.handles.len() < MAX_HANDLES {
            self.handles.push(handle);
        }
    }

    fn handle(&self, i: u8) -> usize {
        i as usize % self.handles.len()
    }

    fn leaf(&self, i: u8) -> usize {
        i as usize % self.leaves.len()
    }

    fn model_node(&self, h: usize) -> Result<&MNode, ErrorKind> {
        let handle = &self.handles[h];
        resolve(&self.roots[handle.root].1, &handle.prefix)
    }

    fn new_variable(&mut self, ty: u32, tag: TagMeta, value: Option<Arc<Array>>) {
        if self.leaves.len() >= MAX_LEAVES {
            return;
        }
        let var = Variable::new(TypeId::from_raw(ty), value).expect("a known type");
        match &tag {
            TagMeta::None => {}
            TagMeta::Str(s) => var.set_metadata("tag", MetaValue::Str(s.clone())).unwrap(),
            TagMeta::Int(i) => var.set_metadata("tag", MetaValue::Int(*i)).unwrap(),
        }
        self.leaves.push(LeafRec {
            lib: Leaf::Variable(Arc::new(var)),
            meta: LeafMeta::Var { ty, tag },
        });
    }

    fn new_array(&mut self, len: usize) {
        if self.leaves.len() >= MAX_LEAVES {
            return;
        }
        let values: Vec<f32> = (0..len).map(|i| i as f32).collect();
        let array = Array::from_slice(&[len as i64], &values).expect("a valid array");
        self.leaves.push(LeafRec {
            lib: Leaf::Array(Arc::new(array)),
            meta: LeafMeta::Arr,
        });
    }

    fn is_subtype(&self, mut ty: u32, ancestor: u32) -> bool {
        loop {
            if ty == ancestor {
                return true;
            }
            match self
                .types
                .iter()
                .find(|t| t.id == ty)
                .and_then(|t| t.parent)
            {
                Some(parent) => ty = parent,
                None => return false,
            }
        }
    }

    // -- filters ------------------------------------------------------------

    fn make_filter(&self, spec: &FilterSpec, depth: usize) -> (MFilter, Filter) {
        if depth > MAX_FILTER_DEPTH {
            return (MFilter::Nothing, Filter::Nothing);
        }
        match spec {
            FilterSpec::OfType(i) => {
                let id = self.types[*i as usize % self.types.len()].id;
                (MFilter::OfType(id), Filter::of_type(TypeId::from_raw(id)))
            }
            FilterSpec::UnknownType => (
                MFilter::OfType(UNKNOWN_TYPE),
                Filter::of_type(TypeId::from_raw(UNKNOWN_TYPE)),
            ),
            FilterSpec::WithTag(i) => {
                let tag = TAGS[*i as usize % TAGS.len()];
                (MFilter::WithTag(tag.to_owned()), Filter::with_tag(tag))
            }
            FilterSpec::PathContains(k, exact) => {
                let key = MKey::from_spec(*k);
                let lib = Filter::path_contains(key.to_lib(), *exact);
                (MFilter::PathContains(key, *exact), lib)
            }
            FilterSpec::PathIn(paths) => {
                let paths: Vec<MPath> = paths.iter().take(6).map(|p| mpath(p)).collect();
                let lib = Filter::path_in(paths.iter().map(|p| lib_path(p)).collect());
                (MFilter::PathIn(paths), lib)
            }
            FilterSpec::Any(fs) | FilterSpec::All(fs) => {
                let (ms, ls): (Vec<_>, Vec<_>) = fs
                    .iter()
                    .take(4)
                    .map(|f| self.make_filter(f, depth + 1))
                    .unzip();
                if matches!(spec, FilterSpec::Any(_)) {
                    (MFilter::Any(ms), Filter::any(ls).unwrap())
                } else {
                    (MFilter::All(ms), Filter::all(ls).unwrap())
                }
            }
            FilterSpec::Not(f) => {
                let (m, l) = self.make_filter(f, depth + 1);
                (MFilter::Not(Box::new(m)), Filter::negate(l).unwrap())
            }
            FilterSpec::Everything => (MFilter::Everything, Filter::Everything),
            FilterSpec::Nothing => (MFilter::Nothing, Filter::Nothing),
            FilterSpec::Callback { modulus, fail_on } => {
                let fail_on = fail_on.map(MKey::from_spec);
                let (m, captured) = (*modulus, fail_on.clone());
                let lib = Filter::callback(move |path, _leaf| {
                    let path: MPath = path.iter().map(|k| MKey::from_lib(k)).collect();
                    callback(m, &captured, &path).map_err(|()| "told to fail".to_owned())
                });
                (MFilter::Callback(*modulus, fail_on), lib)
            }
        }
    }

    fn has_unknown_type(&self, f: &MFilter) -> bool {
        match f {
            MFilter::OfType(id) => !self.types.iter().any(|t| t.id == *id),
            MFilter::Any(fs) | MFilter::All(fs) => fs.iter().any(|f| self.has_unknown_type(f)),
            MFilter::Not(f) => self.has_unknown_type(f),
            _ => false,
        }
    }

    fn eval(&self, f: &MFilter, path: &[MKey], id: usize) -> Result<bool, ()> {
        let meta = &self.leaves[id].meta;
        Ok(match f {
            MFilter::OfType(t) => match meta {
                LeafMeta::Var { ty, .. } => self.is_subtype(*ty, *t),
                LeafMeta::Arr => false,
            },
            MFilter::WithTag(s) => {
                matches!(meta, LeafMeta::Var { tag: TagMeta::Str(t), .. } if t == s)
            }
            MFilter::PathContains(key, true) => path.contains(key),
            MFilter::PathContains(key, false) => {
                let needle = key.plain();
                path.iter().any(|k| k.plain().contains(&needle))
            }
            MFilter::PathIn(paths) => paths.iter().any(|p| p == path),
            MFilter::Any(fs) => {
                for f in fs {
                    if self.eval(f, path, id)? {
                        return Ok(true);
                    }
                }
                false
            }
            MFilter::All(fs) => {
                for f in fs {
                    if !self.eval(f, path, id)? {
                        return Ok(false);
                    }
                }
                true
            }
            MFilter::Not(f) => !self.eval(f, path, id)?,
            MFilter::Everything => true,
            MFilter::Nothing => false,
            MFilter::Callback(m, fail_on) => callback(*m, fail_on, path)?,
        })
    }

    fn model_partition(
        &self,
        node: &MNode,
        filters: &[MFilter],
        split: bool,
    ) -> Result<Vec<MNode>, ErrorKind> {
        if filters.is_empty() {
            return Err(ErrorKind::InvalidArgument);
        }
        let first_everything = filters
            .iter()
            .position(|f| matches!(f, MFilter::Everything));
        let last_other = filters
            .iter()
            .rposition(|f| !matches!(f, MFilter::Everything));
        if let (Some(e), Some(o)) = (first_everything, last_other) {
            if e < o {
                return Err(ErrorKind::FilterOrder);
            }
        }
        if filters.iter().any(|f| self.has_unknown_type(f)) {
            return Err(ErrorKind::UnknownType);
        }
        let mut outs: Vec<Vec<(MPath, usize)>> = vec![Vec::new(); filters.len()];
        let mut unmatched = 0;
        for (path, id) in sorted_leaves(node) {
            let mut target = None;
            for (i, f) in filters.iter().enumerate() {
                if self.eval(f, &path, id).map_err(|()| ErrorKind::Callback)? {
                    target = Some(i);
                    break;
                }
            }
            match target {
                Some(i) => outs[i].push((path, id)),
                None => unmatched += 1,
            }
        }
        if split && unmatched > 0 {
            return Err(ErrorKind::NonExhaustive);
        }
        Ok(outs.into_iter().map(unflatten).collect())
    }

    // -- comparison ---------------------------------------------------------

    fn compare_node(&self, lib: &Node, model: &MNode, at: &mut MPath) -> Result<(), String> {
        if at.is_empty() {
            // What each node says of its subtree must hold after every step.
            lib.check_summary().map_err(|e| format!("summary at {e}"))?;
        }
        let lib_keys: Vec<MKey> = lib.keys().map(MKey::from_lib).collect();
        let model_keys: Vec<MKey> = model.0.iter().map(|(k, _)| k.clone()).collect();
        if lib_keys != model_keys {
            return Err(format!(
                "at {at:?}: library keys {lib_keys:?}, model keys {model_keys:?}"
            ));
        }
        for ((key, child), (_, mchild)) in lib.iter().zip(&model.0) {
            at.push(MKey::from_lib(key));
            match (child, mchild) {
                (Child::Node(n), MChild::Node(m)) => self.compare_node(n, m, at)?,
                (Child::Leaf(l), MChild::Leaf(id)) => {
                    if !l.same(&self.leaves[*id].lib) {
                        return Err(format!("at {at:?}: not the model's leaf #{id}"));
                    }
                }
                (c, _) => {
                    return Err(format!(
                        "at {at:?}: library has a {:?}, the model a {}",
                        c.kind(),
                        match mchild {
                            MChild::Node(_) => "nested state",
                            MChild::Leaf(_) => "leaf",
                        }
                    ))
                }
            }
            at.pop();
        }
        Ok(())
    }

    fn expect_same(&self, what: &str, lib: &State, model: &MNode) {
        let node = match lib.node() {
            Ok(n) => n,
            Err(e) => fail(self, format!("{what}: the library state fails: {e}")),
        };
        if let Err(diff) = self.compare_node(&node, model, &mut Vec::new()) {
            fail(
                self,
                format!("{what}: {diff}\nlibrary: {lib:?}\nmodel: {model:?}"),
            );
        }
    }

    fn expect_kind<T>(&self, what: &str, lib: &nnx_state::Result<T>, model: Result<(), ErrorKind>) {
        let got = kind_of(lib);
        if got != model {
            let message = match lib {
                Err(e) => e.message().to_owned(),
                Ok(_) => String::new(),
            };
            fail(
                self,
                format!("{what}: library {got:?} ({message}), model {model:?}"),
            );
        }
    }

    fn check_world(&self) {
        for (i, (lib, model)) in self.roots.iter().enumerate() {
            self.expect_same(&format!("root {i}"), lib, model);
        }
        for (i, h) in self.handles.iter().enumerate() {
            let model = self.model_node(i);
            let lib = h.lib.len();
            self.expect_kind(&format!("handle {i} len"), &lib, model.map(|_| ()));
            if let (Ok(n), Ok(m)) = (lib, model) {
                assert_eq!(n, m.0.len());
            }
        }
    }

    fn compare_flat(&self, what: &str, lib: &[(Vec<Key>, Leaf)], model: &[(MPath, usize)]) {
        let lib_paths: Vec<MPath> = lib
            .iter()
            .map(|(p, _)| p.iter().map(MKey::from_lib).collect())
            .collect();
        let model_paths: Vec<MPath> = model.iter().map(|(p, _)| p.clone()).collect();
        if lib_paths != model_paths {
            fail(
                self,
                format!("{what}: library paths {lib_paths:?}, model {model_paths:?}"),
            );
        }
        for ((_, leaf), (path, id)) in lib.iter().zip(model) {
            if !leaf.same(&self.leaves[*id].lib) {
                fail(
                    self,
                    format!("{what}: at {path:?} not the model's leaf #{id}"),
                );
            }
        }
    }

    // -- operations ---------------------------------------------------------

    fn apply(&mut self, op: &Op) {
        match op {
            Op::NewVariable { ty, tag, value } => {
                let ty = self.types[*ty as usize % self.types.len()].id;
                let tag = match tag % 5 {
                    3 => TagMeta::None,
                    4 => TagMeta::Int(7),
                    t => TagMeta::Str(TAGS[t as usize].to_owned()),
                };
                let value = value.and_then(|i| {
                    let id = self.leaf(i);
                    self.leaves[id].lib.as_array().cloned()
                });
                self.new_variable(ty, tag, value);
            }
            Op::NewArray { len } => self.new_array(*len as usize % 4),
            Op::RegisterType { parent, n } => {
                let parent = self.types[*parent as usize % self.types.len()].clone();
                let name = format!("Fz{}<{}", n % 4, parent.name);
                if name.len() > 24 {
                    return;
                }
                let lib = types::register(&name, TypeId::from_raw(parent.id));
                let id = match lib {
                    Ok(id) => id.raw(),
                    Err(e) => fail(self, format!("register {name}: {e}")),
                };
                if let Some(known) = self.types.iter().find(|t| t.name == name) {
                    assert_eq!(known.id, id, "{name} registered again under another id");
                    return;
                }
                assert_eq!(types::name(TypeId::from_raw(id)).unwrap(), name);
                assert_eq!(
                    types::parent(TypeId::from_raw(id)).unwrap(),
                    Some(TypeId::from_raw(parent.id))
                );
                assert!(
                    !self.types.iter().any(|t| t.id == id),
                    "{name} got the id of another type"
                );
                self.types.push(TypeRec {
                    id,
                    name,
                    parent: Some(parent.id),
                });
            }
            Op::RegisterConflict { ty, other } => {
                let t = self.types[*ty as usize % self.types.len()].clone();
                let q = self.types[*other as usize % self.types.len()].id;
                let lib = types::register(&t.name, TypeId::from_raw(q));
                let want = if t.parent == Some(q) {
                    Ok(())
                } else {
                    Err(ErrorKind::TypeConflict)
                };
                self.expect_kind(&format!("register {} under {q}", t.name), &lib, want);
                if let Ok(id) = lib {
                    assert_eq!(id.raw(), t.id);
                }
            }
            Op::SetTag { leaf, tag } => {
                let id = self.leaf(*leaf);
                let LeafRec { lib, meta } = &mut self.leaves[id];
                let (Leaf::Variable(var), LeafMeta::Var { tag: model_tag, .. }) = (lib, meta)
                else {
                    return;
                };
                *model_tag = match tag % 5 {
                    3 => {
                        var.remove_metadata("tag");
                        TagMeta::None
                    }
                    4 => {
                        var.set_metadata("tag", MetaValue::Int(3)).unwrap();
                        TagMeta::Int(3)
                    }
                    t => {
                        let text = TAGS[t as usize];
                        var.set_metadata("tag", MetaValue::Str(text.into()))
                            .unwrap();
                        TagMeta::Str(text.into())
                    }
                };
            }
            Op::SetValue { leaf, array } => {
                let (v, a) = (self.leaf(*leaf), self.leaf(*array));
                if let (Leaf::Variable(var), Leaf::Array(arr)) =
                    (&self.leaves[v].lib, &self.leaves[a].lib)
                {
                    var.set_value(Some(arr.clone()));
                    assert!(Arc::ptr_eq(&var.array().unwrap(), arr));
                }
            }
            Op::Set { st, path, leaf } => {
                let (h, id, path) = (self.handle(*st), self.leaf(*leaf), mpath(path));
                let lib = self.handles[h]
                    .lib
                    .set(&lib_path(&path), Child::Leaf(self.leaves[id].lib.clone()));
                let model = self.model_mutate(
                    h,
                    |node| model_set(node, &path, MChild::Leaf(id)),
                    path.is_empty(),
                );
                self.expect_kind(&format!("set {path:?} on handle {h}"), &lib, model);
            }
            Op::SetState { st, path, src } => {
                let (h, s, path) = (self.handle(*st), self.handle(*src), mpath(path));
                let lib = self.handles[h]
                    .lib
                    .set_state(&lib_path(&path), &self.handles[s].lib);
                let model = match self.model_node(s).cloned() {
                    Err(e) => Err(e),
                    Ok(copy) => self.model_mutate(
                        h,
                        |node| model_set(node, &path, MChild::Node(copy)),
                        path.is_empty(),
                    ),
                };
                self.expect_kind(&format!("set_state {path:?} on {h} from {s}"), &lib, model);
            }
            Op::Remove { st, path } => {
                let (h, path) = (self.handle(*st), mpath(path));
                let lib = self.handles[h].lib.remove(&lib_path(&path));
                let model = self.model_mutate(
                    h,
                    |node| {
                        lookup(node, &path)?;
                        let (last, parents) = path.split_last().expect("checked");
                        let mut cursor = node;
                        for key in parents {
                            cursor = cursor.child_node_mut(key);
                        }
                        cursor.remove(last);
                        Ok(())
                    },
                    path.is_empty(),
                );
                self.expect_kind(&format!("remove {path:?} on handle {h}"), &lib, model);
            }
            Op::View { st, path } => {
                let (h, path) = (self.handle(*st), mpath(path));
                let lib = self.handles[h].lib.view(&lib_path(&path));
                let model = self.model_node(h).and_then(|n| match lookup(n, &path)? {
                    Found::Node(_) => Ok(()),
                    Found::Leaf(_) => Err(ErrorKind::WrongKind),
                });
                self.expect_kind(&format!("view {path:?} of handle {h}"), &lib, model);
                if let Ok(view) = lib {
                    let root = self.handles[h].root;
                    let mut prefix = self.handles[h].prefix.clone();
                    prefix.extend(path);
                    self.add_handle(Handle {
                        lib: view,
                        root,
                        prefix,
                    });
                }
            }
            Op::Get { st, path } => self.get(self.handle(*st), mpath(path)),
            Op::KeyAt { st, index } => {
                let h = self.handle(*st);
                let index = *index as usize % 6;
                let lib = self.handles[h].lib.key_at(index);
                let model = self.model_node(h).and_then(|n| {
                    n.0.get(index)
                        .map(|(k, _)| k.clone())
                        .ok_or(ErrorKind::IndexOutOfRange)
                });
                self.expect_kind("key_at", &lib, model.as_ref().map(|_| ()).map_err(|e| *e));
                if let (Ok(k), Ok(m)) = (lib, model) {
                    assert_eq!(MKey::from_lib(&k), m);
                }
            }
            Op::Copy { st } => {
                let h = self.handle(*st);
                let lib = self.handles[h].lib.copy();
                let model = self.model_node(h).cloned();
                self.expect_kind("copy", &lib, model.as_ref().map(|_| ()).map_err(|e| *e));
                if let (Ok(lib), Ok(model)) = (lib, model) {
                    self.expect_same("copy", &lib, &model);
                    self.add_root(lib, model);
                }
            }
            Op::DeepCopy { st } => self.deep_copy(self.handle(*st)),
            Op::Filter { st, filters, split } => {
                let h = self.handle(*st);
                let (mfilters, filters): (Vec<_>, Vec<_>) = filters
                    .iter()
                    .take(5)
                    .map(|f| self.make_filter(f, 0))
                    .unzip();
                let lib = if *split {
                    self.handles[h].lib.split(&filters)
                } else {
                    self.handles[h].lib.filter(&filters)
                };
                let model = self
                    .model_node(h)
                    .and_then(|n| self.model_partition(n, &mfilters, *split));
                let what = format!(
                    "{} of handle {h} by {filters:?}",
                    if *split { "split" } else { "filter" }
                );
                self.expect_kind(&what, &lib, model.as_ref().map(|_| ()).map_err(|e| *e));
                if let (Ok(parts), Ok(models)) = (lib, model) {
                    assert_eq!(parts.len(), models.len());
                    for (i, (part, model)) in parts.into_iter().zip(models).enumerate() {
                        self.expect_same(&format!("{what}: part {i}"), &part, &model);
                        self.add_root(part, model);
                    }
                }
            }
            Op::Merge { sts } => {
                let hs: Vec<usize> = sts.iter().take(4).map(|s| self.handle(*s)).collect();
                let states: Vec<&State> = hs.iter().map(|&h| &self.handles[h].lib).collect();
                let lib = State::merge(&states);
                let model = hs
                    .iter()
                    .map(|&h| self.model_node(h))
                    .collect::<Result<Vec<_>, _>>()
                    .and_then(|nodes| match nodes.as_slice() {
                        [] => Err(ErrorKind::InvalidArgument),
                        [only] => Ok((*only).clone()),
                        _ => {
                            let all = nodes.iter().flat_map(|n| leaves_in_order(n));
                            Ok(unflatten(dedupe(all)))
                        }
                    });
                let what = format!("merge of handles {hs:?}");
                self.expect_kind(&what, &lib, model.as_ref().map(|_| ()).map_err(|e| *e));
                if let (Ok(lib), Ok(model)) = (lib, model) {
                    self.expect_same(&what, &lib, &model);
                    self.add_root(lib, model);
                }
            }
            Op::Diff { a, b } => {
                let (a, b) = (self.handle(*a), self.handle(*b));
                let lib = self.handles[a].lib.diff(&self.handles[b].lib);
                let model = self.model_node(a).and_then(|na| {
                    let nb = self.model_node(b)?;
                    Ok(if nb.0.is_empty() {
                        na.clone()
                    } else {
                        unflatten(
                            sorted_leaves(na)
                                .into_iter()
                                .filter(|(p, _)| !is_leaf_path(nb, p)),
                        )
                    })
                });
                let what = format!("diff of handles {a} and {b}");
                self.expect_kind(&what, &lib, model.as_ref().map(|_| ()).map_err(|e| *e));
                if let (Ok(lib), Ok(model)) = (lib, model) {
                    self.expect_same(&what, &lib, &model);
                    self.add_root(lib, model);
                }
            }
            Op::Update { dst, src } => {
                let (d, s) = (self.handle(*dst), self.handle(*src));
                let lib = self.handles[d].lib.update(&self.handles[s].lib);
                let model = match self.model_node(s).map(leaves_in_order) {
                    Err(e) => Err(e),
                    Ok(leaves) => self.model_mutate(
                        d,
                        |node| {
                            for (path, id) in leaves {
                                set_replacing(node, &path, id);
                            }
                            Ok(())
                        },
                        false,
                    ),
                };
                self.expect_kind(&format!("update {d} from {s}"), &lib, model);
            }
            Op::FromFlat { pairs } => {
                let pairs: Vec<(MPath, usize)> = pairs
                    .iter()
                    .take(12)
                    .map(|(p, l)| (mpath(p), self.leaf(*l)))
                    .collect();
                let lib = State::from_flat(
                    pairs
                        .iter()
                        .map(|(p, id)| (lib_path(p), self.leaves[*id].lib.clone())),
                );
                let model = if pairs.iter().any(|(p, _)| p.is_empty()) {
                    Err(ErrorKind::InvalidArgument)
                } else {
                    Ok(unflatten(dedupe(pairs.iter().cloned())))
                };
                let what = format!("from_flat {pairs:?}");
                self.expect_kind(&what, &lib, model.as_ref().map(|_| ()).map_err(|e| *e));
                if let (Ok(lib), Ok(model)) = (lib, model) {
                    self.expect_same(&what, &lib, &model);
                    self.add_root(lib, model);
                }
            }
            Op::FlatRoundTrip { st } => {
                let h = self.handle(*st);
                let lib = self.handles[h].lib.flatten().and_then(State::from_flat);
                let model = self.model_node(h).map(|n| unflatten(sorted_leaves(n)));
                self.expect_kind(
                    "flatten/from_flat",
                    &lib,
                    model.as_ref().map(|_| ()).map_err(|e| *e),
                );
                if let (Ok(lib), Ok(model)) = (lib, model) {
                    self.expect_same("flatten/from_flat", &lib, &model);
                }
            }
        }
    }

    /// Runs a mutation on the model node of handle `h`, failing as the
    /// library does: an empty path first (when `empty_path`), then a view
    /// that no longer leads to a nested state, then `f`'s own errors (after
    /// which `f` must have changed nothing).
    fn model_mutate(
        &mut self,
        h: usize,
        f: impl FnOnce(&mut MNode) -> Result<(), ErrorKind>,
        empty_path: bool,
    ) -> Result<(), ErrorKind> {
        if empty_path {
            return Err(ErrorKind::InvalidArgument);
        }
        let (root, prefix) = (self.handles[h].root, self.handles[h].prefix.clone());
        let node = resolve_mut(&mut self.roots[root].1, &prefix)?;
        let before = node.clone();
        let result = f(node);
        if result.is_err() {
            *node = before;
        }
        result
    }

    fn get(&self, h: usize, path: MPath) {
        let lib_state = &self.handles[h].lib;
        let keys = lib_path(&path);
        let what = format!("get {path:?} of handle {h}");
        let model = self.model_node(h).and_then(|n| {
            Ok(match lookup(n, &path)? {
                Found::Node(n) => (Kind::State, None, Some(n)),
                Found::Leaf(id) => {
                    let kind = match self.leaves[id].meta {
                        LeafMeta::Var { .. } => Kind::Variable,
                        LeafMeta::Arr => Kind::Array,
                    };
                    (kind, Some(id), None)
                }
            })
        });
        let model_kind = model.as_ref().map(|_| ()).map_err(|e| *e);
        let lib = lib_state.get(&keys);
        self.expect_kind(&what, &lib, model_kind);
        let kind = lib_state.kind(&keys);
        self.expect_kind(&what, &kind, model_kind);
        if let (Ok(kind), Ok((want, _, _))) = (kind, &model) {
            assert_eq!(kind, *want, "{what}: kind");
        }
        let contains = lib_state.contains(&keys);
        let node_ok = self.model_node(h).map(|_| ());
        self.expect_kind(&format!("contains: {what}"), &contains, node_ok);
        if let Ok(c) = contains {
            assert_eq!(c, model.is_ok(), "{what}: contains");
        }
        if let (Ok(entry), Ok((kind, id, node))) = (lib, model) {
            match entry {
                Entry::Leaf(leaf) => {
                    let id =
                        id.unwrap_or_else(|| fail(self, format!("{what}: a leaf, model {kind:?}")));
                    assert!(leaf.same(&self.leaves[id].lib), "{what}: another leaf");
                }
                Entry::State(view) => {
                    let Some(node) = node else {
                        fail(self, format!("{what}: a state, model {kind:?}"));
                    };
                    self.expect_same(&what, &view, node);
                    let flat = view.flatten().expect("the view was just read");
                    self.compare_flat(&format!("flatten: {what}"), &flat, &sorted_leaves(node));
                    let keys: Vec<MKey> = view.keys().unwrap().iter().map(MKey::from_lib).collect();
                    let model_keys: Vec<MKey> = node.0.iter().map(|(k, _)| k.clone()).collect();
                    assert_eq!(keys, model_keys, "{what}: keys");
                    assert_eq!(view.num_leaves().unwrap(), leaves_in_order(node).len());
                    view.to_string_tree().expect("listing");
                }
            }
        }
    }

    fn deep_copy(&mut self, h: usize) {
        let lib = self.handles[h].lib.deep_copy();
        let model = self.model_node(h).cloned();
        self.expect_kind(
            "deep_copy",
            &lib,
            model.as_ref().map(|_| ()).map_err(|e| *e),
        );
        let (Ok(lib), Ok(model)) = (lib, model) else {
            return;
        };
        if self.leaves.len() + leaves_in_order(&model).len() > MAX_LEAVES * 2 {
            return;
        }
        // Walk both trees together: the copy has the model's shape, with one
        // new leaf for each distinct old one.
        let node = lib.node().expect("a new state");
        let mut mapping: Vec<(usize, usize)> = Vec::new();
        let copied = self.map_copy(&node, &model, &mut mapping, &mut Vec::new());
        self.expect_same("deep_copy", &lib, &copied);
        self.add_root(lib, copied);
    }

    fn map_copy(
        &mut self,
        lib: &Node,
        model: &MNode,
        mapping: &mut Vec<(usize, usize)>,
        at: &mut MPath,
    ) -> MNode {
        let mut out = MNode::default();
        if lib.len() != model.0.len() {
            fail(
                self,
                format!(
                    "deep_copy at {at:?}: {} keys, model {}",
                    lib.len(),
                    model.0.len()
                ),
            );
        }
        for ((key, child), (mkey, mchild)) in lib.iter().zip(&model.0) {
            if MKey::from_lib(key) != *mkey {
                fail(
                    self,
                    format!("deep_copy at {at:?}: key {key:?}, model {mkey:?}"),
                );
            }
            at.push(mkey.clone());
            let copied = match (child, mchild) {
                (Child::Node(n), MChild::Node(m)) => MChild::Node(self.map_copy(n, m, mapping, at)),
                (Child::Leaf(leaf), MChild::Leaf(old)) => {
                    if leaf.same(&self.leaves[*old].lib) {
                        fail(
                            self,
                            format!("deep_copy at {at:?}: the leaf was not copied"),
                        );
                    }
                    match mapping.iter().find(|(o, _)| o == old) {
                        Some(&(_, new)) => {
                            if !leaf.same(&self.leaves[new].lib) {
                                fail(
                                    self,
                                    format!("deep_copy at {at:?}: a shared leaf was copied twice"),
                                );
                            }
                            MChild::Leaf(new)
                        }
                        None => {
                            if mapping.iter().any(|(_, n)| self.leaves[*n].lib.same(leaf)) {
                                fail(self, format!("deep_copy at {at:?}: two leaves became one"));
                            }
                            let meta = self.leaves[*old].meta.clone();
                            match (&meta, leaf) {
                                (LeafMeta::Var { ty, .. }, Leaf::Variable(v)) => {
                                    assert_eq!(v.type_id().raw(), *ty)
                                }
                                (LeafMeta::Arr, Leaf::Array(_)) => {}
                                _ => fail(self, format!("deep_copy at {at:?}: kind changed")),
                            }
                            self.leaves.push(LeafRec {
                                lib: leaf.clone(),
                                meta,
                            });
                            let new = self.leaves.len() - 1;
                            mapping.push((*old, new));
                            MChild::Leaf(new)
                        }
                    }
                }
                _ => fail(self, format!("deep_copy at {at:?}: kind changed")),
            };
            at.pop();
            out.0.push((mkey.clone(), copied));
        }
        out
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Unstructured::new(data);
    let mut world = World::new();
    for _ in 0..MAX_OPS {
        let Ok(op) = Op::arbitrary(&mut input) else {
            break;
        };
        world.log.push(format!("{op:?}"));
        world.apply(&op);
        world.check_world();
        if input.is_empty() {
            break;
        }
    }
});
