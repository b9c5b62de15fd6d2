//! The Rust core through its public API: handles, live views, mutation,
//! sharing, and the operations' documented edge cases.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use nnx_state::{
    parse_path, Array, Buffer, DType, Device, Entry, ErrorKind, Filter, Key, Kind, Leaf, MetaValue,
    State, TypeId, Variable,
};

fn p(text: &str) -> Vec<Key> {
    parse_path(text).unwrap()
}

fn var(type_id: TypeId, values: &[f32]) -> Arc<Variable> {
    let array = Array::from_slice(&[values.len() as i64], values).unwrap();
    Arc::new(Variable::new(type_id, Some(Arc::new(array))).unwrap())
}

/// The state of `Model(BatchNorm(2), Linear(2, 3))`.
fn model() -> State {
    let s = State::new();
    s.set_variable(&p("batchnorm/bias"), var(TypeId::PARAM, &[0.0; 2]))
        .unwrap();
    s.set_variable(&p("batchnorm/mean"), var(TypeId::BATCH_STAT, &[0.0; 2]))
        .unwrap();
    s.set_variable(&p("batchnorm/scale"), var(TypeId::PARAM, &[1.0; 2]))
        .unwrap();
    s.set_variable(&p("batchnorm/var"), var(TypeId::BATCH_STAT, &[1.0; 2]))
        .unwrap();
    s.set_variable(&p("linear/bias"), var(TypeId::PARAM, &[0.0; 3]))
        .unwrap();
    s.set_variable(&p("linear/kernel"), var(TypeId::PARAM, &[0.5; 6]))
        .unwrap();
    s
}

fn paths(state: &State) -> Vec<String> {
    state
        .flatten()
        .unwrap()
        .iter()
        .map(|(path, _)| nnx_state::key::format_path(path))
        .collect()
}

#[test]
fn seed_examples_filter_split_merge() {
    let state = model();
    let params = &state.filter(&[Filter::of_type(TypeId::PARAM)]).unwrap()[0];
    assert_eq!(
        paths(params),
        [
            "batchnorm/bias",
            "batchnorm/scale",
            "linear/bias",
            "linear/kernel"
        ]
    );
    let parts = state
        .split(&[
            Filter::of_type(TypeId::PARAM),
            Filter::of_type(TypeId::BATCH_STAT),
        ])
        .unwrap();
    assert_eq!(paths(&parts[1]), ["batchnorm/mean", "batchnorm/var"]);

    // params['linear']['bias'][...] += 1: a new value on the shared variable.
    let bias = parts[0].get_variable(&p("linear/bias")).unwrap();
    bias.set_value(Some(Arc::new(
        Array::from_slice(&[3], &[1.0f32; 3]).unwrap(),
    )));
    let merged = State::merge(&[&parts[0], &parts[1]]).unwrap();
    let seen = merged
        .get_variable(&p("linear/bias"))
        .unwrap()
        .array()
        .unwrap();
    assert_eq!(seen.to_f64_vec().unwrap(), vec![1.0; 3]);
    // The original state holds the same variable, so it sees the change too.
    assert!(Arc::ptr_eq(
        &state.get_variable(&p("linear/bias")).unwrap(),
        &bias
    ));
}

#[test]
fn operations_share_leaves_and_never_copy_bytes() {
    let state = model();
    let before = state.flatten().unwrap();
    let parts = state
        .split(&[Filter::of_type(TypeId::PARAM), Filter::Everything])
        .unwrap();
    let merged = State::merge(&[&parts[0], &parts[1]]).unwrap();
    for (path, leaf) in &before {
        match merged.get(path).unwrap() {
            Entry::Leaf(l) => assert!(l.same(leaf)),
            Entry::State(_) => panic!("a leaf became a state"),
        }
    }
    let copy = state.copy().unwrap();
    assert!(copy.same_as(&state).unwrap());
}

