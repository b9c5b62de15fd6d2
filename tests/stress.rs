//! Concurrency stress: eight threads share one state for a bounded time
//! (about 2.5 s, and at most `MAX_STEPS` steps each), once through the Rust
//! API and once through the C API handles.
//!
//! Every mutation adds, removes or rewrites leaves by whole *groups*: a
//! group is a nested state under one top-level key (a str or an int key)
//! holding exactly the leaves `w`, `b`, `inner/0`, `inner/1` and `c`, and
//! sometimes a pair `extra/0`, `extra/1` that is inserted and removed
//! together. So a reader that saw half of a mutation would see a broken
//! group. After every step the thread checks what it read:
//!
//! - every snapshot (flatten, copy, views, deep copy) holds whole groups
//!   only, with paths strictly sorted, and a diff of two snapshots whole
//!   groups or extra pairs;
//! - the parts of a split partition the snapshot exactly (same leaves, each
//!   once), each part holds the right members of whole groups, and the
//!   parts of one split agree on which groups exist (one atomic read);
//! - the merge of the parts is the snapshot again;
//! - type registration of one name from many threads gives one id.
//!
//! At the end, with the state and every handle dropped, every array the test
//! made has been released exactly once (each carries a release callback that
//! counts) and every variable is gone (weak references, or in C, the
//! variables' values are counted arrays).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, Weak};
use std::thread;
use std::time::{Duration, Instant};

use ::nnx_state::key::format_path;
use ::nnx_state::{
    types, Array, Buffer, DType, Device, Entry, ErrorKind, Filter, Key, Leaf, MetaValue, State,
    TypeId, Variable,
};

