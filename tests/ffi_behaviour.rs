//! What the C API does over several calls, beyond the one-call contract of
//! `ffi_contract.rs`: release callbacks that call the library back, filter
//! data released once when the last copy goes, a state given to itself,
//! views that follow their path, and structured metadata values built,
//! copied and written as JSON.

#[macro_use]
mod common;

use std::ffi::{c_int, c_void};
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use nnx_status::*;

/// What a release callback does when it runs: read the state (and the
/// variable) the value was taken out of, which would deadlock if the
/// library still held their locks, and count the run.
struct Reentrant {
    state: *mut nnx_state,
    variable: *const nnx_variable,
    runs: AtomicUsize,
    leaves_seen: AtomicUsize,
}

unsafe extern "C" fn reenter_on_release(user_data: *mut c_void) {
    // SAFETY: a `Reentrant` the test keeps alive.
    let r = unsafe { &*(user_data as *const Reentrant) };
    let mut leaves = 0;
    if nnx_state_num_leaves(r.state, &mut leaves) == NNX_OK {
        r.leaves_seen.store(leaves, Ordering::SeqCst);
    }
    let mut text = null_mut();
    if nnx_state_to_string(r.state, &mut text) == NNX_OK {
        nnx_string_free(text);
    }
    let mut kind = 0;
    if !r.variable.is_null() {
        assert_eq!(nnx_variable_value_kind(r.variable, &mut kind), NNX_OK);
    }
    r.runs.fetch_add(1, Ordering::SeqCst);
}

/// A filter callback that writes to the state being split.
unsafe extern "C" fn writes_while_asked(
    user_data: *mut c_void,
    _path: *const nnx_key,
    _len: usize,
    _kind: nnx_kind,
    _variable: *const nnx_variable,
    _array: *const nnx_array,
) -> c_int {
    let state = user_data as *mut nnx_state;
    let empty = new_state();
    let status = nnx_state_set_state_str(state, cstr("added/by/callback").as_ptr(), empty.ptr());
    c_int::from(status != NNX_OK)
}

/// Runs `f` on another thread and fails if it does not finish in time (a
/// deadlock), rather than hanging the test run.
fn within_seconds(seconds: u64, f: impl FnOnce() + Send + 'static) {
    let (done, wait) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        f();
        let _ = done.send(());
    });
    match wait.recv_timeout(std::time::Duration::from_secs(seconds)) {
        Ok(()) => worker.join().expect("the worker panicked"),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("no answer in {seconds} s: a callback deadlocked in the library")
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            let _ = worker.join();
            panic!("the worker panicked");
        }
    }
}