#[test]
fn nested_access_is_a_live_view() {
    let state = model();
    let linear = state.view(&p("linear")).unwrap();
    linear
        .set_variable(&p("extra"), var(TypeId::CACHE, &[2.0]))
        .unwrap();
    assert_eq!(state.kind(&p("linear/extra")).unwrap(), Kind::Variable);
    state.remove(&p("linear/bias")).unwrap();
    assert_eq!(
        linear.keys().unwrap(),
        vec![Key::str("kernel"), Key::str("extra")]
    );
    // Once its subtree is gone, the view says so.
    state.remove(&p("linear")).unwrap();
    assert_eq!(linear.len().unwrap_err().kind(), ErrorKind::KeyNotFound);
    assert_eq!(
        linear
            .set_variable(&p("x"), var(TypeId::PARAM, &[1.0]))
            .unwrap_err()
            .kind(),
        ErrorKind::KeyNotFound
    );
}

#[test]
fn set_state_copies_structure_and_shares_leaves() {
    let state = State::new();
    let sub = model();
    state.set_state(&p("model"), &sub).unwrap();
    sub.remove(&p("linear")).unwrap();
    assert_eq!(state.num_leaves().unwrap(), 6);
    assert!(Arc::ptr_eq(
        &state.get_variable(&p("model/batchnorm/bias")).unwrap(),
        &sub.get_variable(&p("batchnorm/bias")).unwrap()
    ));
}

#[test]
fn path_errors_change_nothing() {
    let state = model();
    let before = state.to_string_tree().unwrap();
    let leaf_through = state.set_variable(&p("linear/bias/x"), var(TypeId::PARAM, &[1.0]));
    assert_eq!(leaf_through.unwrap_err().kind(), ErrorKind::PathThroughLeaf);
    assert_eq!(
        state.remove(&p("nope")).unwrap_err().kind(),
        ErrorKind::KeyNotFound
    );
    assert_eq!(
        state.remove(&[]).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        state.get_variable(&p("linear")).unwrap_err().kind(),
        ErrorKind::WrongKind
    );
    assert_eq!(
        state.get(&p("linear/bias/deeper")).unwrap_err().kind(),
        ErrorKind::PathThroughLeaf
    );
    assert_eq!(state.to_string_tree().unwrap(), before);
}

#[test]
fn split_remainder_and_filter_order_are_errors() {
    let state = model();
    let err = state.split(&[Filter::of_type(TypeId::PARAM)]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NonExhaustive);
    assert!(err.message().starts_with("Non-exhaustive filters"));
    assert!(
        err.message().contains("('batchnorm', 'mean')"),
        "{}",
        err.message()
    );
    let err = state
        .filter(&[Filter::Everything, Filter::of_type(TypeId::PARAM)])
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::FilterOrder);
    assert_eq!(
        state.filter(&[]).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
}

#[test]
fn merge_follows_flat_dict_order_and_later_wins() {
    let a = State::new();
    a.set_variable(&p("b"), var(TypeId::PARAM, &[1.0])).unwrap();
    a.set_variable(&p("a/y"), var(TypeId::PARAM, &[2.0]))
        .unwrap();
    let b = State::new();
    let winner = var(TypeId::BATCH_STAT, &[3.0]);
    b.set_variable(&p("c"), var(TypeId::PARAM, &[4.0])).unwrap();
    b.set_variable(&p("a/x"), var(TypeId::PARAM, &[5.0]))
        .unwrap();
    b.set_variable(&p("b"), winner.clone()).unwrap();
    let m = State::merge(&[&a, &b]).unwrap();
    assert_eq!(
        m.keys().unwrap(),
        vec![Key::str("b"), Key::str("a"), Key::str("c")]
    );
    assert_eq!(
        m.view(&p("a")).unwrap().keys().unwrap(),
        vec![Key::str("y"), Key::str("x")]
    );
    assert!(Arc::ptr_eq(&m.get_variable(&p("b")).unwrap(), &winner));
}

