//! The nesting limit through the Rust API, and what stays safe beyond it:
//! trees built directly from nodes (which the limit does not guard) free
//! without recursion, filters share their parts, a filter at the size limit
//! evaluates, and split and filter remember results by what the filters
//! select, not by how they print. (`tests/c/deep.c` covers the C API, on a
//! small stack too.)

use std::sync::Arc;

use nnx_state::limits::MAX_FILTER_PARTS;
use nnx_state::{
    Array, Child, ErrorKind, Filter, Key, Leaf, Node, State, TypeId, Variable, MAX_DEPTH,
};

fn param() -> Arc<Variable> {
    let array = Array::from_slice(&[1], &[1.0f32]).unwrap();
    Arc::new(Variable::new(TypeId::PARAM, Some(Arc::new(array))).unwrap())
}

fn path(len: usize) -> Vec<Key> {
    (0..len).map(|i| Key::int(i as i64)).collect()
}

/// Runs `f` on a thread with a 256 KiB stack, as an engine's worker may be.
fn on_small_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn the_limit_holds_at_every_way_in_and_nothing_is_written() {
    let state = State::new();
    state.set_variable(&path(MAX_DEPTH), param()).unwrap();
    let e = state
        .set_variable(&path(MAX_DEPTH + 1), param())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooDeep);
    assert!(e.message().contains("nesting limit of 64"), "{e}");
    assert_eq!(state.num_leaves().unwrap(), 1);

    // A state of 2 levels under a path of MAX_DEPTH - 1 keys does not fit.
    let two = State::new();
    two.set_variable(&path(2), param()).unwrap();
    let holder = State::new();
    holder.set_state(&path(MAX_DEPTH - 2), &two).unwrap();
    assert_eq!(
        holder
            .set_state(&path(MAX_DEPTH - 1), &two)
            .unwrap_err()
            .kind(),
        ErrorKind::TooDeep
    );
    // A view counts its own path.
    let view = holder.view(&path(MAX_DEPTH - 2)).unwrap();
    assert_eq!(view.update(&two).map(|_| ()), Ok(()));
    let three = State::new();
    three.set_variable(&path(3), param()).unwrap();
    assert_eq!(view.update(&three).unwrap_err().kind(), ErrorKind::TooDeep);
    assert_eq!(holder.num_leaves().unwrap(), 1);

    let leaf: Leaf = param().into();
    let deep_pair = vec![(path(MAX_DEPTH + 1), leaf.clone())];
    assert_eq!(
        State::from_flat(deep_pair).unwrap_err().kind(),
        ErrorKind::TooDeep
    );
    assert_eq!(
        State::from_flat(vec![(path(MAX_DEPTH), leaf)])
            .unwrap()
            .num_leaves()
            .unwrap(),
        1
    );
}

#[test]
fn trees_of_any_depth_free_without_recursion() {
    on_small_stack(|| {
        // Built node by node, past what the State API takes: 100,000 levels.
        let mut node = Node::new();
        node.insert(Key::str("leaf"), Child::Leaf(param().into()));
        for i in 0..100_000 {
            let mut parent = Node::new();
            parent.insert(Key::int(i), Child::Node(Arc::new(node)));
            node = parent;
        }
        assert_eq!(node.height(MAX_DEPTH), 100_001);
        let state = State::from_node(node);
        let copy = state.copy().unwrap(); // shares the tree
        drop(state);
        drop(copy);
    });
}

#[test]
fn a_state_at_the_limit_works_on_a_small_stack() {
    on_small_stack(|| {
        let state = State::new();
        for i in 0..8 {
            let mut p = path(MAX_DEPTH);
            p[MAX_DEPTH - 1] = Key::int(100 + i);
            state.set_variable(&p, param()).unwrap();
        }
        let filters = [Filter::path_contains(103, true), Filter::Everything];
        let parts = state.split(&filters).unwrap();
        let merged = State::merge(&[&parts[0], &parts[1]]).unwrap();
        assert_eq!(merged.num_leaves().unwrap(), 8);
        assert_eq!(merged.diff(&parts[0]).unwrap().num_leaves().unwrap(), 7);
        assert_eq!(state.deep_copy().unwrap().flatten().unwrap().len(), 8);
        assert!(state.to_string_tree().unwrap().contains("103"));
    });
}