#[test]
fn release_callbacks_may_call_the_library_back() {
    within_seconds(30, || {
        let state = new_state();
        let holder = variable(NNX_TYPE_PARAM, None);
        let r = Box::new(Reentrant {
            state: state.ptr(),
            variable: holder.ptr(),
            runs: AtomicUsize::new(0),
            leaves_seen: AtomicUsize::new(99),
        });
        let user_data = (&*r as *const Reentrant).cast_mut().cast::<c_void>();
        let mut data = [1f32, 2.0, 3.0, 4.0];
        let mut lend = || wrap_f32(&mut data, false, Some(reenter_on_release), user_data);
        let runs = || r.runs.load(Ordering::SeqCst);
        // The last reference goes when a set replaces the leaf...
        set_arr(&state, "x", &lend());
        set_arr(&state, "x", &lend());
        assert_eq!((runs(), r.leaves_seen.load(Ordering::SeqCst)), (1, 1));
        // ... when a remove takes it out ...
        ok!(nnx_state_remove_str(state.ptr(), cstr("x").as_ptr()));
        assert_eq!((runs(), r.leaves_seen.load(Ordering::SeqCst)), (2, 0));
        // ... when an update overwrites it ...
        set_arr(&state, "y", &lend());
        let source = new_state();
        let (mut one, source_count) = ([1.0f32], Counter::new());
        let (ud, release): (_, nnx_release_fn) = (source_count.as_user_data(), Some(count_release));
        set_arr(&source, "y", &wrap_f32(&mut one, false, release, ud));
        ok!(nnx_state_update(state.ptr(), source.ptr()));
        drop(source);
        let both = || (runs(), source_count.get());
        assert_eq!(both(), (3, 0), "the state holds the source's array");
        // ... when a variable's value is replaced, by none or by a key ...
        set_var(&state, "v", &holder);
        ok!(nnx_variable_set_value(holder.ptr(), lend().ptr()));
        ok!(nnx_variable_set_value(holder.ptr(), null()));
        assert_eq!((runs(), r.leaves_seen.load(Ordering::SeqCst)), (4, 2));
        // ... and opaque values likewise, replaced or removed with their
        // last holder.
        let opaque = |v: &Var| {
            ok!(nnx_variable_set_opaque(
                v.ptr(),
                cstr("test:reentrant").as_ptr(),
                null_mut(),
                Some(reenter_on_release),
                user_data
            ))
        };
        opaque(&holder);
        ok!(nnx_variable_set_value(holder.ptr(), null()));
        opaque(&holder);
        let key = u32_array(&[2], &[0, 1]);
        let name = cstr("threefry2x32");
        ok!(nnx_variable_set_key(holder.ptr(), key.ptr(), name.as_ptr()));
        assert_eq!(runs(), 6);
        let other = variable(NNX_TYPE_PARAM, None);
        opaque(&other);
        set_var(&state, "w", &other);
        drop(other);
        ok!(nnx_state_remove_str(state.ptr(), cstr("w").as_ptr()));
        assert_eq!((runs(), r.leaves_seen.load(Ordering::SeqCst)), (7, 2));

        // A filter callback may write to the state being split: the split
        // sees the state as it was when it began.
        let writer = callback_filter(Some(writes_while_asked), state.ptr().cast(), None);
        let (rest, mut parts) = (everything(), [null_mut(); 2]);
        let (split, fs) = (state.ptr(), filter_ptrs(&[&writer, &rest]));
        ok!(nnx_state_split(split, fs.as_ptr(), 2, parts.as_mut_ptr()));
        let (first, second) = (St(parts[0]), St(parts[1]));
        assert_eq!((leaves(first.ptr()), leaves(second.ptr())), (0, 2));
        let mut kind = SENTINEL_U32;
        let at = cstr("added/by/callback");
        ok!(nnx_state_get_kind_str(state.ptr(), at.as_ptr(), &mut kind));
        assert_eq!(kind, NNX_KIND_STATE);
        drop((state, holder));
        assert_eq!(both(), (7, 0), "the split's parts hold it");
        drop((first, second));
        assert_eq!(source_count.get(), 1);
    });
}

#[test]
fn filter_data_is_released_once_when_the_last_copy_goes() {
    let counter = Counter::new();
    let ud = counter.as_user_data();
    let original = callback_filter(Some(answer_seven), ud, Some(count_release));
    let copy = Flt(made(|out| nnx_filter_clone(original.ptr(), out)));
    let wrapped = any_of(&[&original]);
    let not = Flt(made(|out| nnx_filter_not(copy.ptr(), out)));
    drop((original, copy));
    assert_eq!(counter.get(), 0, "released while a composite holds it");
    drop(wrapped);
    assert_eq!(counter.get(), 0, "released while a Not holds it");
    drop(not);
    assert_eq!(counter.get(), 1);
}

#[test]
fn a_state_given_to_itself() {
    let state = sample_state();
    let before = identities(state.ptr());
    // update from itself, and from a view of itself: nothing changes.
    ok!(nnx_state_update(state.ptr(), state.ptr()));
    let view = view(&state, "b");
    ok!(nnx_state_update(view.ptr(), view.ptr()));
    assert_eq!(identities(state.ptr()), before);
    // A copy of itself inside itself: a snapshot, not a cycle.
    set_state(&state, "self", &state);
    assert_eq!(leaves(state.ptr()), 2 * SAMPLE_LEAVES);
    set_state(&view, "again", &view);
    assert_eq!(leaves(state.ptr()), 2 * SAMPLE_LEAVES + 2);
    // diff with itself is empty.
    let d = St(made(|out| nnx_state_diff(state.ptr(), state.ptr(), out)));
    assert_eq!(leaves(d.ptr()), 0);
    ok!(nnx_state_remove_str(state.ptr(), cstr("self").as_ptr()));
    ok!(nnx_state_remove_str(state.ptr(), cstr("b/again").as_ptr()));
    assert_eq!(identities(state.ptr()), before);
}