#[test]
fn merge_where_flax_fails_lets_the_later_entry_replace() {
    // A leaf, then a subtree through it: NNX raises; we replace the leaf.
    let a = State::new();
    a.set_variable(&p("k"), var(TypeId::PARAM, &[1.0])).unwrap();
    let b = State::new();
    let deep = var(TypeId::PARAM, &[2.0]);
    b.set_variable(&p("k/x"), deep.clone()).unwrap();
    let m = State::merge(&[&a, &b]).unwrap();
    assert!(Arc::ptr_eq(&m.get_variable(&p("k/x")).unwrap(), &deep));

    // {k/x}, {k}, {k/x}: NNX's flat dict is {k/x: third, k: second}, so k ends a leaf.
    let c = State::new();
    c.set_variable(&p("k/x"), var(TypeId::PARAM, &[3.0]))
        .unwrap();
    let leaf = var(TypeId::PARAM, &[4.0]);
    let d = State::new();
    d.set_variable(&p("k"), leaf.clone()).unwrap();
    let m = State::merge(&[&c, &d, &b]).unwrap();
    assert!(Arc::ptr_eq(&m.get_variable(&p("k")).unwrap(), &leaf));

    // {k}, {k/x}, {k}: the flat dict is {k: first, k/x: deep}; k/x runs
    // through the leaf k, which it replaces.
    let m = State::merge(&[&a, &b, &a]).unwrap();
    assert!(Arc::ptr_eq(&m.get_variable(&p("k/x")).unwrap(), &deep));
}

#[test]
fn merge_of_one_and_diff_with_empty_return_equal_copies() {
    let s = State::new();
    s.set_state(&p("empty"), &State::new()).unwrap();
    s.set_variable(&p("z"), var(TypeId::PARAM, &[1.0])).unwrap();
    let m = State::merge(&[&s]).unwrap();
    assert!(m.same_as(&s).unwrap());
    let d = s.diff(&State::new()).unwrap();
    assert!(d.same_as(&s).unwrap());
    // A copy, not the same handle: changing it leaves `s` alone.
    m.remove(&p("z")).unwrap();
    assert_eq!(s.num_leaves().unwrap(), 1);
}

#[test]
fn diff_keeps_leaves_whose_path_is_not_a_leaf_of_other() {
    let a = model();
    let b = State::new();
    b.set_variable(&p("linear/bias"), var(TypeId::PARAM, &[9.0]))
        .unwrap();
    b.set_variable(&p("batchnorm/mean/deeper"), var(TypeId::PARAM, &[9.0]))
        .unwrap();
    let d = a.diff(&b).unwrap();
    assert_eq!(
        paths(&d),
        [
            "batchnorm/bias",
            "batchnorm/mean",
            "batchnorm/scale",
            "batchnorm/var",
            "linear/kernel"
        ]
    );
}

#[test]
fn update_is_deep_and_replaces_leaves_in_the_way() {
    let dst = model();
    let src = State::new();
    let fresh = var(TypeId::PARAM, &[7.0; 3]);
    src.set_variable(&p("linear/bias"), fresh.clone()).unwrap();
    src.set_variable(&p("new/leaf"), var(TypeId::CACHE, &[1.0]))
        .unwrap();
    src.set_variable(&p("batchnorm/mean/x"), var(TypeId::CACHE, &[1.0]))
        .unwrap();
    dst.update(&src).unwrap();
    assert!(Arc::ptr_eq(
        &dst.get_variable(&p("linear/bias")).unwrap(),
        &fresh
    ));
    assert_eq!(dst.kind(&p("linear/kernel")).unwrap(), Kind::Variable);
    assert_eq!(dst.kind(&p("new/leaf")).unwrap(), Kind::Variable);
    assert_eq!(dst.kind(&p("batchnorm/mean")).unwrap(), Kind::State);
    // Updating from a view of itself is fine.
    let view = dst.view(&p("linear")).unwrap();
    dst.update(&view).unwrap();
    assert_eq!(dst.kind(&p("bias")).unwrap(), Kind::Variable);
}

#[test]
fn from_flat_later_pair_wins_at_first_position() {
    let first = var(TypeId::PARAM, &[1.0]);
    let later = var(TypeId::CACHE, &[2.0]);
    let other = var(TypeId::PARAM, &[3.0]);
    let s = State::from_flat(vec![
        (p("z"), Leaf::Variable(first)),
        (p("a"), Leaf::Variable(other)),
        (p("z"), Leaf::Variable(later.clone())),
    ])
    .unwrap();
    assert_eq!(s.keys().unwrap(), vec![Key::str("z"), Key::str("a")]);
    assert!(Arc::ptr_eq(&s.get_variable(&p("z")).unwrap(), &later));
    let empty = State::from_flat(vec![(vec![], Leaf::Variable(var(TypeId::PARAM, &[1.0])))]);
    assert_eq!(empty.unwrap_err().kind(), ErrorKind::InvalidArgument);
}

