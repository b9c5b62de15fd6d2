//! Columnar states (a view of a shared table) answer exactly as trees do:
//! on random trees, every split, filter, merge and flatten of the columnar
//! form gives the tree's result (same keys in the same order at every
//! level, the very same leaves, the same errors, the same callbacks in the
//! same order), and a dropped part frees what only it held.

use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread;

use nnx_state::{
    Array, Child, Filter, Key, Leaf, MetaValue, Node, Result, State, TypeId, Variable,
};

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A subtype of `Param`, registered once for the whole test binary.
fn lora() -> TypeId {
    static LORA: OnceLock<TypeId> = OnceLock::new();
    *LORA.get_or_init(|| nnx_state::types::register("ColumnarLoRAParam", TypeId::PARAM).unwrap())
}

fn random_leaf(rng: &mut Rng) -> Leaf {
    let array = Arc::new(Array::from_slice(&[1], &[rng.below(100) as f32]).unwrap());
    let type_id = match rng.below(6) {
        0 => return Leaf::Array(array),
        1 => TypeId::BATCH_STAT,
        2 => TypeId::CACHE,
        3 => lora(),
        _ => TypeId::PARAM,
    };
    let var = Variable::new(type_id, Some(array)).unwrap();
    if rng.below(4) == 0 {
        var.set_metadata("tag", MetaValue::Str("frozen".into()))
            .unwrap();
    }
    Leaf::Variable(Arc::new(var))
}

const KEYS: &[&str] = &["kernel", "bias", "attn", "mlp", "scale", "mean", "b", "a"];

fn random_key(rng: &mut Rng) -> Key {
    match rng.below(3) {
        0 => Key::int(rng.below(12) as i64),
        _ => Key::str(KEYS[rng.below(KEYS.len() as u64) as usize]),
    }
}

/// A random tree: keys in random order, some nodes large, some leaves held
/// at two paths, and (when `empties`) some nested nodes without leaves.
fn random_node(rng: &mut Rng, depth: u32, empties: bool, pool: &mut Vec<Leaf>) -> Node {
    let mut node = Node::new();
    let width = match rng.below(8) {
        0 => 20 + rng.below(20), // past the small-node size
        _ => 1 + rng.below(5),
    };
    for _ in 0..width {
        let key = random_key(rng);
        let child = if depth < 4 && rng.below(3) == 0 {
            let nested = random_node(rng, depth + 1, empties, pool);
            if nested.num_leaves() == 0 && !empties {
                continue;
            }
            Child::Node(Arc::new(nested))
        } else if !pool.is_empty() && rng.below(10) == 0 {
            Child::Leaf(pool[rng.below(pool.len() as u64) as usize].clone())
        } else {
            let leaf = random_leaf(rng);
            pool.push(leaf.clone());
            Child::Leaf(leaf)
        };
        node.insert(key, child);
    }
    if empties && rng.below(5) == 0 {
        node.insert(Key::str("empty"), Child::Node(Arc::new(Node::new())));
    }
    node
}

/// Both forms of one random tree.
fn both(seed: u64, empties: bool) -> (State, State) {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let node = random_node(&mut rng, 0, empties, &mut Vec::new());
    (State::from_node(node.clone()), State::columnar(node))
}