#[test]
fn a_view_follows_its_path() {
    let parent = sample_state();
    let view = view(&parent, "b");
    let (b, mut n) = (cstr("b"), SENTINEL);
    // Replaced by a leaf, then removed (what calls on the view then give,
    // the contract table checks: its `LeafView` and `Dead`).
    set_var(&parent, "b", &variable(NNX_TYPE_PARAM, None));
    ok!(nnx_state_remove_str(parent.ptr(), b.as_ptr()));
    // Made again: the view follows the path.
    set_var(&parent, "b/q", &variable(NNX_TYPE_PARAM, None));
    assert_eq!((top_len(view.ptr()), leaves(view.ptr())), (1, 1));
    // A view of a view dies with its grandparent's entry.
    set_var(&parent, "b/c/d", &variable(NNX_TYPE_PARAM, None));
    let inner = common::view(&view, "c");
    assert_eq!(leaves(inner.ptr()), 1);
    ok!(nnx_state_remove_str(parent.ptr(), b.as_ptr()));
    let m = fails!(nnx_state_len(inner.ptr(), &mut n), NNX_ERR_KEY_NOT_FOUND);
    assert_contains!(m, "'b'");
}

fn json_of(meta: *const nnx_meta) -> String {
    LibStr(made(|out| nnx_meta_to_json(meta, out))).text()
}

#[test]
fn structured_metadata_is_built_copied_and_written_as_json() {
    let betas = meta_seq(true, &[&meta_float(0.9), &meta_float(0.999)]);
    let hyper = meta_map(&[
        ("lr", &meta_float(1e-3)),
        ("betas", &betas),
        ("nesterov", &meta_bool(false)),
        ("steps", &meta_seq(false, &[&meta_int(1), &meta_int(2)])),
    ]);
    assert_eq!(
        meta_repr(hyper.ptr()),
        "{'lr': 0.001, 'betas': (0.9, 0.999), 'nesterov': False, 'steps': [1, 2]}"
    );
    assert_eq!(meta_repr(meta_seq(true, &[&meta_int(1)]).ptr()), "(1,)");

    // A container copies what it is given, even a part of itself.
    let (mut found, h) = (null(), hyper.ptr());
    ok!(nnx_meta_map_get(h, "betas".as_ptr().cast(), 5, &mut found));
    let copy = meta_made(|o| nnx_meta_clone(found, o));
    ok!(nnx_meta_append(copy.ptr(), copy.ptr()));
    let mut first = null();
    ok!(nnx_meta_item(copy.ptr(), 0, &mut first));
    ok!(nnx_meta_append(copy.ptr(), first));
    assert_eq!(meta_repr(copy.ptr()), "(0.9, 0.999, (0.9, 0.999), 0.9)");
    assert_eq!(meta_repr(found), "(0.9, 0.999)");

    // The JSON form keeps every kind, NaN by its bits, and reads back.
    let sharding = meta_seq(true, &[&meta_null(), &meta_str("model")]);
    ok!(nnx_meta_map_set(h, "lr".as_ptr().cast(), 2, sharding.ptr()));
    let (nan, one) = (meta_float(f64::NAN), meta_float(1.0));
    let with_nan = meta_map(&[("x", &nan), ("h", &hyper), ("one", &one)]);
    let json = json_of(with_nan.ptr());
    assert_eq!(
        json,
        r#"["map","x",["float","0x7ff8000000000000"],"h",["map","lr",["tuple",null,"model"],"betas",["tuple",0.9,0.999],"nesterov",false,"steps",["list",1,2]],"one",1.0]"#
    );
    let back = meta_made(|o| nnx_meta_from_json(json.as_ptr().cast(), json.len(), o));
    assert_eq!(json_of(back.ptr()), json);
    assert_eq!(meta_repr(back.ptr()), meta_repr(with_nan.ptr()));
}