#[test]
fn flatten_sorts_ints_before_strings() {
    let s = State::new();
    for text in ["b", "10", "a/1", "2", "a/0"] {
        s.set_variable(&p(text), var(TypeId::PARAM, &[0.0]))
            .unwrap();
    }
    assert_eq!(paths(&s), ["2", "10", "a/0", "a/1", "b"]);
    // Insertion order is kept for iteration.
    assert_eq!(
        s.keys().unwrap(),
        vec![Key::str("b"), Key::int(10), Key::str("a"), Key::int(2)]
    );
}

#[test]
fn deep_copy_copies_bytes_and_keeps_aliasing() {
    let s = State::new();
    let shared = var(TypeId::PARAM, &[1.0, 2.0]);
    shared
        .set_metadata("tag", MetaValue::Str("t".into()))
        .unwrap();
    s.set_variable(&p("a"), shared.clone()).unwrap();
    s.set_variable(&p("b"), shared.clone()).unwrap();
    let copy = s.deep_copy().unwrap();
    let (a, b) = (
        copy.get_variable(&p("a")).unwrap(),
        copy.get_variable(&p("b")).unwrap(),
    );
    assert!(Arc::ptr_eq(&a, &b));
    assert!(!Arc::ptr_eq(&a, &shared));
    assert_eq!(a.tag().as_deref(), Some("t"));
    assert_eq!(a.array().unwrap().to_f64_vec().unwrap(), vec![1.0, 2.0]);
}

#[test]
fn listing_reads_like_nnx() {
    let s = State::new();
    let v = var(TypeId::PARAM, &[1.0, 1.0]);
    v.set_metadata("tag", MetaValue::Str("x".into())).unwrap();
    s.set_variable(&p("a/b"), v).unwrap();
    s.set_array(
        &p("c"),
        Arc::new(Array::from_slice(&[3], &[0.0f32; 3]).unwrap()),
    )
    .unwrap();
    s.set_variable(
        &p("0"),
        Arc::new(Variable::new(TypeId::CACHE, None).unwrap()),
    )
    .unwrap();
    let expected = "State({
  'a': {
    'b': Param( # 2 (8 B)
      value=float32[2] [1.0, 1.0],
      tag='x'
    )
  },
  'c': float32[3] [0.0, 0.0, 0.0],
  0: Cache(
    value=None
  )
})";
    assert_eq!(s.to_string_tree().unwrap(), expected);
    assert_eq!(State::new().to_string_tree().unwrap(), "State({})");
}

#[test]
fn readers_see_whole_mutations_from_other_threads() {
    let state = State::new();
    let writer = {
        let state = state.clone();
        thread::spawn(move || {
            for i in 0..200 {
                // Each update adds two leaves at once.
                let src = State::new();
                src.set_variable(&p(&format!("w/{i}/a")), var(TypeId::PARAM, &[0.0]))
                    .unwrap();
                src.set_variable(&p(&format!("w/{i}/b")), var(TypeId::CACHE, &[0.0]))
                    .unwrap();
                state.update(&src).unwrap();
            }
        })
    };
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let state = state.clone();
            thread::spawn(move || {
                for _ in 0..200 {
                    let n = state.num_leaves().unwrap();
                    assert_eq!(n % 2, 0, "saw half an update");
                    let parts = state
                        .split(&[Filter::of_type(TypeId::PARAM), Filter::Everything])
                        .unwrap();
                    assert_eq!(
                        parts[0].num_leaves().unwrap(),
                        parts[1].num_leaves().unwrap()
                    );
                }
            })
        })
        .collect();
    writer.join().unwrap();
    for r in readers {
        r.join().unwrap();
    }
    assert_eq!(state.num_leaves().unwrap(), 400);
    assert!(matches!(
        state.view(&p("w/0")).unwrap().get(&p("a")).unwrap(),
        Entry::Leaf(Leaf::Variable(_))
    ));
}