/// Filter lists to try, with the paths each callback was asked about.
fn filter_lists(calls: &Arc<Mutex<Vec<String>>>) -> Vec<Vec<Filter>> {
    let log = calls.clone();
    let callback = Filter::callback(move |path, leaf| {
        log.lock().unwrap().push(format!("{path:?}"));
        Ok(matches!(leaf, Leaf::Array(_)) || path.len() > 2)
    });
    let failing = Filter::callback(|path, _| match path.last() {
        Some(Key::Int(7)) => Err("seven".into()),
        _ => Ok(false),
    });
    let param = || Filter::of_type(TypeId::PARAM);
    vec![
        vec![param(), Filter::Everything],
        vec![param(), Filter::of_type(TypeId::BATCH_STAT)],
        vec![
            param(),
            Filter::of_type(TypeId::BATCH_STAT),
            Filter::of_type(TypeId::CACHE),
        ],
        vec![Filter::of_type(lora()), param(), Filter::Everything],
        vec![Filter::path_contains("attn", true), Filter::Everything],
        vec![Filter::path_contains("a", false), param()],
        vec![Filter::with_tag("frozen"), Filter::Everything],
        vec![
            Filter::any(vec![Filter::path_contains(3, true), callback.clone()]).unwrap(),
            param(),
        ],
        vec![
            Filter::all(vec![
                param(),
                Filter::negate(Filter::path_contains("bias", true)).unwrap(),
            ])
            .unwrap(),
            callback,
        ],
        vec![Filter::path_in(vec![
            vec![Key::str("a")],
            vec![Key::str("b"), Key::int(1)],
        ])],
        vec![failing, Filter::Everything],
        vec![Filter::Nothing],
        vec![Filter::Everything],
    ]
}

fn same(a: &State, b: &State) -> bool {
    a.node().unwrap().same_as(&b.node().unwrap())
}

fn same_outcome(tree: Result<Vec<State>>, rows: Result<Vec<State>>, what: &str) {
    match (tree, rows) {
        (Ok(t), Ok(r)) => {
            assert_eq!(t.len(), r.len(), "{what}");
            for (i, (t, r)) in t.iter().zip(&r).enumerate() {
                assert_eq!(
                    t.flatten().unwrap().len(),
                    r.num_leaves().unwrap(),
                    "{what} #{i}"
                );
                assert!(same(t, r), "{what}: output {i} differs");
            }
        }
        (Err(t), Err(r)) => {
            assert_eq!(t.kind(), r.kind(), "{what}");
            assert_eq!(t.message(), r.message(), "{what}");
        }
        (t, r) => panic!(
            "{what}: tree {:?}, columnar {:?}",
            t.map(|_| ()),
            r.map(|_| ())
        ),
    }
}

/// (path, leaf) of every leaf in the tree's own order.
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

fn flat_same(a: &State, b: &State) -> bool {
    let (x, y) = (a.flatten().unwrap(), b.flatten().unwrap());
    x.len() == y.len() && x.iter().zip(&y).all(|(p, q)| p.0 == q.0 && p.1.same(&q.1))
}

#[test]
fn the_columnar_form_is_the_same_tree() {
    for seed in 0..300 {
        let (tree, rows) = both(seed, seed % 3 == 0);
        // Columnar unless a nested state without leaves has no row to be.
        let representable = flat_same(&tree, &State::from_flat(tree.flatten().unwrap()).unwrap())
            && same(
                &tree,
                &State::from_flat(in_order(&tree.node().unwrap())).unwrap(),
            );
        assert_eq!(rows.is_columnar(), representable, "seed {seed}");
        assert!(!tree.is_columnar());
        assert_eq!(tree.num_leaves().unwrap(), rows.num_leaves().unwrap());
        assert!(flat_same(&tree, &rows), "seed {seed}: flatten");
        assert!(
            rows.is_columnar() == representable,
            "flatten keeps the form"
        );
        assert!(same(&tree, &rows), "seed {seed}: the tree made from rows");
        assert!(!rows.is_columnar(), "a tree once read as one");
    }
}