#[test]
fn filters_share_their_parts_and_stay_within_both_limits() {
    // 19 levels of Any(f, f): 2^20 - 1 parts written out, built in 19 steps
    // (a copy of each part would take a million).
    let mut shared = Filter::of_type(TypeId::PARAM);
    for level in 1..=19 {
        shared = Filter::any(vec![shared.clone(), shared]).unwrap();
        assert_eq!(shared.size(), (1 << (level + 1)) - 1);
    }
    let e = Filter::any(vec![shared.clone(), shared.clone()]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.message().contains(&MAX_FILTER_PARTS.to_string()), "{e}");

    // At the size limit it still evaluates, and remembers its result.
    let state = State::new();
    state.set_variable(&path(3), param()).unwrap();
    let first = state.filter(std::slice::from_ref(&shared)).unwrap();
    assert_eq!(first[0].num_leaves().unwrap(), 1);
    let again = state.filter(&[shared]).unwrap();
    assert!(first[0].same_as(&again[0]).unwrap());

    // Depth: MAX_DEPTH levels build, one more does not.
    let mut chain = Filter::Nothing;
    for _ in 1..MAX_DEPTH {
        chain = Filter::negate(chain).unwrap();
    }
    assert_eq!(chain.depth(), MAX_DEPTH);
    assert_eq!(
        Filter::negate(chain.clone()).unwrap_err().kind(),
        ErrorKind::TooDeep
    );
    assert_eq!(
        Filter::all(vec![Filter::Nothing, chain])
            .unwrap_err()
            .kind(),
        ErrorKind::TooDeep
    );
}

#[test]
fn remembered_results_follow_what_filters_select() {
    let state = State::new();
    state
        .set_variable(&[Key::str("a"), Key::int(0)], param())
        .unwrap();
    state
        .set_variable(&[Key::str("a"), Key::str("0")], param())
        .unwrap();
    let by_int = state.filter(&[Filter::path_contains(0, true)]).unwrap();
    let by_str = state.filter(&[Filter::path_contains("0", true)]).unwrap();
    let keys = |s: &State| {
        s.flatten()
            .unwrap()
            .into_iter()
            .map(|(p, _)| p)
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&by_int[0]), vec![vec![Key::str("a"), Key::int(0)]]);
    assert_eq!(keys(&by_str[0]), vec![vec![Key::str("a"), Key::str("0")]]);
    // An equal filter made anew finds the remembered result.
    let again = state.filter(&[Filter::path_contains(0, true)]).unwrap();
    assert!(Arc::ptr_eq(
        &again[0].node().unwrap(),
        &by_int[0].node().unwrap()
    ));
    // Filter and split of the same filters are remembered apart.
    let all = [Filter::path_contains(0, true), Filter::Everything];
    let filtered = state.filter(&all).unwrap();
    let split = state.split(&all).unwrap();
    assert_eq!(filtered.len(), split.len());
    // Any(x) and All(x) select the same leaves but are different filters:
    // the second is computed, not taken from the first.
    let x = || Filter::path_contains(0, true);
    let any = state.filter(&[Filter::any(vec![x()]).unwrap()]).unwrap();
    let all = state.filter(&[Filter::all(vec![x()]).unwrap()]).unwrap();
    assert_eq!(keys(&any[0]), keys(&all[0]));
    assert!(!Arc::ptr_eq(
        &any[0].node().unwrap(),
        &all[0].node().unwrap()
    ));
    let any_again = state.filter(&[Filter::any(vec![x()]).unwrap()]).unwrap();
    assert!(Arc::ptr_eq(
        &any[0].node().unwrap(),
        &any_again[0].node().unwrap()
    ));
}