/// What every node says of its subtree (kinds, leaf count, sorted, no empty
/// subtrees) holds after edits of every kind, and split and filter, which
/// trust it, still agree with a walk of the leaves.
#[test]
fn node_summaries_hold_after_every_kind_of_edit() {
    let check = |what: &str, s: &State| {
        let node = s.node().unwrap();
        if let Err(e) = node.check_summary() {
            panic!("{what}: {e}\n{s:?}");
        }
    };
    let s = model();
    check("built", &s);
    let (param, stat) = (
        Filter::of_type(TypeId::PARAM),
        Filter::of_type(TypeId::BATCH_STAT),
    );
    type Edit = Box<dyn Fn(&State)>;
    let edits: Vec<(&str, Edit)> = vec![
        (
            "set a leaf in a new subtree",
            Box::new(|s: &State| {
                s.set_variable(&p("cache/k"), var(TypeId::CACHE, &[0.0]))
                    .unwrap()
            }),
        ),
        (
            "replace a leaf by one of another type",
            Box::new(|s: &State| {
                s.set_variable(&p("batchnorm/mean"), var(TypeId::PARAM, &[0.0]))
                    .unwrap()
            }),
        ),
        (
            "remove a leaf",
            Box::new(|s: &State| {
                s.remove(&p("linear/bias")).unwrap();
            }),
        ),
        (
            "empty a subtree",
            Box::new(|s: &State| {
                s.remove(&p("cache/k")).unwrap();
            }),
        ),
        (
            "set an empty state",
            Box::new(|s: &State| s.set_state(&p("empty"), &State::new()).unwrap()),
        ),
        (
            "set a state out of order",
            Box::new(|s: &State| {
                let other = State::new();
                other
                    .set_variable(&p("z"), var(TypeId::PARAM, &[0.0]))
                    .unwrap();
                other
                    .set_variable(&p("a"), var(TypeId::CACHE, &[0.0]))
                    .unwrap();
                s.set_state(&p("batchnorm/inner"), &other).unwrap()
            }),
        ),
        (
            "update through a view",
            Box::new(|s: &State| {
                let other = State::new();
                other
                    .set_variable(&p("x/y"), var(TypeId::BATCH_STAT, &[0.0]))
                    .unwrap();
                let Entry::State(view) = s.get(&p("batchnorm")).unwrap() else {
                    panic!("batchnorm is a nested state")
                };
                view.update(&other).unwrap();
            }),
        ),
    ];
    for (what, edit) in &edits {
        edit(&s);
        check(what, &s);
        // split and filter place subtrees by these summaries: each leaf goes
        // where its own type says.
        let parts = s.filter(&[param.clone(), stat.clone()]).unwrap();
        for (part, t) in parts.iter().zip([TypeId::PARAM, TypeId::BATCH_STAT]) {
            check(what, part);
            for (path, leaf) in part.flatten().unwrap() {
                let v = leaf.as_variable().unwrap();
                assert_eq!(v.type_id(), t, "{what}: {path:?}");
            }
        }
        let expected = s
            .flatten()
            .unwrap()
            .iter()
            .filter(|(_, l)| {
                matches!(
                    l.as_variable().map(|v| v.type_id()),
                    Some(TypeId::PARAM | TypeId::BATCH_STAT)
                )
            })
            .count();
        assert_eq!(
            parts[0].num_leaves().unwrap() + parts[1].num_leaves().unwrap(),
            expected,
            "{what}"
        );
        let merged = State::merge(&parts.iter().collect::<Vec<_>>()).unwrap();
        check(what, &merged);
        let flat = State::from_flat(s.flatten().unwrap()).unwrap();
        check(what, &flat);
    }
}