#[test]
fn split_and_filter_answer_as_the_tree_does() {
    for seed in 0..300 {
        let (tree, rows) = both(seed, false);
        let tree_calls = Arc::new(Mutex::new(Vec::new()));
        let rows_calls = Arc::new(Mutex::new(Vec::new()));
        for (i, (t, r)) in filter_lists(&tree_calls)
            .iter()
            .zip(filter_lists(&rows_calls))
            .enumerate()
        {
            let what = format!("seed {seed}, filters #{i} {t:?}");
            same_outcome(tree.filter(t), rows.filter(&r), &format!("filter, {what}"));
            let before = (
                tree_calls.lock().unwrap().len(),
                rows_calls.lock().unwrap().len(),
            );
            let (ts, rs) = (tree.split(t), rows.split(&r));
            let ok = ts.is_ok();
            same_outcome(ts, rs, &format!("split, {what}"));
            if !ok {
                // A failed tree split asks the callbacks again to count what
                // matched nothing; the columnar one counts in its one pass.
                let mut t = tree_calls.lock().unwrap();
                let mut r = rows_calls.lock().unwrap();
                t.truncate(before.0);
                r.truncate(before.1);
            }
        }
        assert_eq!(
            *tree_calls.lock().unwrap(),
            *rows_calls.lock().unwrap(),
            "seed {seed}: the callbacks were asked about other leaves or in another order"
        );
    }
}

#[test]
fn merges_answer_as_the_tree_does() {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let lists = filter_lists(&calls);
    for seed in 0..300 {
        let (tree, rows) = both(seed, false);
        for filters in &lists[..7] {
            let (Ok(t), Ok(r)) = (tree.filter(filters), rows.filter(filters)) else {
                continue;
            };
            // Every order of the parts, the parts with the whole state, and
            // the outputs of two different filters (which overlap).
            let mut orders: Vec<Vec<usize>> = vec![(0..t.len()).collect()];
            orders.push((0..t.len()).rev().collect());
            orders.push((1..t.len()).chain([0]).collect());
            for order in orders {
                let tm = State::merge(&order.iter().map(|&i| &t[i]).collect::<Vec<_>>()).unwrap();
                let rm = State::merge(&order.iter().map(|&i| &r[i]).collect::<Vec<_>>()).unwrap();
                assert!(same(&tm, &rm), "seed {seed}, {filters:?}, order {order:?}");
            }
            let tm = State::merge(&[&t[0], &tree]).unwrap();
            let rm = State::merge(&[&r[0], &rows]).unwrap();
            assert!(
                same(&tm, &rm),
                "seed {seed}, {filters:?}: a part, then the whole"
            );
            let (t2, r2) = (
                tree.filter(&[Filter::path_contains("a", false)]).unwrap(),
                rows.filter(&[Filter::path_contains("a", false)]).unwrap(),
            );
            let tm = State::merge(&[&t2[0], &t[0], &State::new()]).unwrap();
            let rm = State::merge(&[&r2[0], &r[0], &State::new()]).unwrap();
            assert!(
                same(&tm, &rm),
                "seed {seed}, {filters:?}: overlapping parts"
            );
            // A merge result splits as the tree's does.
            let ts = tm.split(&lists[1]);
            let rs = rm.split(&lists[1]);
            same_outcome(ts, rs, &format!("seed {seed}: split of a merge"));
        }
    }
}

#[test]
fn a_columnar_state_changes_as_a_tree_does() {
    for seed in 0..50 {
        let (tree, rows) = both(seed, false);
        let parts = rows
            .split(&[Filter::of_type(TypeId::PARAM), Filter::Everything])
            .unwrap();
        let tree_parts = tree
            .split(&[Filter::of_type(TypeId::PARAM), Filter::Everything])
            .unwrap();
        let leaf = Leaf::Array(Arc::new(Array::from_slice(&[1], &[9.0f32]).unwrap()));
        for (t, r) in tree_parts.iter().zip(&parts) {
            let (vt, vr) = (t.version(), r.version());
            t.set(&[Key::str("added")], Child::Leaf(leaf.clone()))
                .unwrap();
            r.set(&[Key::str("added")], Child::Leaf(leaf.clone()))
                .unwrap();
            assert_eq!(r.version() - vr, t.version() - vt);
            assert!(same(t, r), "seed {seed}");
        }
        // The input is unchanged by changes to its parts.
        assert!(same(&tree, &rows), "seed {seed}");
    }
}