const THREADS: usize = 8;
const RUN_FOR: Duration = Duration::from_millis(2500);
const MAX_STEPS: usize = 20_000;
/// Groups a thread keeps at most.
const MAX_GROUPS: usize = 6;
/// What the leaves under one top-level key may be, by path relative to it:
/// one of these lists (in sorted order). No list: the key must not appear.
type Allowed = &'static [&'static [&'static str]];

/// A group: its five leaves, with or without the extra pair.
const GROUP: Allowed = &[
    &["b", "c", "inner/0", "inner/1", "w"],
    &["b", "c", "extra/0", "extra/1", "inner/0", "inner/1", "w"],
];
/// What a diff of two snapshots holds under a group's key: paths only one
/// side has, so whole groups added or removed in between, or the extra pair
/// alone.
const DIFF_GROUP: Allowed = &[
    &["b", "c", "inner/0", "inner/1", "w"],
    &["b", "c", "extra/0", "extra/1", "inner/0", "inner/1", "w"],
    &["extra/0", "extra/1"],
];
/// The leaves under the top-level `base` key, never removed.
const BASE: Allowed = &[&["x", "y"]];
/// Where the leaves go when split by `[Param, BatchStat, ...]`: `w` and
/// `inner/0` are Params, `b` is a BatchStat, `inner/1` and the extras are
/// bare arrays and `c` a variable of a registered type under Cache.
/// `base/x` is a Param and `base/y` a bare array.
const PARTS: [(Allowed, Allowed); 3] = [
    (&[&["inner/0", "w"]], &[&["x"]]),
    (&[&["b"]], &[]),
    (
        &[&["c", "inner/1"], &["c", "extra/0", "extra/1", "inner/1"]],
        &[&["y"]],
    ),
];

/// Bytes every counted array borrows (read-only).
static DATA: [u8; 16] = [0; 16];

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The key of a thread's `n`th group: str and int keys alternate.
fn group_key(thread: usize, n: usize) -> Key {
    if n % 2 == 0 {
        Key::str(&format!("t{thread}g{n}"))
    } else {
        Key::int((thread * 1_000_000 + n) as i64)
    }
}

fn path(text: &str) -> Vec<Key> {
    ::nnx_state::parse_path(text).expect("a test path")
}

/// Checks that `flat` is sorted and holds whole groups: under `base`, what
/// `base` allows; under any other top-level key, what `group` allows.
/// Returns the group keys.
fn check_groups(
    flat: &[(Vec<Key>, Leaf)],
    group: Allowed,
    base: Allowed,
) -> Result<BTreeSet<Key>, String> {
    for pair in flat.windows(2) {
        if pair[0].0 >= pair[1].0 {
            return Err(format!(
                "not sorted: {} then {}",
                format_path(&pair[0].0),
                format_path(&pair[1].0)
            ));
        }
    }
    let mut groups: BTreeMap<Key, Vec<String>> = BTreeMap::new();
    for (p, _) in flat {
        let (top, rest) = p.split_first().ok_or("an empty path")?;
        groups.entry(*top).or_default().push(format_path(rest));
    }
    let base_key = Key::str("base");
    for (top, members) in &groups {
        let want = if *top == base_key { base } else { group };
        check_members(*top, members, want)?;
    }
    Ok(groups.into_keys().filter(|k| *k != base_key).collect())
}

fn check_members(top: Key, members: &[String], want: Allowed) -> Result<(), String> {
    if want.iter().any(|w| members == *w) {
        Ok(())
    } else {
        Err(format!(
            "a torn group at {top}: {members:?}, expected one of {want:?}"
        ))
    }
}

/// The leaves of `flat` as (path, identity) for comparisons.
fn identities(flat: &[(Vec<Key>, Leaf)]) -> Vec<(Vec<Key>, usize)> {
    let mut out: Vec<(Vec<Key>, usize)> = flat
        .iter()
        .map(|(p, leaf)| {
            let id = match leaf {
                Leaf::Variable(v) => Arc::as_ptr(v) as usize,
                Leaf::Array(a) => Arc::as_ptr(a) as usize,
            };
            (p.clone(), id)
        })
        .collect();
    out.sort();
    out
}

/// What a thread made: counters of its arrays' releases, weak references to
/// its variables.
#[derive(Default)]
struct Made {
    arrays: Vec<Arc<AtomicU32>>,
    variables: Vec<Weak<Variable>>,
}

impl Made {
    /// An array over `DATA` whose release callback counts.
    fn array(&mut self) -> Arc<Array> {
        let released = Arc::new(AtomicU32::new(0));
        self.arrays.push(released.clone());
        // SAFETY: `DATA` is static, and the buffer is read-only.
        let buffer = unsafe {
            Buffer::from_foreign(
                DATA.as_ptr().cast_mut(),
                DATA.len(),
                false,
                Device::CPU,
                Some(Box::new(move || {
                    released.fetch_add(1, Ordering::SeqCst);
                })),
            )
        };
        Arc::new(Array::from_buffer(DType::F32, &[4], buffer).expect("16 bytes of f32[4]"))
    }

    fn variable(&mut self, type_id: TypeId) -> Arc<Variable> {
        let value = self.array();
        let var = Arc::new(Variable::new(type_id, Some(value)).expect("a known type"));
        self.variables.push(Arc::downgrade(&var));
        var
    }
}

/// What the threads share.
struct Shared {
    state: State,
    /// Params held by many groups at `inner/0`; their values are swapped.
    params: Vec<Arc<Variable>>,
    /// The registered type of every group's `c`.
    custom: TypeId,
    /// Type names registered during the run and the id each thread got.
    registered: Mutex<HashMap<String, TypeId>>,
    steps: AtomicUsize,
    checks: AtomicUsize,
}

fn new_group(shared: &Shared, made: &mut Made, rng: &mut Rng) -> State {
    let group = State::new();
    let shared_param = shared.params[rng.below(shared.params.len())].clone();
    group
        .set_variable(&path("w"), made.variable(TypeId::PARAM))
        .unwrap();
    group
        .set_variable(&path("b"), made.variable(TypeId::BATCH_STAT))
        .unwrap();
    group.set_variable(&path("inner/0"), shared_param).unwrap();
    group.set_array(&path("inner/1"), made.array()).unwrap();
    let c = made.variable(shared.custom);
    c.set_metadata("tag", MetaValue::Str("custom".into()))
        .unwrap();
    group.set_variable(&path("c"), c).unwrap();
    group
}

/// Reads and checks: a step of any thread.
fn check_step(shared: &Shared, rng: &mut Rng, older: &mut Option<State>) -> Result<(), String> {
    let state = &shared.state;
    let split_filters = [
        Filter::of_type(TypeId::PARAM),
        Filter::of_type(TypeId::BATCH_STAT),
        Filter::Everything,
    ];
    match rng.below(9) {
        0 => {
            // A snapshot, its split and the merge of the parts.
            let snapshot = state.copy().map_err(|e| e.to_string())?;
            let flat = snapshot.flatten().map_err(|e| e.to_string())?;
            let groups = check_groups(&flat, GROUP, BASE)?;
            let parts = snapshot.split(&split_filters).map_err(|e| e.to_string())?;
            let mut union = Vec::new();
            for (part, (members, base)) in parts.iter().zip(PARTS) {
                let part_flat = part.flatten().map_err(|e| e.to_string())?;
                let part_groups = check_groups(&part_flat, members, base)?;
                if part_groups != groups {
                    return Err("a part of a snapshot's split lost groups".into());
                }
                union.extend(part_flat);
            }
            if identities(&union) != identities(&flat) {
                return Err("the parts of a split are not a partition of the snapshot".into());
            }
            let refs: Vec<&State> = parts.iter().collect();
            let merged = State::merge(&refs).map_err(|e| e.to_string())?;
            let merged_flat = merged.flatten().map_err(|e| e.to_string())?;
            if identities(&merged_flat) != identities(&flat) {
                return Err("merging the parts does not give the snapshot".into());
            }
            *older = Some(snapshot);
        }
        1 => {
            // A split of the shared state itself reads one snapshot.
            let parts = state.split(&split_filters).map_err(|e| e.to_string())?;
            let mut seen = None;
            for (part, (members, base)) in parts.iter().zip(PARTS) {
                let flat = part.flatten().map_err(|e| e.to_string())?;
                let groups = check_groups(&flat, members, base)?;
                match &seen {
                    None => seen = Some(groups),
                    Some(first) if *first != groups => {
                        return Err("the parts of one split disagree on the groups".into())
                    }
                    Some(_) => {}
                }
            }
        }
        2 => {
            let flat = state.flatten().map_err(|e| e.to_string())?;
            check_groups(&flat, GROUP, BASE)?;
            let snapshot = state.copy().map_err(|e| e.to_string())?;
            let leaves = snapshot.num_leaves().map_err(|e| e.to_string())?;
            let flat = snapshot.flatten().map_err(|e| e.to_string())?;
            if leaves != flat.len() {
                return Err(format!("{leaves} leaves, {} flat entries", flat.len()));
            }
        }
        3 => {
            // Keys, and views of whatever groups exist now.
            let keys = state.keys().map_err(|e| e.to_string())?;
            for key in keys.iter().take(4) {
                match state.get(&[*key]) {
                    Ok(Entry::State(view)) => match view.flatten() {
                        Ok(flat) => {
                            let members: Vec<String> =
                                flat.iter().map(|(p, _)| format_path(p)).collect();
                            let is_base = key.as_str() == Some("base");
                            check_members(*key, &members, if is_base { BASE } else { GROUP })?;
                        }
                        Err(e) if e.kind() == ErrorKind::KeyNotFound => {}
                        Err(e) => return Err(format!("a view failed: {e}")),
                    },
                    Ok(Entry::Leaf(_)) => return Err(format!("a leaf at the top: {key}")),
                    Err(e) if e.kind() == ErrorKind::KeyNotFound => {}
                    Err(e) => return Err(format!("get failed: {e}")),
                }
            }
            let _ = state.len().map_err(|e| e.to_string())?;
        }
        4 => {
            // Filters: a callback, paths, tags and a registered type.
            let calls = Arc::new(AtomicUsize::new(0));
            let counter = calls.clone();
            let by_callback = Filter::callback(move |p, _| {
                counter.fetch_add(1, Ordering::Relaxed);
                Ok(p.last().and_then(|k| k.as_str()) == Some("b"))
            });
            let parts = state
                .filter(&[
                    by_callback,
                    Filter::path_contains("inner", true),
                    Filter::with_tag("custom"),
                    Filter::of_type(shared.custom),
                ])
                .map_err(|e| e.to_string())?;
            let expect: [Allowed; 4] = [&[&["b"]], &[&["inner/0", "inner/1"]], &[&["c"]], &[]];
            let mut groups = Vec::new();
            for (part, members) in parts.iter().zip(expect) {
                let flat = part.flatten().map_err(|e| e.to_string())?;
                groups.push(check_groups(&flat, members, &[])?);
            }
            if groups[0] != groups[1] || groups[1] != groups[2] || !groups[3].is_empty() {
                return Err("the parts of one filter disagree on the groups".into());
            }
            if calls.load(Ordering::Relaxed) == 0 && !groups[0].is_empty() {
                return Err("the callback was never called".into());
            }
        }
        5 => {
            // diff against an older snapshot, both ways.
            if let Some(old) = older.as_ref() {
                let d = state.diff(old).map_err(|e| e.to_string())?;
                let flat = d.flatten().map_err(|e| e.to_string())?;
                check_groups(&flat, DIFF_GROUP, BASE)?;
                let back = old.diff(state).map_err(|e| e.to_string())?;
                let flat = back.flatten().map_err(|e| e.to_string())?;
                check_groups(&flat, DIFF_GROUP, BASE)?;
            }
        }
        6 => {
            let merged = State::merge(&[state, state]).map_err(|e| e.to_string())?;
            check_groups(&merged.flatten().map_err(|e| e.to_string())?, GROUP, BASE)?;
            let text = state.to_string_tree().map_err(|e| e.to_string())?;
            if !text.contains("'base'") {
                return Err("the listing lost the base".into());
            }
        }
        7 => {
            if rng.below(8) == 0 {
                let copy = state.deep_copy().map_err(|e| e.to_string())?;
                check_groups(&copy.flatten().map_err(|e| e.to_string())?, GROUP, BASE)?;
            }
        }
        _ => {
            // Values swapped by other threads are always whole arrays.
            for param in &shared.params {
                let value = param.array().ok_or("a shared param lost its value")?;
                if value.shape() != [4] || value.nbytes() != 16 {
                    return Err("a torn value".into());
                }
            }
        }
    }
    shared.checks.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// A thread's own groups: only it changes them.
#[derive(Default)]
struct Mine {
    groups: Vec<Key>,
    /// The groups that hold the extra pair now.
    extras: BTreeSet<Key>,
    next: usize,
}

/// Mutates by whole groups: a step of any thread, on its own groups.
fn mutate_step(
    shared: &Shared,
    thread: usize,
    rng: &mut Rng,
    made: &mut Made,
    mine: &mut Mine,
) -> Result<(), String> {
    let state = &shared.state;
    let Mine {
        groups: mine,
        extras,
        next,
    } = mine;
    let mut fresh_key = || {
        *next += 1;
        group_key(thread, *next)
    };
    match rng.below(9) {
        0 | 1 if mine.len() < MAX_GROUPS => {
            let key = fresh_key();
            let group = new_group(shared, made, rng);
            state.set_state(&[key], &group).map_err(|e| e.to_string())?;
            mine.push(key);
        }
        2 if mine.len() + 2 <= MAX_GROUPS => {
            // Two groups at once, through update.
            let src = State::new();
            let (k1, k2) = (fresh_key(), fresh_key());
            src.set_state(&[k1], &new_group(shared, made, rng))
                .map_err(|e| e.to_string())?;
            src.set_state(&[k2], &new_group(shared, made, rng))
                .map_err(|e| e.to_string())?;
            state.update(&src).map_err(|e| e.to_string())?;
            mine.extend([k1, k2]);
        }
        0..=3 if !mine.is_empty() => {
            let key = mine.swap_remove(rng.below(mine.len()));
            extras.remove(&key);
            state
                .remove(&[key])
                .map_err(|e| format!("remove {key}: {e}"))?;
        }
        4 if !mine.is_empty() => {
            let key = mine[rng.below(mine.len())];
            let mut p = vec![key];
            p.extend(path("w"));
            state
                .set_variable(&p, made.variable(TypeId::PARAM))
                .map_err(|e| e.to_string())?;
        }
        5 if !mine.is_empty() => {
            // Through a view: a leaf, then two leaves at once by update.
            let key = mine[rng.below(mine.len())];
            let view = state.view(&[key]).map_err(|e| e.to_string())?;
            view.set_variable(&path("b"), made.variable(TypeId::BATCH_STAT))
                .map_err(|e| e.to_string())?;
            let src = State::new();
            src.set_variable(&path("w"), made.variable(TypeId::PARAM))
                .map_err(|e| e.to_string())?;
            src.set_array(&path("inner/1"), made.array())
                .map_err(|e| e.to_string())?;
            view.update(&src).map_err(|e| e.to_string())?;
        }
        6 => {
            let param = &shared.params[rng.below(shared.params.len())];
            param.set_value(Some(made.array()));
        }
        7 if !mine.is_empty() => {
            // The extra pair of leaves: in by one update, out by one remove,
            // through a view or from the top.
            let key = mine[rng.below(mine.len())];
            let through_view = rng.below(2) == 0;
            let view = state.view(&[key]).map_err(|e| e.to_string())?;
            if extras.remove(&key) {
                if through_view {
                    view.remove(&path("extra"))
                } else {
                    state.remove(&[key, Key::str("extra")])
                }
                .map_err(|e| format!("removing the extras of {key}: {e}"))?;
            } else {
                let src = State::new();
                src.set_array(&path("extra/0"), made.array())
                    .map_err(|e| e.to_string())?;
                src.set_array(&path("extra/1"), made.array())
                    .map_err(|e| e.to_string())?;
                if through_view {
                    view.update(&src)
                } else {
                    let top = State::new();
                    top.set_state(&[key], &src).map_err(|e| e.to_string())?;
                    state.update(&top)
                }
                .map_err(|e| e.to_string())?;
                extras.insert(key);
            }
        }
        _ => {
            // Type registration from every thread at once: one id per name.
            let name = format!("StressType{}", rng.below(16));
            let id = types::register(&name, TypeId::CACHE).map_err(|e| e.to_string())?;
            let mut registered = shared.registered.lock().unwrap();
            let first = *registered.entry(name.clone()).or_insert(id);
            if first != id {
                return Err(format!("{name} registered as {first:?} and {id:?}"));
            }
            drop(registered);
            let parts = state
                .filter(&[Filter::of_type(id)])
                .map_err(|e| e.to_string())?;
            if parts[0].num_leaves().map_err(|e| e.to_string())? != 0 {
                return Err(format!("{name} matched leaves it has none of"));
            }
        }
    }
    shared.steps.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

#[test]
fn rust_api_under_eight_threads() {
    let mut base_made = Made::default();
    let custom = types::register("StressCustom", TypeId::CACHE).unwrap();
    let params: Vec<Arc<Variable>> = (0..4).map(|_| base_made.variable(TypeId::PARAM)).collect();
    let state = State::new();
    state
        .set_variable(&path("base/x"), params[0].clone())
        .unwrap();
    state.set_array(&path("base/y"), base_made.array()).unwrap();
    let shared = Arc::new(Shared {
        state,
        params,
        custom,
        registered: Mutex::new(HashMap::new()),
        steps: AtomicUsize::new(0),
        checks: AtomicUsize::new(0),
    });
    let barrier = Arc::new(Barrier::new(THREADS));
    let workers: Vec<_> = (0..THREADS)
        .map(|thread| {
            let shared = shared.clone();
            let barrier = barrier.clone();
            thread::spawn(move || {
                let mut rng = Rng::new(thread as u64 + 1);
                let mut made = Made::default();
                let mut mine = Mine::default();
                let mut older = None;
                barrier.wait();
                let start = Instant::now();
                let mut step = 0;
                while step < MAX_STEPS && start.elapsed() < RUN_FOR {
                    let result = if rng.below(2) == 0 {
                        mutate_step(&shared, thread, &mut rng, &mut made, &mut mine)
                    } else {
                        check_step(&shared, &mut rng, &mut older)
                    };
                    if let Err(e) = result {
                        panic!("thread {thread}, step {step}: {e}");
                    }
                    step += 1;
                }
                made
            })
        })
        .collect();
    let mut all = vec![base_made];
    for worker in workers {
        all.push(worker.join().expect("a worker failed"));
    }
    let shared = Arc::into_inner(shared).expect("the workers are gone");
    let flat = shared.state.flatten().unwrap();
    let groups = check_groups(&flat, GROUP, BASE).unwrap();
    println!(
        "rust api: {} mutations and {} checks by {THREADS} threads; {} groups at the end",
        shared.steps.load(Ordering::Relaxed),
        shared.checks.load(Ordering::Relaxed),
        groups.len()
    );
    assert!(shared.steps.load(Ordering::Relaxed) > THREADS * 10);
    drop(flat);
    drop(shared);

    // Everything made is gone, each array released exactly once.
    let (mut arrays, mut variables) = (0, 0);
    for made in &all {
        for (i, released) in made.arrays.iter().enumerate() {
            assert_eq!(
                released.load(Ordering::SeqCst),
                1,
                "array {i} released a wrong number of times"
            );
        }
        for var in &made.variables {
            assert_eq!(var.strong_count(), 0, "a variable outlived every state");
        }
        arrays += made.arrays.len();
        variables += made.variables.len();
    }
    println!("rust api: {arrays} arrays and {variables} variables, all released once");
}

// ---------------------------------------------------------------------------
// The same through the C API

mod c {
    pub use ::nnx_state::ffi::array::*;
    pub use ::nnx_state::ffi::error::*;
    pub use ::nnx_state::ffi::filter::*;
    pub use ::nnx_state::ffi::flat::*;
    pub use ::nnx_state::ffi::key::*;
    pub use ::nnx_state::ffi::state::*;
    pub use ::nnx_state::ffi::types::*;
    pub use ::nnx_state::ffi::variable::*;
}

use c::nnx_status;

fn ok(status: nnx_status, what: &str) -> Result<(), String> {
    if status == nnx_status::NNX_OK {
        Ok(())
    } else {
        Err(format!("{what}: {status:?}: {}", last_error()))
    }
}

fn last_error() -> String {
    // SAFETY: the library's message, NUL-terminated, valid until the next
    // failing call on this thread.
    unsafe { std::ffi::CStr::from_ptr(c::nnx_last_error_message()) }
        .to_string_lossy()
        .into_owned()
}

/// A path in C form, owning the texts its keys point to.
struct CPath {
    _texts: Vec<String>,
    keys: Vec<c::nnx_key>,
}

impl CPath {
    fn new(path: &[Key]) -> CPath {
        let texts: Vec<String> = path
            .iter()
            .map(|k| k.as_str().unwrap_or("").to_owned())
            .collect();
        let keys = path
            .iter()
            .zip(&texts)
            .map(|(k, text)| match k {
                Key::Int(v) => c::nnx_key {
                    kind: c::NNX_KEY_INT,
                    str: std::ptr::null(),
                    str_len: 0,
                    int_value: *v,
                },
                Key::Str(_) => c::nnx_key {
                    kind: c::NNX_KEY_STR,
                    str: text.as_ptr().cast(),
                    str_len: text.len(),
                    int_value: 0,
                },
            })
            .collect();
        CPath {
            _texts: texts,
            keys,
        }
    }

    fn ptr(&self) -> *const c::nnx_key {
        self.keys.as_ptr()
    }

    fn len(&self) -> usize {
        self.keys.len()
    }
}

/// A C key back in Rust form.
fn key_from_c(key: &c::nnx_key) -> Key {
    if key.kind == c::NNX_KEY_INT {
        Key::int(key.int_value)
    } else {
        // SAFETY: the library lends `str_len` bytes of UTF-8.
        let bytes = unsafe { std::slice::from_raw_parts(key.str.cast::<u8>(), key.str_len) };
        Key::str(std::str::from_utf8(bytes).expect("UTF-8 keys"))
    }
}

/// A flat list read through the C API: (path, leaf identity).
type CFlat = Vec<(Vec<Key>, usize)>;

/// A state's flat list through the C API, in the library's order.
fn c_flat(state: *const c::nnx_state) -> Result<CFlat, String> {
    let mut flat = std::ptr::null_mut();
    ok(c::nnx_state_flatten(state, &mut flat), "flatten")?;
    let mut len = 0;
    ok(c::nnx_flat_len(flat, &mut len), "flat_len")?;
    let mut out = Vec::with_capacity(len);
    for i in 0..len {
        let (mut keys, mut n, mut kind) = (std::ptr::null(), 0, 0);
        ok(c::nnx_flat_path(flat, i, &mut keys, &mut n), "flat_path")?;
        ok(c::nnx_flat_kind(flat, i, &mut kind), "flat_kind")?;
        // SAFETY: `n` keys lent by the list until it is freed.
        let p: Vec<Key> = unsafe { std::slice::from_raw_parts(keys, n) }
            .iter()
            .map(key_from_c)
            .collect();
        let id = if kind == c::NNX_KIND_VARIABLE {
            let mut v = std::ptr::null_mut();
            ok(c::nnx_flat_variable(flat, i, &mut v), "flat_variable")?;
            v as usize
        } else {
            let mut a = std::ptr::null_mut();
            ok(c::nnx_flat_array(flat, i, &mut a), "flat_array")?;
            a as usize
        };
        out.push((p, id));
    }
    c::nnx_flat_free(flat);
    Ok(out)
}

/// `check_groups` for (path, identity) lists.
fn c_check_groups(
    flat: &[(Vec<Key>, usize)],
    group: Allowed,
    base: Allowed,
) -> Result<BTreeSet<Key>, String> {
    // Reuse the Rust check on placeholder leaves: only paths matter there.
    let placeholder = Leaf::Array(Arc::new(Array::new(DType::U8, &[0], None).unwrap()));
    let as_leaves: Vec<(Vec<Key>, Leaf)> = flat
        .iter()
        .map(|(p, _)| (p.clone(), placeholder.clone()))
        .collect();
    check_groups(&as_leaves, group, base)
}

fn sorted(mut flat: CFlat) -> CFlat {
    flat.sort();
    flat
}

/// Release counters for arrays lent through `nnx_array_wrap` and callback
/// filters' data.
#[derive(Default)]
struct CMade {
    released: Vec<Arc<AtomicU32>>,
}

unsafe extern "C" fn count_release(user_data: *mut c_void) {
    // SAFETY: `user_data` is a counter the test keeps alive until the end.
    unsafe { &*(user_data as *const AtomicU32) }.fetch_add(1, Ordering::SeqCst);
}

unsafe extern "C" fn last_key_is_b(
    _user_data: *mut c_void,
    path: *const c::nnx_key,
    len: usize,
    _kind: c::nnx_kind,
    _variable: *const c::nnx_variable,
    _array: *const c::nnx_array,
) -> c_int {
    // SAFETY: `len` keys lent for the call.
    let keys = unsafe { std::slice::from_raw_parts(path, len) };
    let last = keys.last().map(key_from_c);
    c_int::from(last.and_then(|k| k.as_str().map(|s| s == "b")) == Some(true))
}

impl CMade {
    fn counter(&mut self) -> *mut c_void {
        let counter = Arc::new(AtomicU32::new(0));
        let ptr = Arc::as_ptr(&counter).cast_mut().cast();
        self.released.push(counter);
        ptr
    }

    /// An owned array handle over `DATA`, counted.
    fn array(&mut self) -> Result<*mut c::nnx_array, String> {
        self.wrap(c::NNX_DTYPE_F32, &[4])
    }

    /// An owned array handle over `DATA` seen as `dtype` of `shape`,
    /// counted.
    fn wrap(&mut self, dtype: c::nnx_dtype, shape: &[i64]) -> Result<*mut c::nnx_array, String> {
        let mut array = std::ptr::null_mut();
        let user_data = self.counter();
        ok(
            c::nnx_array_wrap(
                dtype,
                shape.as_ptr(),
                shape.len(),
                DATA.as_ptr().cast_mut().cast(),
                DATA.len(),
                false,
                Some(count_release),
                user_data,
                &mut array,
            ),
            "array_wrap",
        )?;
        Ok(array)
    }

    /// An owned variable handle whose value is a counted array, so a lost
    /// variable shows as an array never released.
    fn variable(&mut self, type_id: c::nnx_type_id) -> Result<*mut c::nnx_variable, String> {
        let array = self.array()?;
        let mut var = std::ptr::null_mut();
        let status = c::nnx_variable_new(type_id, array, &mut var);
        c::nnx_array_release(array);
        ok(status, "variable_new")?;
        Ok(var)
    }

    fn callback_filter(&mut self) -> Result<*mut c::nnx_filter, String> {
        let mut filter = std::ptr::null_mut();
        let user_data = self.counter();
        ok(
            c::nnx_filter_callback(
                Some(last_key_is_b),
                user_data,
                Some(count_release),
                &mut filter,
            ),
            "filter_callback",
        )?;
        Ok(filter)
    }
}

struct CShared {
    state: usize,
    params: Vec<usize>,
    custom: c::nnx_type_id,
    registered: Mutex<HashMap<String, c::nnx_type_id>>,
    steps: AtomicUsize,
    checks: AtomicUsize,
}

impl CShared {
    fn state(&self) -> *mut c::nnx_state {
        self.state as *mut c::nnx_state
    }
}

fn c_set_var(state: *mut c::nnx_state, p: &[Key], var: *mut c::nnx_variable) -> Result<(), String> {
    let cp = CPath::new(p);
    let status = c::nnx_state_set_variable(state, cp.ptr(), cp.len(), var);
    c::nnx_variable_release(var);
    ok(status, "set_variable")
}

fn c_new_group(
    shared: &CShared,
    made: &mut CMade,
    rng: &mut Rng,
) -> Result<*mut c::nnx_state, String> {
    let mut group = std::ptr::null_mut();
    ok(c::nnx_state_new(&mut group), "state_new")?;
    c_set_var(group, &path("w"), made.variable(c::NNX_TYPE_PARAM)?)?;
    c_set_var(group, &path("b"), made.variable(c::NNX_TYPE_BATCH_STAT)?)?;
    let param = shared.params[rng.below(shared.params.len())] as *mut c::nnx_variable;
    ok(c::nnx_variable_retain(param), "retain")?;
    c_set_var(group, &path("inner/0"), param)?;
    let array = made.array()?;
    let status = c::nnx_state_set_array_str(group, c"inner/1".as_ptr(), array);
    c::nnx_array_release(array);
    ok(status, "set_array_str")?;
    c_set_var(group, &path("c"), made.variable(shared.custom)?)?;
    Ok(group)
}

fn c_mutate_step(
    shared: &CShared,
    thread: usize,
    rng: &mut Rng,
    made: &mut CMade,
    mine: &mut Mine,
) -> Result<(), String> {
    let state = shared.state();
    let Mine {
        groups: mine,
        extras,
        next,
    } = mine;
    let mut fresh_key = || {
        *next += 1;
        group_key(thread, *next)
    };
    match rng.below(8) {
        0 | 1 if mine.len() < MAX_GROUPS => {
            let key = fresh_key();
            let group = c_new_group(shared, made, rng)?;
            let cp = CPath::new(&[key]);
            let status = c::nnx_state_set_state(state, cp.ptr(), cp.len(), group);
            c::nnx_state_free(group);
            ok(status, "set_state")?;
            mine.push(key);
        }
        2 if mine.len() + 2 <= MAX_GROUPS => {
            let mut src = std::ptr::null_mut();
            ok(c::nnx_state_new(&mut src), "state_new")?;
            let (k1, k2) = (fresh_key(), fresh_key());
            for key in [k1, k2] {
                let group = c_new_group(shared, made, rng)?;
                let cp = CPath::new(&[key]);
                let status = c::nnx_state_set_state(src, cp.ptr(), cp.len(), group);
                c::nnx_state_free(group);
                ok(status, "set_state")?;
            }
            let status = c::nnx_state_update(state, src);
            c::nnx_state_free(src);
            ok(status, "update")?;
            mine.extend([k1, k2]);
        }
        0..=3 if !mine.is_empty() => {
            let key = mine.swap_remove(rng.below(mine.len()));
            extras.remove(&key);
            let cp = CPath::new(&[key]);
            ok(c::nnx_state_remove(state, cp.ptr(), cp.len()), "remove")?;
        }
        4 if !mine.is_empty() => {
            // Through a view.
            let key = mine[rng.below(mine.len())];
            let cp = CPath::new(&[key]);
            let mut view = std::ptr::null_mut();
            ok(
                c::nnx_state_get_state(state, cp.ptr(), cp.len(), &mut view),
                "get_state",
            )?;
            let result = made
                .variable(c::NNX_TYPE_PARAM)
                .and_then(|var| c_set_var(view, &path("w"), var));
            c::nnx_state_free(view);
            result?;
        }
        5 => {
            let param = shared.params[rng.below(shared.params.len())] as *mut c::nnx_variable;
            let array = made.array()?;
            let status = c::nnx_variable_set_value(param, array);
            c::nnx_array_release(array);
            ok(status, "set_value")?;
        }
        6 if !mine.is_empty() => {
            // The extra pair, through a view: in by one update, out by one
            // remove.
            let key = mine[rng.below(mine.len())];
            let cp = CPath::new(&[key]);
            let mut view = std::ptr::null_mut();
            ok(
                c::nnx_state_get_state(state, cp.ptr(), cp.len(), &mut view),
                "get_state",
            )?;
            let result = if extras.remove(&key) {
                ok(
                    c::nnx_state_remove_str(view, c"extra".as_ptr()),
                    "remove extras",
                )
            } else {
                (|| {
                    let mut src = std::ptr::null_mut();
                    ok(c::nnx_state_new(&mut src), "state_new")?;
                    let (a, b) = (made.array()?, made.array()?);
                    let s1 = c::nnx_state_set_array_str(src, c"extra/0".as_ptr(), a);
                    let s2 = c::nnx_state_set_array_str(src, c"extra/1".as_ptr(), b);
                    c::nnx_array_release(a);
                    c::nnx_array_release(b);
                    let s3 = c::nnx_state_update(view, src);
                    c::nnx_state_free(src);
                    ok(s1, "set extra/0")?;
                    ok(s2, "set extra/1")?;
                    ok(s3, "update with extras")
                })()
                .map(|()| {
                    extras.insert(key);
                })
            };
            c::nnx_state_free(view);
            result?;
        }
        _ => {
            let name = format!("StressCType{}\0", rng.below(16));
            let mut id = c::NNX_TYPE_NONE;
            ok(
                c::nnx_type_register(name.as_ptr().cast(), c::NNX_TYPE_CACHE, &mut id),
                "type_register",
            )?;
            let mut registered = shared.registered.lock().unwrap();
            let first = *registered.entry(name.clone()).or_insert(id);
            if first != id {
                return Err(format!("{name} registered as {first} and {id}"));
            }
        }
    }
    shared.steps.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Runs a partition through the C API and returns the parts' flat lists.
fn c_partition(
    state: *const c::nnx_state,
    filters: &[*mut c::nnx_filter],
    split: bool,
) -> Result<Vec<CFlat>, String> {
    let mut parts = vec![std::ptr::null_mut(); filters.len()];
    let status = if split {
        c::nnx_state_split(state, filters.as_ptr(), filters.len(), parts.as_mut_ptr())
    } else {
        c::nnx_state_filter(state, filters.as_ptr(), filters.len(), parts.as_mut_ptr())
    };
    ok(status, "split/filter")?;
    let flats = parts.iter().map(|&p| c_flat(p)).collect();
    for part in parts {
        c::nnx_state_free(part);
    }
    flats
}

fn c_check_step(
    shared: &CShared,
    rng: &mut Rng,
    made: &mut CMade,
    split_filters: &[*mut c::nnx_filter],
) -> Result<(), String> {
    let state = shared.state();
    match rng.below(6) {
        0 => {
            // Snapshot, split, merge.
            let mut snapshot = std::ptr::null_mut();
            ok(c::nnx_state_clone(state, &mut snapshot), "clone")?;
            let result = (|| {
                let flat = c_flat(snapshot)?;
                let groups = c_check_groups(&flat, GROUP, BASE)?;
                let mut parts = vec![std::ptr::null_mut(); 3];
                ok(
                    c::nnx_state_split(snapshot, split_filters.as_ptr(), 3, parts.as_mut_ptr()),
                    "split",
                )?;
                let mut union = Vec::new();
                let mut failure = None;
                for (&part, (members, base)) in parts.iter().zip(PARTS) {
                    match c_flat(part).and_then(|f| {
                        let g = c_check_groups(&f, members, base)?;
                        Ok((f, g))
                    }) {
                        Ok((f, g)) if g == groups => union.extend(f),
                        Ok(_) => failure = Some("a part of a snapshot's split lost groups".into()),
                        Err(e) => failure = Some(e),
                    }
                }
                let mut merged = std::ptr::null_mut();
                let status = c::nnx_state_merge(parts.as_ptr(), 3, &mut merged);
                for part in parts {
                    c::nnx_state_free(part);
                }
                if let Some(e) = failure {
                    return Err(e);
                }
                ok(status, "merge")?;
                let merged_flat = c_flat(merged);
                c::nnx_state_free(merged);
                if sorted(union) != sorted(flat.clone()) {
                    return Err("the parts of a split are not a partition".into());
                }
                if sorted(merged_flat?) != sorted(flat) {
                    return Err("merging the parts does not give the snapshot".into());
                }
                Ok(())
            })();
            c::nnx_state_free(snapshot);
            result?;
        }
        1 => {
            let parts = c_partition(state, split_filters, true)?;
            let mut seen: Option<BTreeSet<Key>> = None;
            for (flat, (members, base)) in parts.iter().zip(PARTS) {
                let groups = c_check_groups(flat, members, base)?;
                if seen.as_ref().is_some_and(|first| *first != groups) {
                    return Err("the parts of one split disagree on the groups".into());
                }
                seen = Some(groups);
            }
        }
        2 => {
            c_check_groups(&c_flat(state)?, GROUP, BASE)?;
            let mut snapshot = std::ptr::null_mut();
            ok(c::nnx_state_clone(state, &mut snapshot), "clone")?;
            let mut leaves = 0;
            let status = c::nnx_state_num_leaves(snapshot, &mut leaves);
            let flat = c_flat(snapshot);
            c::nnx_state_free(snapshot);
            ok(status, "num_leaves")?;
            let flat = flat?;
            if leaves != flat.len() {
                return Err(format!("{leaves} leaves, {} flat entries", flat.len()));
            }
        }
        3 => {
            // Keys and views of groups that may go away meanwhile.
            let mut len = 0;
            ok(c::nnx_state_len(state, &mut len), "len")?;
            for index in 0..len.min(4) {
                let mut key = c::nnx_key {
                    kind: 99,
                    str: std::ptr::null(),
                    str_len: 0,
                    int_value: 0,
                };
                match c::nnx_state_key_at(state, index, &mut key) {
                    nnx_status::NNX_OK => {}
                    nnx_status::NNX_ERR_INDEX_OUT_OF_RANGE => break,
                    other => return Err(format!("key_at: {other:?}")),
                }
                let key = key_from_c(&key);
                let cp = CPath::new(&[key]);
                let mut view = std::ptr::null_mut();
                match c::nnx_state_get_state(state, cp.ptr(), cp.len(), &mut view) {
                    nnx_status::NNX_OK => {}
                    nnx_status::NNX_ERR_KEY_NOT_FOUND => continue,
                    other => return Err(format!("get_state: {other:?}")),
                }
                let flat = c_flat(view);
                c::nnx_state_free(view);
                match flat {
                    Ok(flat) => {
                        let members: Vec<String> =
                            flat.iter().map(|(p, _)| format_path(p)).collect();
                        let is_base = key.as_str() == Some("base");
                        check_members(key, &members, if is_base { BASE } else { GROUP })?;
                    }
                    Err(e) if e.contains("KEY_NOT_FOUND") => {}
                    Err(e) => return Err(e),
                }
            }
        }
        4 => {
            let callback = made.callback_filter()?;
            let mut inner = std::ptr::null_mut();
            let key = CPath::new(&[Key::str("inner")]);
            ok(
                c::nnx_filter_path_contains(key.ptr(), true, &mut inner),
                "path_contains",
            )?;
            let parts = c_partition(state, &[callback, inner], false);
            c::nnx_filter_free(callback);
            c::nnx_filter_free(inner);
            let parts = parts?;
            let b = c_check_groups(&parts[0], &[&["b"]], &[])?;
            let i = c_check_groups(&parts[1], &[&["inner/0", "inner/1"]], &[])?;
            if b != i {
                return Err("the parts of one filter disagree on the groups".into());
            }
        }
        _ => {
            let mut text = std::ptr::null_mut();
            ok(c::nnx_state_to_string(state, &mut text), "to_string")?;
            c::nnx_string_free(text);
            let mut copy = std::ptr::null_mut();
            ok(c::nnx_state_clone(state, &mut copy), "clone")?;
            let mut d = std::ptr::null_mut();
            let status = c::nnx_state_diff(state, copy, &mut d);
            c::nnx_state_free(copy);
            ok(status, "diff")?;
            // A diff of two reads of a changing state.
            let flat = c_flat(d);
            c::nnx_state_free(d);
            c_check_groups(&flat?, DIFF_GROUP, BASE)?;
        }
    }
    shared.checks.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

#[test]
fn c_api_under_eight_threads() {
    let mut base_made = CMade::default();
    let mut custom = c::NNX_TYPE_NONE;
    ok(
        c::nnx_type_register(c"StressCCustom".as_ptr(), c::NNX_TYPE_CACHE, &mut custom),
        "register",
    )
    .unwrap();
    let params: Vec<usize> = (0..4)
        .map(|_| base_made.variable(c::NNX_TYPE_PARAM).unwrap() as usize)
        .collect();
    let mut state = std::ptr::null_mut();
    ok(c::nnx_state_new(&mut state), "state_new").unwrap();
    ok(c::nnx_variable_retain(params[0] as *mut _), "retain").unwrap();
    c_set_var(state, &path("base/x"), params[0] as *mut _).unwrap();
    let array = base_made.array().unwrap();
    ok(
        c::nnx_state_set_array_str(state, c"base/y".as_ptr(), array),
        "set_array",
    )
    .unwrap();
    c::nnx_array_release(array);

    let shared = Arc::new(CShared {
        state: state as usize,
        params,
        custom,
        registered: Mutex::new(HashMap::new()),
        steps: AtomicUsize::new(0),
        checks: AtomicUsize::new(0),
    });
    let barrier = Arc::new(Barrier::new(THREADS));
    let workers: Vec<_> = (0..THREADS)
        .map(|thread| {
            let shared = shared.clone();
            let barrier = barrier.clone();
            thread::spawn(move || {
                let mut rng = Rng::new(100 + thread as u64);
                let mut made = CMade::default();
                let mut split_filters = vec![std::ptr::null_mut(); 3];
                ok(
                    c::nnx_filter_of_type(c::NNX_TYPE_PARAM, &mut split_filters[0]),
                    "of_type",
                )
                .unwrap();
                ok(
                    c::nnx_filter_of_type(c::NNX_TYPE_BATCH_STAT, &mut split_filters[1]),
                    "of_type",
                )
                .unwrap();
                ok(
                    c::nnx_filter_everything(&mut split_filters[2]),
                    "everything",
                )
                .unwrap();
                let mut mine = Mine::default();
                barrier.wait();
                let start = Instant::now();
                let mut step = 0;
                while step < MAX_STEPS && start.elapsed() < RUN_FOR {
                    let result = if rng.below(2) == 0 {
                        c_mutate_step(&shared, thread, &mut rng, &mut made, &mut mine)
                    } else {
                        c_check_step(&shared, &mut rng, &mut made, &split_filters)
                    };
                    if let Err(e) = result {
                        panic!("thread {thread}, step {step}: {e}");
                    }
                    step += 1;
                }
                for filter in split_filters {
                    c::nnx_filter_free(filter);
                }
                made
            })
        })
        .collect();
    let mut all = vec![base_made];
    for worker in workers {
        all.push(worker.join().expect("a worker failed"));
    }
    let shared = Arc::into_inner(shared).expect("the workers are gone");
    let groups = c_check_groups(&c_flat(shared.state()).unwrap(), GROUP, BASE).unwrap();
    println!(
        "c api: {} mutations and {} checks by {THREADS} threads; {} groups at the end",
        shared.steps.load(Ordering::Relaxed),
        shared.checks.load(Ordering::Relaxed),
        groups.len()
    );
    assert!(shared.steps.load(Ordering::Relaxed) > THREADS * 10);
    c::nnx_state_free(shared.state());
    for &param in &shared.params {
        c::nnx_variable_release(param as *mut c::nnx_variable);
    }

    // Every wrapped array and every callback filter's data handed back
    // exactly once.
    let count = each_released_once(&all);
    println!("c api: {count} release callbacks, each run exactly once");
}

/// Checks that every release callback the threads lent ran exactly once;
/// returns how many there were.
fn each_released_once(all: &[CMade]) -> usize {
    let mut count = 0;
    for made in all {
        for (i, released) in made.released.iter().enumerate() {
            assert_eq!(
                released.load(Ordering::SeqCst),
                1,
                "release callback {i} ran a wrong number of times"
            );
        }
        count += made.released.len();
    }
    count
}

// ---------------------------------------------------------------------------
// Opaque values and typed keys through the C API

impl CMade {
    /// An owned variable holding an opaque value whose release counts.
    fn opaque(&mut self) -> Result<*mut c::nnx_variable, String> {
        let mut var = std::ptr::null_mut();
        let user_data = self.counter();
        ok(
            c::nnx_variable_new_opaque(
                c::NNX_TYPE_PARAM,
                c"stress:object".as_ptr(),
                user_data,
                Some(count_release),
                user_data,
                &mut var,
            ),
            "variable_new_opaque",
        )?;
        Ok(var)
    }

    /// An owned `RngKey` variable holding a typed key whose data is a
    /// counted array (`DATA` as uint32[2, 2]).
    fn key(&mut self) -> Result<*mut c::nnx_variable, String> {
        let data = self.wrap(c::NNX_DTYPE_U32, &[2, 2])?;
        let mut var = std::ptr::null_mut();
        let status = c::nnx_variable_new_key(
            c::NNX_TYPE_RNG_KEY,
            data,
            c"threefry2x32".as_ptr(),
            &mut var,
        );
        c::nnx_array_release(data);
        ok(status, "variable_new_key")?;
        Ok(var)
    }
}

fn c_leaves(state: *const c::nnx_state) -> Result<usize, String> {
    let mut n = 0;
    ok(c::nnx_state_num_leaves(state, &mut n), "num_leaves")?;
    Ok(n)
}

/// One step of a thread that only derives states from the ones it holds
/// and drops them, and replaces variables' values with new opaque values:
/// every derived state shares the variables (and deep copies share the
/// opaque objects), so each release happens on whichever thread lets go
/// last.
fn c_value_step(
    held: &mut Vec<*mut c::nnx_state>,
    rng: &mut Rng,
    made: &mut CMade,
    filters: &[*mut c::nnx_filter; 2],
) -> Result<(), String> {
    // Prefer a state with leaves (diffs of related states are often empty).
    let mut from = held[rng.below(held.len())];
    for _ in 0..4 {
        if c_leaves(from)? > 0 {
            break;
        }
        from = held[rng.below(held.len())];
    }
    let n = c_leaves(from)?;
    let mut out = std::ptr::null_mut();
    match rng.below(8) {
        0 => ok(c::nnx_state_clone(from, &mut out), "clone")?,
        1 => ok(c::nnx_state_deep_copy(from, &mut out), "deep_copy")?,
        2 => {
            let mut parts = [std::ptr::null_mut(); 2];
            ok(
                c::nnx_state_split(from, filters.as_ptr().cast(), 2, parts.as_mut_ptr()),
                "split",
            )?;
            if c_leaves(parts[0])? + c_leaves(parts[1])? != n {
                return Err("the parts of a split lost leaves".into());
            }
            ok(
                c::nnx_state_merge(parts.as_ptr().cast(), 2, &mut out),
                "merge",
            )?;
            // Keep one part, drop the other.
            let keep = rng.below(2);
            held.push(parts[keep]);
            c::nnx_state_free(parts[1 - keep]);
        }
        3 => ok(
            c::nnx_state_filter(from, filters.as_ptr().cast(), 1, &mut out),
            "filter",
        )?,
        4 => {
            let other = held[rng.below(held.len())];
            ok(c::nnx_state_diff(from, other, &mut out), "diff")?;
        }
        5 => {
            let mut flat = std::ptr::null_mut();
            ok(c::nnx_state_flatten(from, &mut flat), "flatten")?;
            let status = c::nnx_state_from_flat(flat, &mut out);
            c::nnx_flat_free(flat);
            ok(status, "from_flat")?;
        }
        6 => {
            // Replace the value of a variable the state holds (borrowed
            // from a flat) with a new opaque value, or with a key.
            let mut flat = std::ptr::null_mut();
            ok(c::nnx_state_flatten(from, &mut flat), "flatten")?;
            if n > 0 {
                let mut var = std::ptr::null_mut();
                ok(
                    c::nnx_flat_variable(flat, rng.below(n), &mut var),
                    "flat_variable",
                )?;
                let user_data = made.counter();
                let status = c::nnx_variable_set_opaque(
                    var,
                    c"stress:object".as_ptr(),
                    user_data,
                    Some(count_release),
                    user_data,
                );
                if let Err(e) = ok(status, "set_opaque") {
                    c::nnx_flat_free(flat);
                    return Err(e);
                }
            }
            c::nnx_flat_free(flat);
            return Ok(());
        }
        _ => {
            if held.len() > 1 {
                let gone = held.swap_remove(rng.below(held.len()));
                c::nnx_state_free(gone);
            }
            return Ok(());
        }
    }
    held.push(out);
    while held.len() > 8 {
        let gone = held.swap_remove(rng.below(held.len()));
        c::nnx_state_free(gone);
    }
    Ok(())
}

#[test]
fn c_api_opaque_values_and_keys_are_released_once_across_threads() {
    const VARS: usize = 24;
    const STEPS: usize = 2000;
    let mut base_made = CMade::default();
    let mut base = std::ptr::null_mut();
    ok(c::nnx_state_new(&mut base), "state_new").unwrap();
    for i in 0..VARS {
        let var = match i % 3 {
            0 => base_made.opaque(),
            1 => base_made.key(),
            _ => base_made.variable(c::NNX_TYPE_BATCH_STAT),
        }
        .unwrap();
        c_set_var(base, &[Key::str("v"), Key::int(i as i64)], var).unwrap();
    }
    // Each thread starts from its own clone; the base goes at once.
    let starts: Vec<usize> = (0..THREADS)
        .map(|_| {
            let mut clone = std::ptr::null_mut();
            ok(c::nnx_state_clone(base, &mut clone), "clone").unwrap();
            clone as usize
        })
        .collect();
    c::nnx_state_free(base);
    let barrier = Arc::new(Barrier::new(THREADS));
    let workers: Vec<_> = starts
        .into_iter()
        .enumerate()
        .map(|(thread, start)| {
            let barrier = barrier.clone();
            thread::spawn(move || {
                let mut rng = Rng::new(7000 + thread as u64);
                let mut made = CMade::default();
                let mut filters = [std::ptr::null_mut(); 2];
                ok(
                    c::nnx_filter_of_type(c::NNX_TYPE_PARAM, &mut filters[0]),
                    "of_type",
                )
                .unwrap();
                ok(c::nnx_filter_everything(&mut filters[1]), "everything").unwrap();
                let mut held = vec![start as *mut c::nnx_state];
                barrier.wait();
                for step in 0..STEPS {
                    if let Err(e) = c_value_step(&mut held, &mut rng, &mut made, &filters) {
                        panic!("thread {thread}, step {step}: {e}");
                    }
                }
                // Let go in a random order.
                while !held.is_empty() {
                    let gone = held.swap_remove(rng.below(held.len()));
                    c::nnx_state_free(gone);
                }
                for filter in filters {
                    c::nnx_filter_free(filter);
                }
                made
            })
        })
        .collect();
    let mut all = vec![base_made];
    for worker in workers {
        all.push(worker.join().expect("a worker failed"));
    }
    let count = each_released_once(&all);
    println!("opaque values and keys: {count} release callbacks, each run exactly once");
}