/// `nnx.state(nnx.Rngs(0, dropout=1))`-like keys beside a parameter held as
/// an opaque value (a jax array on a device, say), and the release count of
/// that value.
fn rngs_and_device_param() -> (State, Arc<std::sync::atomic::AtomicUsize>) {
    use nnx_state::{Opaque, PrngKey};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let s = State::new();
    for (name, seed) in [("default", 0u32), ("dropout", 1)] {
        let data = Arc::new(Array::from_slice(&[2], &[0u32, seed]).unwrap());
        let key = Variable::new(TypeId::RNG_KEY, PrngKey::new(data, "threefry2x32").unwrap());
        let key = Arc::new(key.unwrap());
        key.set_metadata("tag", MetaValue::Str(name.into()))
            .unwrap();
        s.set_variable(&[Key::str("rngs"), Key::str(name), Key::str("key")], key)
            .unwrap();
    }
    let released = Arc::new(AtomicUsize::new(0));
    let seen = released.clone();
    let release = Box::new(move || {
        seen.fetch_add(1, Ordering::SeqCst);
    });
    let opaque = Opaque::new("python:jax.Array", 0xbeef, Some(release)).unwrap();
    s.set_variable(
        &p("linear/kernel"),
        Arc::new(Variable::new(TypeId::PARAM, opaque).unwrap()),
    )
    .unwrap();
    (s, released)
}

#[test]
fn keys_and_opaque_values_go_through_every_operation_as_variables() {
    use nnx_state::Value;
    use std::sync::atomic::Ordering;
    let (s, released) = rngs_and_device_param();
    let kernel = s.get_variable(&p("linear/kernel")).unwrap();
    let key = s.get_variable(&p("rngs/dropout/key")).unwrap();
    // filter, split, merge, diff, flatten, from_flat and clone hold the very
    // same variables.
    let parts = s
        .split(&[Filter::of_type(TypeId::PARAM), Filter::Everything])
        .unwrap();
    assert!(Arc::ptr_eq(
        &parts[0].get_variable(&p("linear/kernel")).unwrap(),
        &kernel
    ));
    assert!(Arc::ptr_eq(
        &parts[1].get_variable(&p("rngs/dropout/key")).unwrap(),
        &key
    ));
    let dropout = s.filter(&[Filter::with_tag("dropout")]).unwrap().remove(0);
    assert_eq!(dropout.num_leaves().unwrap(), 1);
    let merged = State::merge(&[&parts[0], &parts[1]]).unwrap();
    assert!(Arc::ptr_eq(
        &merged.get_variable(&p("linear/kernel")).unwrap(),
        &kernel
    ));
    let keys_only = s.diff(&parts[0]).unwrap();
    assert_eq!(keys_only.num_leaves().unwrap(), 2);
    let again = State::from_flat(s.flatten().unwrap()).unwrap();
    assert!(Arc::ptr_eq(
        &again.get_variable(&p("rngs/dropout/key")).unwrap(),
        &key
    ));
    let text = s.to_string_tree().unwrap();
    assert!(text.contains("RngKey( # 1 (8 B)"), "{text}");
    assert!(
        text.contains("value=key<fry>[] overlaying uint32[2] [0, 1]"),
        "{text}"
    );
    assert!(text.contains("value=<opaque python:jax.Array>"), "{text}");

    // A deep copy: new variables, key data copied, the opaque object shared.
    let copy = s.deep_copy().unwrap();
    let copied_kernel = copy.get_variable(&p("linear/kernel")).unwrap();
    assert!(!Arc::ptr_eq(&copied_kernel, &kernel));
    match (copied_kernel.value(), kernel.value()) {
        (Value::Opaque(a), Value::Opaque(b)) => assert!(Arc::ptr_eq(&a, &b)),
        _ => panic!("not opaque"),
    }
    let copied_key = copy.get_variable(&p("rngs/dropout/key")).unwrap();
    match (copied_key.value(), key.value()) {
        (Value::Key(a), Value::Key(b)) => {
            assert!(!Arc::ptr_eq(a.data(), b.data()));
            assert_eq!(a.data().bytes(), b.data().bytes());
            assert_eq!(a.impl_name(), b.impl_name());
        }
        _ => panic!("not a key"),
    }
    assert_eq!(copied_key.tag().as_deref(), Some("dropout"));
    // Setting the original's value leaves the copy's alone; the object goes
    // when its last holder does.
    kernel.set_value(None);
    assert_eq!(released.load(Ordering::SeqCst), 0);
    assert!(matches!(copied_kernel.value(), Value::Opaque(_)));
    drop((copy, copied_kernel));
    assert_eq!(released.load(Ordering::SeqCst), 1);
}