#[test]
fn a_dropped_part_frees_what_only_it_held() {
    let param = |v: f32| {
        let a = Array::from_slice(&[1], &[v]).unwrap();
        Arc::new(Variable::new(TypeId::PARAM, Some(Arc::new(a))).unwrap())
    };
    let stat = {
        let a = Array::from_slice(&[1], &[0.0f32]).unwrap();
        Arc::new(Variable::new(TypeId::BATCH_STAT, Some(Arc::new(a))).unwrap())
    };
    let (kernel, bias) = (param(1.0), param(2.0));
    let watch: Vec<Weak<Variable>> = [&kernel, &bias, &stat]
        .iter()
        .map(|v| Arc::downgrade(v))
        .collect();
    let mut node = Node::new();
    let mut linear = Node::new();
    linear.insert(Key::str("kernel"), Child::Leaf(Leaf::Variable(kernel)));
    linear.insert(Key::str("bias"), Child::Leaf(Leaf::Variable(bias)));
    node.insert(Key::str("linear"), Child::Node(Arc::new(linear)));
    node.insert(Key::str("mean"), Child::Leaf(Leaf::Variable(stat)));
    let state = State::columnar(node);
    let mut parts = state
        .split(&[Filter::of_type(TypeId::PARAM), Filter::Everything])
        .unwrap();
    let merged = State::merge(&[&parts[1], &parts[0]]).unwrap();
    drop(state);
    let alive = || {
        watch
            .iter()
            .map(|w| w.upgrade().is_some())
            .collect::<Vec<_>>()
    };
    assert_eq!(alive(), [true, true, true]);
    drop(merged);
    let stats = parts.pop().unwrap();
    drop(stats);
    assert_eq!(
        alive(),
        [true, true, false],
        "the batch stat only the dropped part held"
    );
    // A part turned into a tree holds its leaves itself.
    assert_eq!(parts[0].keys().unwrap(), [Key::str("linear")]);
    let params = parts.pop().unwrap();
    assert_eq!(alive(), [true, true, false]);
    drop(params);
    assert_eq!(alive(), [false, false, false]);
}

#[test]
fn columnar_states_under_threads() {
    let (tree, rows) = both(7, false);
    let filters = [Filter::of_type(TypeId::PARAM), Filter::Everything];
    let expected = tree.split(&filters).unwrap();
    let merged = State::merge(&[&expected[1], &expected[0]]).unwrap();
    thread::scope(|scope| {
        for i in 0..8 {
            let (rows, expected, merged, filters) = (&rows, &expected, &merged, &filters);
            scope.spawn(move || {
                for _ in 0..50 {
                    let parts = rows.split(filters).unwrap();
                    let m = State::merge(&[&parts[1], &parts[0]]).unwrap();
                    if i % 2 == 0 {
                        // Some threads turn their results into trees.
                        assert!(same(&m, merged));
                        assert!(same(&parts[0], &expected[0]));
                    } else {
                        assert_eq!(m.num_leaves().unwrap(), merged.num_leaves().unwrap());
                    }
                }
            });
        }
    });
    assert!(same(&tree, &rows));
}