/// An array over static bytes lent with a release that counts in `released`.
fn counted_array(released: &Arc<AtomicUsize>) -> Arc<Array> {
    static DATA: [f32; 4] = [1.0, 2.0, 3.0, 4.0];
    let counter = released.clone();
    let release = Box::new(move || {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    // SAFETY: `DATA` is static, and the buffer is read-only.
    let buffer = unsafe {
        Buffer::from_foreign(
            DATA.as_ptr().cast_mut().cast(),
            16,
            false,
            Device::CPU,
            Some(release),
        )
    };
    Arc::new(Array::from_buffer(DType::F32, &[4], buffer).unwrap())
}

/// The listing and the (path, leaf identity) list of a state.
fn snapshot(state: &State) -> (String, Vec<(Vec<Key>, usize)>) {
    let leaves = state.flatten().unwrap().into_iter().map(|(path, leaf)| {
        let id = match leaf {
            Leaf::Variable(v) => Arc::as_ptr(&v) as usize,
            Leaf::Array(a) => Arc::as_ptr(&a) as usize,
        };
        (path, id)
    });
    (state.to_string_tree().unwrap(), leaves.collect())
}

#[test]
fn a_split_failing_midway_loses_nothing() {
    let released = Arc::new(AtomicUsize::new(0));
    let state = State::new();
    let mut vars = Vec::new();
    for (path, type_id) in [
        ("layers/0/kernel", TypeId::PARAM),
        ("layers/0/bias", TypeId::PARAM),
        ("layers/1/kernel", TypeId::PARAM),
        ("bn/mean", TypeId::BATCH_STAT),
        ("bn/var", TypeId::BATCH_STAT),
    ] {
        let var = Arc::new(Variable::new(type_id, Some(counted_array(&released))).unwrap());
        state.set_variable(&p(path), var.clone()).unwrap();
        vars.push(var);
    }
    state
        .set_array(&p("embed"), counted_array(&released))
        .unwrap();
    let view = state.view(&p("layers")).unwrap();
    let before = snapshot(&state);
    let counts = || vars.iter().map(Arc::strong_count).collect::<Vec<_>>();
    let at_start = counts();
    // 6 leaves; the view has 3, about all of which the callback is asked
    // in both filter lists.
    for fail_after in [0, 1, 2] {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        let failing = Filter::callback(move |_, leaf| {
            if seen.fetch_add(1, Ordering::SeqCst) >= fail_after {
                return Err("told to fail".into());
            }
            Ok(matches!(leaf, Leaf::Variable(v) if v.type_id() == TypeId::PARAM))
        });
        let stats = Filter::of_type(TypeId::BATCH_STAT);
        for filters in [
            vec![failing.clone(), Filter::Everything],
            vec![stats, failing.clone(), Filter::Everything],
        ] {
            for split in [true, false] {
                calls.store(0, Ordering::SeqCst);
                let result = if split {
                    state.split(&filters)
                } else {
                    view.filter(&filters)
                };
                let err = result.expect_err("the callback fails");
                assert_eq!(err.kind(), ErrorKind::Callback);
                assert!(err.message().contains("told to fail"), "{err}");
                assert_eq!(snapshot(&state), before);
                assert_eq!(counts(), at_start, "a failed split kept references");
            }
        }
    }

    // A callback that panics: the panic reaches the caller, and the state
    // is as it was and still usable (no lock poisoned, nothing held).
    let panicking = Filter::callback(|_, _| {
        panic!("a deliberate panic in a caller's callback (this test expects it)")
    });
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        state.split(&[Filter::of_type(TypeId::BATCH_STAT), panicking])
    }));
    assert!(outcome.is_err(), "the panic was swallowed");
    assert_eq!(snapshot(&state), before);
    assert_eq!(counts(), at_start);
    let parts = state
        .split(&[Filter::of_type(TypeId::PARAM), Filter::Everything])
        .unwrap();
    assert_eq!(parts[0].num_leaves().unwrap(), 3);
    drop(parts);

    // A failed from_flat keeps none of the leaves it was given.
    let extra = counted_array(&released);
    let err = State::from_flat(vec![
        (p("a"), Leaf::Array(extra.clone())),
        (Vec::new(), Leaf::Array(extra.clone())),
    ])
    .expect_err("an empty path");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert_eq!(Arc::strong_count(&extra), 1);
    drop(extra);
    assert_eq!(released.load(Ordering::SeqCst), 1);
    drop((view, vars, state));
    assert_eq!(
        released.load(Ordering::SeqCst),
        7,
        "every array given back once"
    );
}

/// NNX evaluates `Any(f1, f2, ...)` in order, so a callback placed before a
/// type filter is asked for every leaf it is reached for, and its failure
/// fails the operation, even where the library could place a subtree by
/// its types alone (an earlier version skipped the callback).
#[test]
fn callbacks_are_asked_in_order_before_a_type_filter() {
    let state = State::new();
    state
        .set_variable(&p("ab/a"), var(TypeId::PARAM, &[1.0]))
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let failing = Filter::callback(move |_, _| {
        seen.fetch_add(1, Ordering::SeqCst);
        Err("told to fail".into())
    });
    let either = Filter::any(vec![failing, Filter::of_type(TypeId::VARIABLE)]).unwrap();
    let result = state.filter(&[either]);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the callback was not asked"
    );
    assert_eq!(result.err().map(|e| e.kind()), Some(ErrorKind::Callback));
}

#[test]
fn replace_values_makes_new_variables_and_takes_the_flat_round_trip_form() {
    let s = State::new();
    let kept = var(TypeId::PARAM, &[1.0]);
    kept.set_metadata("tag", MetaValue::Str("w".into()))
        .unwrap();
    s.set_variable(&p("layer/w"), kept.clone()).unwrap();
    s.set_variable(&p("layer/b"), var(TypeId::BATCH_STAT, &[2.0]))
        .unwrap();
    s.set_state(&p("layer/empty"), &State::new()).unwrap();
    s.set_state(&p("unused"), &State::new()).unwrap();
    s.set_array(
        &p("bare"),
        Arc::new(Array::from_slice(&[1], &[3.0f32]).unwrap()),
    )
    .unwrap();
    let old_value = kept.array().unwrap();
    let new = Arc::new(Array::from_slice(&[1], &[9.0f32]).unwrap());
    let bare = Arc::new(Array::from_slice(&[1], &[8.0f32]).unwrap());
    s.replace_values(&[(p("layer/w"), new.clone()), (p("bare"), bare.clone())])
        .unwrap();

    let w = s.get_variable(&p("layer/w")).unwrap();
    assert!(!Arc::ptr_eq(&w, &kept), "a new variable, as Flax's replace");
    assert!(Arc::ptr_eq(&w.array().unwrap(), &new));
    assert_eq!(w.tag().as_deref(), Some("w"), "its metadata copied");
    assert!(
        Arc::ptr_eq(&kept.array().unwrap(), &old_value),
        "the old one kept"
    );
    assert!(Arc::ptr_eq(&s.get_array(&p("bare")).unwrap(), &bare));
    // `layer` as a flat round trip has it: sorted, its empty state gone;
    // `unused` (no leaves) stays, and the top level keeps its order.
    assert_eq!(
        s.view(&p("layer")).unwrap().keys().unwrap(),
        [p("b")[0], p("w")[0]]
    );
    assert_eq!(
        s.keys().unwrap(),
        [p("layer")[0], p("unused")[0], p("bare")[0]]
    );

    let before = paths(&s);
    for bad in ["layer", "layer/none", "layer/w/deeper"] {
        assert!(s
            .replace_values(&[(p("layer/b"), new.clone()), (p(bad), new.clone())])
            .is_err());
    }
    assert_eq!(paths(&s), before, "a failure changes nothing");
    assert!(!Arc::ptr_eq(
        &s.get_variable(&p("layer/b")).unwrap().array().unwrap(),
        &new
    ));
}