#[test]
fn a_sorted_flat_state_builds_the_same_state() {
    for seed in 0..200 {
        let (tree, _) = both(seed, seed % 2 == 0);
        // Sorted, as to_flat_state gives, and in the tree's own order.
        for flat in [tree.flatten().unwrap(), in_order(&tree.node().unwrap())] {
            let expected = State::from_node(nnx_state::ops::from_flat(flat.clone()).unwrap());
            let built = State::from_flat(flat.clone()).unwrap();
            assert_eq!(built.is_columnar(), !flat.is_empty(), "seed {seed}");
            assert!(same(&built, &expected), "seed {seed}");
            let filters = [Filter::of_type(TypeId::PARAM), Filter::Everything];
            let (t, r) = (expected.split(&filters), built.split(&filters));
            same_outcome(t, r, &format!("seed {seed}: split of a flat state"));
            let parts = built.filter(&filters).unwrap();
            let tree_parts = expected.filter(&filters).unwrap();
            let rm = State::merge(&[&parts[1], &built, &parts[0]]).unwrap();
            let tm = State::merge(&[&tree_parts[1], &expected, &tree_parts[0]]).unwrap();
            assert!(same(&rm, &tm), "seed {seed}: merge with a flat state");
        }
    }
    // Paths out of order, repeated, or through a leaf keep a dictionary's
    // rules (the tree builds those).
    let leaf = |v: f32| Leaf::Array(Arc::new(Array::from_slice(&[1], &[v]).unwrap()));
    let path = |text: &str| nnx_state::parse_path(text).unwrap();
    for paths in [
        &["a", "a/x"][..],
        &["a/x", "a"],
        &["b", "a"],
        &["a", "a"],
        &["a/x", "b", "a/y"],
        &["a/0", "a/1", "a/x", "b"],
        &["a/x/0", "a/y", "a/x/1"],
        &["b/y", "b/x", "a"],
        &["a/x", "a/x/y"],
    ] {
        let flat: Vec<(Vec<Key>, Leaf)> = paths
            .iter()
            .enumerate()
            .map(|(i, p)| (path(p), leaf(i as f32)))
            .collect();
        let expected = State::from_node(nnx_state::ops::from_flat(flat.clone()).unwrap());
        let built = State::from_flat(flat).unwrap();
        assert!(same(&built, &expected), "{paths:?}");
    }
}

#[test]
fn repeated_calls_see_changed_tags_and_ask_callbacks_again() {
    let (tree, rows) = both(11, false);
    let flat = rows.flatten().unwrap();
    let filters = [Filter::with_tag("frozen"), Filter::Everything];
    let first = rows.split(&filters).unwrap();
    let again = rows.split(&filters).unwrap();
    assert!(same(&first[0], &again[0]) && same(&first[1], &again[1]));
    // Tag a variable that had no tag: a held result is not given again.
    let untagged = flat
        .iter()
        .find_map(|(_, leaf)| leaf.as_variable().filter(|v| !v.has_tag("frozen")))
        .expect("an untagged variable");
    untagged
        .set_metadata("tag", MetaValue::Str("frozen".into()))
        .unwrap();
    let after = rows.split(&filters).unwrap();
    let expected = tree.split(&filters).unwrap();
    assert!(same(&after[0], &expected[0]), "the new tag is seen");
    assert_eq!(
        after[0].num_leaves().unwrap(),
        first[0].num_leaves().unwrap() + 1
    );
    let asked = Arc::new(Mutex::new(0usize));
    let counter = asked.clone();
    let callback = Filter::callback(move |_, _| {
        *counter.lock().unwrap() += 1;
        Ok(true)
    });
    let held = rows.filter(std::slice::from_ref(&callback)).unwrap();
    let once = *asked.lock().unwrap();
    let _again = rows.filter(&[callback]).unwrap();
    assert_eq!(
        *asked.lock().unwrap(),
        2 * once,
        "a callback is asked on every call"
    );
    drop(held);
    // Repeated merges of held parts give the same as the tree's.
    let parts = rows
        .split(&[Filter::of_type(TypeId::PARAM), Filter::Everything])
        .unwrap();
    let m1 = State::merge(&[&parts[1], &parts[0]]).unwrap();
    let m2 = State::merge(&[&parts[1], &parts[0]]).unwrap();
    let tree_parts = tree
        .split(&[Filter::of_type(TypeId::PARAM), Filter::Everything])
        .unwrap();
    let tm = State::merge(&[&tree_parts[1], &tree_parts[0]]).unwrap();
    assert!(same(&m1, &tm) && same(&m2, &tm));
}
