//! The C-ABI contract: one row per function of `include/nnx_state.h`.
//!
//! A row names the function and gives one valid call, each argument named
//! as the header names it and taken from a fixture (states, variables,
//! arrays, filters, flat lists and metadata values, made fresh for every
//! call; see `Fix`). From that one description the table checks:
//!
//! - the valid call succeeds, and what it hands out is freed again;
//! - NULL in each required pointer, one at a time, fails with
//!   `NNX_ERR_NULL_ARGUMENT` and a message naming the argument;
//! - each listed case (some arguments given other values) gives its status,
//!   and a message of its own that holds the case's needles (`a|b`: both;
//!   `^a`: starts with `a`).
//!
//! After every failure the out-pointers hold their sentinels, the fixture
//! reads exactly as before (listings, the identity of every leaf, each
//! variable's value and metadata, flat lists, metadata values) and no
//! release callback has run. After every call, once the fixture and the
//! outputs are dropped, every release callback the test lent has run
//! exactly once: nothing is kept, nothing leaked (`dlpack` imports, which
//! consume their tensor even on failure, call its deleter exactly once).
//!
//! `every_extern_function_has_a_row` fails when the header declares a
//! function that has no row. Multi-step behaviour (release callbacks that
//! call back in, splits that fail midway, views over time) is in
//! `ffi_behaviour.rs`; `tests/c/misuse.c` is the same contract seen from C.

#[macro_use]
mod common;

use std::any::{Any, TypeId};
use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::ffi::{c_char, c_int, c_void, CString};
use std::path::PathBuf;
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicUsize, Ordering};

use ::nnx_state::ffi::dlpack::*;
use ::nnx_state::ffi::filter_parse::nnx_filter_parse;
use ::nnx_state::ffi::io::*;
use common::*;
use nnx_status::*;
// Short names for the statuses.
use nnx_status::{
    NNX_ERR_CALLBACK as CALLBACK, NNX_ERR_FILTER_ORDER as ORDER, NNX_ERR_FORMAT as FORMAT,
    NNX_ERR_INDEX_OUT_OF_RANGE as RANGE, NNX_ERR_INVALID_ARGUMENT as INVALID,
    NNX_ERR_INVALID_UTF8 as UTF8, NNX_ERR_IO as IO, NNX_ERR_KEY_NOT_FOUND as NOT_FOUND,
    NNX_ERR_NON_EXHAUSTIVE as NON_EXHAUSTIVE, NNX_ERR_NULL_ARGUMENT as NULL_ARG,
    NNX_ERR_OUT_OF_MEMORY as OOM, NNX_ERR_PATH_THROUGH_LEAF as THROUGH_LEAF,
    NNX_ERR_READ_ONLY as READ_ONLY, NNX_ERR_SHAPE_MISMATCH as SHAPE, NNX_ERR_TOO_DEEP as TOO_DEEP,
    NNX_ERR_TYPE_CONFLICT as CONFLICT, NNX_ERR_UNKNOWN_TYPE as UNKNOWN,
    NNX_ERR_WRONG_KIND as WRONG_KIND,
};
use H::*;
use V::*;

// ---------------------------------------------------------------------------
// Argument values

/// What a case gives an argument in place of the row's value.
#[derive(Clone, Debug)]
enum V {
    Null,
    /// Any integer argument, or a length.
    N(i128),
    B(bool),
    /// A path (`keys`), a single key (its first), or the keys of `push_many`.
    Keys(Vec<K<'static>>),
    /// A string: NUL-terminated (`text`, `file`), or pointer and length
    /// (`bytes`).
    Txt(Vec<u8>),
    /// Another handle of the fixture.
    Hd(H),
    /// A list of handles (`list`, `optl`), `None` for a NULL element.
    List(Vec<Option<H>>),
    /// An `int64_t` / `size_t` array (`ints`).
    Ints(Vec<i64>),
    /// A zero-filled array of this dtype and shape (array arguments).
    Zeros(nnx_dtype, Vec<i64>),
    /// A list of paths (`paths`), `None` for NULL keys with length 2.
    Paths(Vec<Option<Vec<K<'static>>>>),
    /// A metadata value made from this JSON form (metadata arguments).
    Json(&'static str),
}

/// An argument, by name, and the value a case gives it.
type Arg = (&'static str, V);

fn k(keys: &[K<'static>]) -> V {
    Keys(keys.to_vec())
}

fn txt(text: impl AsRef<[u8]>) -> V {
    Txt(text.as_ref().to_vec())
}

fn list(items: &[H]) -> V {
    List(items.iter().map(|h| Some(*h)).collect())
}

/// An id no test registers (ids are dense from 0), `NNX_TYPE_NONE` and
/// another id past the registry.
const UNKNOWN_TYPE: nnx_type_id = 1 << 30;
const UNKNOWN_IDS: [nnx_type_id; 3] = [UNKNOWN_TYPE, NNX_TYPE_NONE, u32::MAX - 1];

use K::{Kind, NullStr, Raw, I, S};

// ---------------------------------------------------------------------------
// Out-pointers

/// A value an out-pointer is pre-filled with, which no successful call
/// writes.
trait Sentinel: Copy + 'static {
    fn sentinel() -> Self;
    fn same(&self, other: &Self) -> bool;
}

macro_rules! sentinel_value {
    ($($t:ty => $v:expr),*) => {$(
        impl Sentinel for $t {
            fn sentinel() -> Self { $v }
            fn same(&self, other: &Self) -> bool { self == other }
        }
    )*};
}
sentinel_value!(u32 => SENTINEL_U32, i32 => -7, usize => SENTINEL, i64 => SENTINEL_I64, u64 => SENTINEL_I64 as u64,
    u8 => SENTINEL_BOOL_BYTE, f64 => SENTINEL_F64);

impl Sentinel for nnx_key {
    fn sentinel() -> Self {
        sentinel_key()
    }
    fn same(&self, other: &Self) -> bool {
        key_untouched(self) && key_untouched(other)
    }
}

/// A handle argument: `*const T` or `*mut T`.
trait Handle: Copy + 'static {
    type T: 'static;
    fn from_raw(ptr: *mut Self::T) -> Self;
    fn null() -> Self;
}

/// Pointers are handle arguments, and outs pre-filled with `SENTINEL`.
macro_rules! pointers {
    ($($p:ty => $null:ident, $sentinel:ident);*) => {$(
        impl<T: 'static> Handle for $p {
            type T = T;
            fn from_raw(ptr: *mut T) -> Self { ptr as _ }
            fn null() -> Self { $null() }
        }
        impl<T: 'static> Sentinel for $p {
            fn sentinel() -> Self { $sentinel() }
            fn same(&self, other: &Self) -> bool { self == other }
        }
    )*};
}
pointers!(*mut T => null_mut, sentinel; *const T => null, sentinel_const);

/// How the caller lets go of a handle the library hands out.
trait Free: 'static {
    fn free(ptr: *mut Self);
}

macro_rules! free_with {
    ($($t:ty => $f:expr),*) => {$(
        impl Free for $t {
            fn free(ptr: *mut Self) { ($f)(ptr) }
        }
    )*};
}
free_with!(nnx_array => nnx_array_release, nnx_variable => nnx_variable_release,
    nnx_state => nnx_state_free, nnx_filter => nnx_filter_free, nnx_flat => nnx_flat_free,
    nnx_meta => nnx_meta_free, c_char => nnx_string_free,
    // SAFETY: tensors the library exported, each deleted once.
    DLManagedTensorVersioned => |t: *mut Self| unsafe { ((*t).deleter.unwrap())(t) },
    DLManagedTensor => |t: *mut Self| unsafe { ((*t).deleter.unwrap())(t) });

/// Storage behind an out-pointer.
trait Slot {
    fn untouched(&self) -> bool;
    /// After a success: frees what the call handed out.
    fn finish(&self);
    fn any(&self) -> &dyn Any;
}

/// The values behind an out-pointer and, for handles the caller then owns,
/// how to free them.
struct Out<T>(Vec<T>, Option<fn(T)>);

impl<T: Sentinel> Slot for Out<T> {
    fn untouched(&self) -> bool {
        self.0.iter().all(|v| v.same(&T::sentinel()))
    }
    fn finish(&self) {
        if let Some(free) = self.1 {
            let untouched = |v: &T| v.same(&T::sentinel());
            assert!(self.0.len() > 1 || !untouched(&self.0[0]), "not written");
            self.0
                .iter()
                .filter(|v| !untouched(v))
                .for_each(|v| free(*v));
        }
    }
    fn any(&self) -> &dyn Any {
        self
    }
}

// ---------------------------------------------------------------------------
// The fixture

/// The handles of the fixture.
#[derive(Clone, Copy, Debug, PartialEq)]
enum H {
    /// `z: Param f32[2]`, `b: {1: BatchStat f32[1] tag "stats", x: f32[3]}`,
    /// `a: Param f32[1]`, `e: {0: Cache (no value)}`, every array lent.
    Main,
    /// `zz/0`, `aa/10`, `aa/9`: Caches inserted out of sorted order.
    Other,
    Empty,
    /// A live view of `Main`'s `b`.
    View,
    /// A view whose nested state (`q`) was removed from `Other`.
    Dead,
    /// A view whose nested state was replaced by a leaf in `LeafParent`.
    LeafView,
    LeafParent,
    /// `w`: an array on device 2:3.
    OnDevice,
    /// A Param holding a lent f32[1].
    Plain,
    /// A Param without value, with metadata `s: 'text'`, `i: 3`, `f: 0.5`,
    /// `b: True`, `t: (None, 'model')`, `l: [1]`, `tag: ('t',)`.
    WithMeta,
    /// An RngKey holding a threefry2x32 key over `KeyData`.
    KeyVar,
    /// A Param holding an opaque `test:thing`, its release counted.
    Opaque,
    /// A Cache without value.
    NoValue,
    /// A lent, writable f32[2].
    Lent,
    /// A lent, read-only f32[2].
    ReadOnly,
    /// u32[2] `[0, 42]`.
    KeyData,
    /// f32[2] on device 2:3.
    DeviceArr,
    Param,
    Stats,
    All,
    Nothing,
    AnyAll,
    NotNotAll,
    AllClone,
    /// A callback answering 7, its release counted.
    Seven,
    /// `Any(Param, Not(Seven))`.
    AnySeven,
    /// A callback answering this (made when first asked for).
    Answer(c_int),
    /// A callback answering whether the leaf is a Param for this many
    /// calls, then 7 (made when first asked for).
    FailAfter(usize),
    /// `Main` flattened.
    Entries,
    NoEntries,
    MInt,
    MStr,
    MBool,
    MFloat,
    MNull,
    MList,
    MTuple,
    MMap,
    /// `NNX_MAX_DEPTH` nested lists around `None`.
    MDeep,
}

/// A handle of the fixture: its name, type, address and guard.
type Entry = (H, TypeId, *mut c_void, Box<dyn Any>);

/// What every call works on, made fresh for each: handles, caller memory,
/// and the count of release callbacks run.
#[derive(Default)]
struct Fix {
    handles: RefCell<Vec<Entry>>,
    counter: Box<Counter>,
    /// Release callbacks the fixture handed to the library.
    lent: Cell<usize>,
    /// Caller memory: 128 bytes, the first 4 the f32 2.5, the rest 0.
    buf: Box<[u64; 16]>,
    memory: RefCell<Vec<Box<[f32]>>>,
    dir: RefCell<Option<PathBuf>>,
}

/// A callback filter's script: answers whether the leaf is a Param for
/// `.0` calls, then `.1`.
struct Script(usize, c_int, AtomicUsize);

unsafe extern "C" fn scripted(
    user_data: *mut c_void,
    _path: *const nnx_key,
    _path_len: usize,
    kind: nnx_kind,
    variable: *const nnx_variable,
    _array: *const nnx_array,
) -> c_int {
    // SAFETY: a `Script` the fixture keeps.
    let script = unsafe { &*user_data.cast::<Script>() };
    if script.2.fetch_add(1, Ordering::SeqCst) >= script.0 {
        return script.1;
    }
    let mut type_id = NNX_TYPE_NONE;
    if kind == NNX_KIND_VARIABLE {
        ok!(nnx_variable_type(variable, &mut type_id));
    }
    c_int::from(type_id == NNX_TYPE_PARAM)
}

/// The metadata of `WithMeta`, as JSON forms.
const META: [(&str, &str); 7] = [
    ("s", r#""text""#),
    ("i", "3"),
    ("f", "0.5"),
    ("b", "true"),
    ("t", r#"["tuple",null,"model"]"#),
    ("l", r#"["list",1]"#),
    ("tag", r#"["tuple","t"]"#),
];

impl Fix {
    fn new() -> Fix {
        let mut f = Fix::default();
        let [a, b, c, d] = 2.5f32.to_ne_bytes();
        f.buf[0] = u64::from_ne_bytes([a, b, c, d, 0, 0, 0, 0]);
        let main = sample_state_of(|values| f.lend(values, true));
        f.put(View, view(&main, "b"));
        let other = new_state();
        for path in ["zz/0", "aa/10", "aa/9", "q/r"] {
            set_var(&other, path, &variable(NNX_TYPE_CACHE, None));
        }
        f.put(Dead, view(&other, "q"));
        ok!(nnx_state_remove_str(other.ptr(), cstr("q").as_ptr()));
        f.put(Other, other);
        let leaf_parent = new_state();
        set_var(&leaf_parent, "b/q", &variable(NNX_TYPE_CACHE, None));
        f.put(LeafView, view(&leaf_parent, "b"));
        set_var(&leaf_parent, "b", &variable(NNX_TYPE_CACHE, None));
        f.put(LeafParent, leaf_parent);
        let entries = Flat(made(|out| nnx_state_flatten(main.ptr(), out)));
        f.put(Entries, entries);
        // As a state loaded from a Hugging Face file carries it.
        let (m, key, v) = (main.ptr(), cstr("format"), cstr("pt"));
        ok!(nnx_safetensors_metadata_set(m, key.as_ptr(), v.as_ptr()));
        f.put(Main, main);
        f.put(NoEntries, Flat(made(|out| nnx_flat_new(out))));
        f.put(Empty, new_state());

        let (mut device, shape, at) = (null_mut(), [2i64], 0x1000 as *mut c_void);
        ok!(nnx_array_wrap_device(
            NNX_DTYPE_F32,
            shape.as_ptr(),
            1,
            at,
            8,
            2,
            3,
            true,
            None,
            null_mut(),
            &mut device
        ));
        let (device, on_device) = (Arr(device), new_state());
        set_arr(&on_device, "w", &device);
        f.put(DeviceArr, device);
        f.put(OnDevice, on_device);

        let with_meta = variable(NNX_TYPE_PARAM, None);
        for (name, json) in META {
            let name = cstr(name);
            ok!(nnx_variable_set_metadata_json(
                with_meta.ptr(),
                name.as_ptr(),
                json.as_ptr().cast(),
                json.len()
            ));
        }
        f.put(WithMeta, with_meta);
        f.put(Plain, variable(NNX_TYPE_PARAM, Some(&f.lend(&[1.0], true))));
        let key_data = u32_array(&[2], &[0, 42]);
        f.put(KeyVar, key_var(&key_data, "threefry2x32"));
        f.put(KeyData, key_data);
        f.put(Opaque, opaque_var("test:thing", sentinel(), &f.counter));
        f.lent.set(f.lent.get() + 1);
        f.put(NoValue, variable(NNX_TYPE_CACHE, None));
        f.put(Lent, f.lend(&[1.0, 2.0], true));
        f.put(ReadOnly, f.lend(&[1.0, 2.0], false));

        let (param, all) = (of_type(NNX_TYPE_PARAM), everything());
        let seven = callback_filter(Some(answer_seven), f.ud(), Some(count_release));
        let not = |filter: &Flt| Flt(made(|out| nnx_filter_not(filter.ptr(), out)));
        f.put(AnySeven, any_of(&[&param, &not(&seven)]));
        f.put(Stats, of_type(NNX_TYPE_BATCH_STAT));
        f.put(Nothing, nothing());
        f.put(AnyAll, any_of(&[&all]));
        f.put(NotNotAll, not(&not(&all)));
        f.put(AllClone, Flt(made(|out| nnx_filter_clone(all.ptr(), out))));
        f.put(Param, param);
        f.put(All, all);
        f.put(Seven, seven);

        f.put(MInt, meta_int(5));
        f.put(MStr, meta_str("x"));
        f.put(MBool, meta_bool(true));
        f.put(MFloat, meta_float(0.5));
        f.put(MNull, meta_null());
        f.put(MList, meta_seq(false, &[&meta_int(1)]));
        f.put(MTuple, meta_seq(true, &[&meta_null(), &meta_str("model")]));
        f.put(MMap, meta_map(&[("a", &meta_int(1))]));
        f.put(MDeep, meta_nested(NNX_MAX_DEPTH));
        f
    }

    /// A lent f32 array whose release is counted.
    fn lend(&self, values: &[f32], writable: bool) -> Arr {
        let mut data: Box<[f32]> = values.into();
        let array = wrap_f32(&mut data, writable, Some(count_release), self.ud());
        self.memory.borrow_mut().push(data);
        array
    }

    /// The user data of the counted release callback, lent once more.
    fn ud(&self) -> *mut c_void {
        self.lent.set(self.lent.get() + 1);
        self.counter.as_user_data()
    }

    /// The caller memory behind `Lent` or `ReadOnly` (lent last).
    fn memory_of(&self, which: H) -> *const c_void {
        let memory = self.memory.borrow();
        let back = if which == ReadOnly { 1 } else { 2 };
        memory[memory.len() - back].as_ptr().cast()
    }

    fn put<G: Guard>(&self, which: H, guard: G) {
        let ptr = guard.ptr().cast();
        let entry: Entry = (which, TypeId::of::<G::T>(), ptr, Box::new(guard));
        self.handles.borrow_mut().push(entry);
    }

    /// A callback filter for `Answer` and `FailAfter`, made when first
    /// asked for.
    fn callback(&self, which: H) {
        let (calls, answer) = match which {
            Answer(answer) => (0, answer),
            FailAfter(n) => (n, 7),
            _ => return,
        };
        if !self.handles.borrow().iter().any(|e| e.0 == which) {
            let script = Box::new(Script(calls, answer, AtomicUsize::new(0)));
            let ud = &*script as *const Script as *mut c_void;
            let filter = callback_filter(Some(scripted), ud, None);
            let (ty, ptr) = (TypeId::of::<nnx_filter>(), filter.ptr().cast());
            let entry: Box<dyn Any> = Box::new((filter, script));
            self.handles.borrow_mut().push((which, ty, ptr, entry));
        }
    }

    /// The handle `which` as a `T`; panics if it is no `T`.
    fn raw<T: 'static>(&self, which: H) -> *mut T {
        self.callback(which);
        let handles = self.handles.borrow();
        let (_, ty, ptr, _) = handles.iter().find(|e| e.0 == which).expect("a handle");
        let name = std::any::type_name::<T>();
        assert_eq!(*ty, TypeId::of::<T>(), "{which:?} is not a {name}");
        ptr.cast()
    }

    /// Everything a failed call must leave as it was.
    fn fingerprint(&self) -> String {
        let mut out = String::new();
        for (which, ty, ptr, _) in self.handles.borrow().iter() {
            let ptr = *ptr;
            if *ty == TypeId::of::<nnx_state>() && !matches!(which, Dead | LeafView) {
                let s = ptr.cast();
                out += &format!("{}{:?}{:?}\n", listing(s), identities(s), file_metadata(s));
            } else if *ty == TypeId::of::<nnx_variable>() {
                out += &variable_print(ptr.cast());
            } else if *ty == TypeId::of::<nnx_flat>() {
                out += &format!("{:?}\n", flat_entries(ptr.cast()));
            } else if *ty == TypeId::of::<nnx_meta>() {
                out += &meta_repr(ptr.cast());
            }
        }
        out
    }

    /// A file in this fixture's directory: `s.safetensors` holds `Main`,
    /// `bad.safetensors` and `short.safetensors` are malformed, any other
    /// name is just a path.
    fn file(&self, name: &[u8]) -> CString {
        let mut dir = self.dir.borrow_mut();
        let dir = dir.get_or_insert_with(|| {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::SeqCst);
            let d = std::env::temp_dir().join(format!("nnx-contract-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&d).unwrap();
            d
        });
        let name = std::str::from_utf8(name).unwrap();
        let path = dir.join(name);
        let c = cstr(path.to_str().unwrap());
        match name {
            "s.safetensors" => ok!(nnx_safetensors_save(self.raw(Main), c.as_ptr(), 0)),
            "bad.safetensors" => std::fs::write(&path, b"\x10\0\0\0\0\0\0\0{\"a\":1}").unwrap(),
            "short.safetensors" => std::fs::write(&path, b"\x01\0").unwrap(),
            _ => {}
        }
        c
    }

    /// Drops everything and checks that each release callback the fixture
    /// and the call (`extra`) handed over has run exactly once.
    fn finish(self, extra: usize, label: &str) {
        drop(self.handles.take());
        let (ran, lent) = (self.counter.get(), self.lent.get() + extra);
        assert_eq!(ran, lent, "{label}: {ran} release calls for {lent} lent");
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn revision(var: *const nnx_variable) -> u32 {
    let mut out = 0;
    ok!(nnx_variable_revision(var, &mut out));
    out
}

/// A variable's type, value (by identity) and metadata.
fn variable_print(var: *const nnx_variable) -> String {
    let mut ty = 0;
    ok!(nnx_variable_type(var, &mut ty));
    let kind = value_kind(var);
    let value = match kind {
        NNX_VALUE_ARRAY => Arr(made(|out| nnx_variable_get_value(var, out))).ptr() as usize,
        NNX_VALUE_KEY => get_key(var).0.ptr() as usize,
        NNX_VALUE_OPAQUE => get_opaque(var).0 as usize,
        _ => 0,
    };
    let (mut out, mut count) = (format!("type {ty} value {kind} at {value:#x}:"), 0);
    ok!(nnx_variable_metadata_count(var, &mut count));
    for i in 0..count {
        let (mut name, mut kind) = (null_mut(), 0);
        ok!(nnx_variable_metadata_at(var, i, &mut name, &mut kind));
        let name = LibStr(name).text();
        out += &format!(" {name}={}", entry_json(var, &name));
    }
    out + "\n"
}

// ---------------------------------------------------------------------------
// One call

/// The arguments of one call: the row's values unless the case overrides
/// them, with storage that lives until the call's results are checked.
struct Call<'f> {
    f: &'f Fix,
    over: Vec<Arg>,
    used: RefCell<BTreeSet<&'static str>>,
    /// The required pointers, in the order the row passes them.
    required: RefCell<Vec<&'static str>>,
    outs: RefCell<Vec<(&'static str, Box<dyn Slot>)>>,
    kept: RefCell<Vec<Box<dyn Any>>>,
    len: Cell<usize>,
    /// Release callbacks handed to the library by this call.
    lends: Cell<usize>,
}

impl<'f> Call<'f> {
    fn new(f: &'f Fix, over: Vec<Arg>) -> Call<'f> {
        Call {
            f,
            over,
            used: RefCell::default(),
            required: RefCell::default(),
            outs: RefCell::default(),
            kept: RefCell::default(),
            len: Cell::new(0),
            lends: Cell::new(0),
        }
    }

    /// The case's value for `name`, or else `default` (a required pointer
    /// then, if `required`).
    fn pick(&self, name: &'static str, default: V, required: bool) -> V {
        let Some((_, v)) = self.over.iter().find(|(n, _)| *n == name) else {
            if required {
                self.required.borrow_mut().push(name);
            }
            return default;
        };
        self.used.borrow_mut().insert(name);
        v.clone()
    }

    /// Keeps `value` until the call is checked; gives its stable address.
    fn keep<T: 'static>(&self, value: T) -> *mut T {
        let mut boxed = Box::new(value);
        let ptr: *mut T = &mut *boxed;
        self.kept.borrow_mut().push(boxed);
        ptr
    }

    /// Keeps `values` (their count for the next `len`); NULL if empty.
    fn keep_all<T: 'static>(&self, values: Vec<T>) -> *const T {
        self.len.set(values.len());
        if values.is_empty() {
            return null();
        }
        // SAFETY: kept until the call is checked.
        unsafe { &*self.keep(values) }.as_ptr()
    }

    /// Keeps a handle made for the call; gives it as the argument.
    fn keep_handle<G: Guard, P: Handle>(&self, guard: G) -> P {
        let ptr = guard.ptr().cast();
        self.keep(guard);
        P::from_raw(ptr)
    }

    fn cannot<T>(name: &str, v: V) -> T {
        panic!("argument `{name}` cannot take {v:?}")
    }

    /// A required handle, `default` unless the case gives another.
    fn h<P: Handle>(&self, name: &'static str, default: H) -> P {
        self.handle(name, self.pick(name, Hd(default), true))
    }

    /// An optional handle: not among the generated NULL cases.
    fn opt<P: Handle>(&self, name: &'static str, default: H) -> P {
        self.handle(name, self.pick(name, Hd(default), false))
    }

    fn handle<P: Handle>(&self, name: &str, v: V) -> P {
        let ty = TypeId::of::<P::T>();
        match v {
            Null => P::null(),
            Hd(which) => P::from_raw(self.f.raw(which)),
            Zeros(dtype, shape) if ty == TypeId::of::<nnx_array>() => {
                let (dims, ndim) = (shape.as_ptr(), shape.len());
                self.keep_handle(Arr(made(|out| nnx_array_zeros(dtype, dims, ndim, out))))
            }
            Json(text) if ty == TypeId::of::<nnx_meta>() => {
                let (json, len) = (text.as_ptr().cast(), text.len());
                self.keep_handle(Meta(made(|out| nnx_meta_from_json(json, len, out))))
            }
            v => Self::cannot(name, v),
        }
    }

    fn st(&self, name: &'static str) -> *mut nnx_state {
        self.h(name, Main)
    }

    fn var(&self, name: &'static str) -> *mut nnx_variable {
        self.h(name, Plain)
    }

    fn arr(&self, name: &'static str) -> *mut nnx_array {
        self.h(name, Lent)
    }

    fn flt(&self, name: &'static str) -> *mut nnx_filter {
        self.h(name, Param)
    }

    /// An integer argument.
    fn n<T: TryFrom<i128>>(&self, name: &'static str, default: T) -> T {
        match self.pick(name, Null, false) {
            Null => default,
            N(v) => T::try_from(v).unwrap_or_else(|_| panic!("`{name}`: {v} out of range")),
            v => Self::cannot(name, v),
        }
    }

    fn b(&self, name: &'static str, default: bool) -> bool {
        match self.pick(name, B(default), false) {
            B(v) => v,
            v => Self::cannot(name, v),
        }
    }

    /// A float argument, never overridden.
    fn x(&self, _name: &'static str, default: f64) -> f64 {
        default
    }

    /// The length of the last list or string given, unless overridden.
    fn len(&self, name: &'static str) -> usize {
        self.n(name, self.len.get())
    }

    /// A NUL-terminated string.
    fn text(&self, name: &'static str, default: &str) -> *const c_char {
        match self.pick(name, txt(default), true) {
            Null => null(),
            Txt(bytes) => kept_cstr(self.keep(raw_cstr(&bytes))),
            v => Self::cannot(name, v),
        }
    }

    /// A path in the fixture's directory (see `Fix::file`).
    fn file(&self, name: &'static str, default: &str) -> *const c_char {
        match self.pick(name, txt(default), true) {
            Null => null(),
            Txt(file) => kept_cstr(self.keep(self.f.file(&file))),
            v => Self::cannot(name, v),
        }
    }

    /// A string as pointer and length (the length for the next `len`).
    fn bytes(&self, name: &'static str, default: &str) -> *const c_char {
        self.len.set(default.len());
        match self.pick(name, txt(default), true) {
            Null => null(),
            Txt(bytes) if bytes.is_empty() => {
                self.len.set(0);
                b"".as_ptr().cast()
            }
            Txt(bytes) => self.keep_all(bytes).cast(),
            v => Self::cannot(name, v),
        }
    }

    /// A path of keys (its length for the next `len`); NULL if empty.
    fn keys(&self, name: &'static str, default: &[K<'static>]) -> *const nnx_key {
        self.len.set(default.len());
        match self.pick(name, k(default), !default.is_empty()) {
            Null => null(),
            Keys(keys) => {
                self.len.set(keys.len());
                // SAFETY: kept until the call is checked.
                unsafe { &*self.keep(Path::new(&keys)) }.ptr()
            }
            v => Self::cannot(name, v),
        }
    }

    /// A list of paths (its length for the next `len`).
    fn paths(&self, name: &'static str, default: &[&[K<'static>]]) -> *const nnx_path {
        self.len.set(default.len());
        let default = Paths(default.iter().map(|p| Some(p.to_vec())).collect());
        match self.pick(name, default, true) {
            Null => null(),
            Paths(paths) => self.keep_all(
                paths
                    .iter()
                    .map(|p| match p {
                        // SAFETY: kept until the call is checked.
                        Some(keys) => unsafe { &*self.keep(Path::new(keys)) }.as_c(),
                        None => nnx_path {
                            keys: null(),
                            len: 2,
                        },
                    })
                    .collect(),
            ),
            v => Self::cannot(name, v),
        }
    }

    /// A required list of handles (its length for the next `len`).
    fn list<P: Handle>(&self, name: &'static str, default: &[H]) -> *const P {
        self.handles(name, default, true)
    }

    /// An optional list of handles, NULL by default when empty.
    fn optl<P: Handle>(&self, name: &'static str, default: &[H]) -> *const P {
        self.handles(name, default, false)
    }

    fn handles<P: Handle>(&self, name: &'static str, default: &[H], required: bool) -> *const P {
        self.len.set(default.len());
        match self.pick(name, list(default), required) {
            Null => null(),
            List(items) => {
                let handle = |h: &Option<H>| h.map_or_else(P::null, |h| P::from_raw(self.f.raw(h)));
                self.keep_all(items.iter().map(handle).collect())
            }
            v => Self::cannot(name, v),
        }
    }

    /// An `int64_t` or `size_t` array (its length for the next `len`);
    /// NULL if empty.
    fn ints<T: TryFrom<i64> + 'static>(&self, name: &'static str, default: &[i64]) -> *const T {
        self.len.set(default.len());
        match self.pick(name, Ints(default.to_vec()), !default.is_empty()) {
            Null => null(),
            Ints(values) => {
                let int = |v: &i64| T::try_from(*v).unwrap_or_else(|_| panic!("`{name}`: {v}"));
                self.keep_all(values.iter().map(int).collect())
            }
            v => Self::cannot(name, v),
        }
    }

    /// A pointer argument: `default` unless the case gives NULL.
    fn ptr<T>(&self, name: &'static str, required: bool, default: T, null: T) -> T {
        match self.pick(name, B(true), required) {
            B(true) => default,
            Null => null,
            v => Self::cannot(name, v),
        }
    }

    /// The fixture's 128 bytes of caller memory (see `Fix::buf`).
    fn buf(&self, name: &'static str) -> *mut c_void {
        let buf = self.f.buf.as_ptr().cast_mut().cast();
        self.ptr(name, true, buf, null_mut())
    }

    /// An address the library holds and never reads.
    fn any(&self, name: &'static str) -> *mut c_void {
        self.ptr(name, false, sentinel(), null_mut())
    }

    /// The counted release callback (NULL for none).
    fn rel(&self, name: &'static str) -> nnx_release_fn {
        let release = self.ptr(name, false, Some(count_release as _), None);
        self.lends
            .set(self.lends.get() + usize::from(release.is_some()));
        release
    }

    /// The counted release callback for `n` arrays (NULL for none).
    fn rels(&self, name: &'static str, n: usize) -> nnx_release_fn {
        let release = self.ptr(name, false, Some(count_release as _), None);
        self.lends
            .set(self.lends.get() + if release.is_some() { n } else { 0 });
        release
    }

    /// `n` pointers into the fixture's caller memory (`buf`), 32 bytes
    /// apart; `Ints` gives other offsets, -1 for a NULL element.
    fn bufs(&self, name: &'static str, n: usize) -> *const *mut c_void {
        let base = self.f.buf.as_ptr().cast_mut();
        let at = |offset: &i64| match usize::try_from(*offset) {
            Ok(offset) => base.wrapping_add(offset).cast(),
            Err(_) => null_mut(),
        };
        match self.pick(name, Ints((0..n as i64).map(|i| 32 * i).collect()), true) {
            Null => null(),
            Ints(offsets) => self.keep_all(offsets.iter().map(at).collect()),
            v => Self::cannot(name, v),
        }
    }

    /// A required array of flags.
    fn bools(&self, name: &'static str, default: &[bool]) -> *const bool {
        let flags = self.keep_all(default.to_vec());
        self.ptr(name, true, flags, null())
    }

    /// `n` copies of the user data of the counted release callback (NULL
    /// allowed: its length for the next `owns`).
    fn uds(&self, name: &'static str, n: usize) -> *const *mut c_void {
        let user_data = self.keep_all(vec![self.f.counter.as_user_data(); n]);
        self.ptr(name, false, user_data, null())
    }

    /// The user data of the counted release callback.
    fn ud(&self, name: &'static str) -> *mut c_void {
        self.ptr(name, false, self.f.counter.as_user_data(), null_mut())
    }

    /// A required filter callback that matches every leaf.
    fn cb(&self, name: &'static str) -> nnx_filter_fn {
        self.ptr(name, true, Some(match_all as _), None)
    }

    /// A DLPack tensor exported from `Lent` by `export`, whose ownership the
    /// call takes.
    fn tensor<T>(&self, name: &'static str, export: Export<T>) -> *mut T {
        let lent = self.ptr(name, true, Some(Lent), None);
        lent.map_or(null_mut(), |lent| made(|out| export(self.f.raw(lent), out)))
    }

    /// An out-array of `n` elements, its handles freed by `free` after a
    /// success.
    fn slot<T: Sentinel>(
        &self,
        name: &'static str,
        n: usize,
        required: bool,
        free: Option<fn(T)>,
    ) -> *mut T {
        if !self.ptr(name, required, true, false) {
            return null_mut();
        }
        let mut slot = Box::new(Out(vec![T::sentinel(); n], free));
        let ptr = slot.0.as_mut_ptr();
        self.outs.borrow_mut().push((name, slot));
        ptr
    }

    /// A required out-pointer.
    fn out<T: Sentinel>(&self, name: &'static str) -> *mut T {
        self.slot(name, 1, true, None)
    }

    fn outb(&self, name: &'static str) -> *mut bool {
        self.slot::<u8>(name, 1, true, None).cast()
    }

    /// A required out-array of `n` elements.
    fn outv<T: Sentinel>(&self, name: &'static str, n: usize) -> *mut T {
        self.slot(name, n, true, None)
    }

    /// An optional out-array of `n` elements.
    fn optv<T: Sentinel>(&self, name: &'static str, n: usize) -> *mut T {
        self.slot(name, n, false, None)
    }

    /// A required out-pointer for a handle the caller then owns.
    fn own<T: Free>(&self, name: &'static str) -> *mut *mut T {
        self.len.set(1);
        self.owns(name)
    }

    /// Out-handles, one for each element of the last list given.
    fn owns<T: Free>(&self, name: &'static str) -> *mut *mut T {
        self.slot(name, self.len.get().clamp(1, 64), true, Some(T::free))
    }

    fn slot_of<S: 'static, R>(&self, name: &str, read: impl FnOnce(&S) -> R) -> R {
        let outs = self.outs.borrow();
        let slot = &outs.iter().find(|(n, _)| *n == name).expect(name).1;
        read(slot.any().downcast_ref::<S>().expect(name))
    }

    /// What the call wrote to the out-array `name`.
    fn gotv<T: Sentinel>(&self, name: &str) -> Vec<T> {
        self.slot_of(name, |s: &Out<T>| s.0.clone())
    }

    fn got<T: Sentinel>(&self, name: &str) -> T {
        self.gotv(name)[0]
    }

    fn got_bool(&self, name: &str) -> bool {
        bool_of(self.got::<u8>(name))
    }

    /// The handles the call handed out through `name`.
    fn got_owns<T: Free>(&self, name: &str) -> Vec<*mut T> {
        self.gotv(name)
    }

    fn got_own<T: Free>(&self, name: &str) -> *mut T {
        self.got_owns(name)[0]
    }

    /// Checks that every override was used and, after a failure, that no
    /// out-pointer was written; after a success frees what was handed out.
    fn finish(self, ok: bool, label: &str) -> (Vec<&'static str>, usize) {
        let used = self.used.borrow();
        for (name, _) in &self.over {
            assert!(used.contains(name), "{label}: no argument `{name}`");
        }
        for (name, slot) in self.outs.borrow().iter() {
            if ok {
                slot.finish();
            } else {
                assert!(slot.untouched(), "{label}: `{name}` was written");
            }
        }
        (self.required.into_inner(), self.lends.get())
    }
}

/// How the library exports an array as a DLPack tensor.
type Export<T> = extern "C" fn(*const nnx_array, *mut *mut T) -> nnx_status;

fn kept_cstr(c: *const CString) -> *const c_char {
    // SAFETY: `c` is kept by the call.
    unsafe { &*c }.as_ptr()
}

// ---------------------------------------------------------------------------
// Rows

type CallFn = fn(&Call) -> nnx_status;
/// What a successful case checks of the call's results.
type Check = Box<dyn Fn(&Call)>;

struct Case {
    over: Vec<Arg>,
    want: nnx_status,
    needle: String,
    check: Option<Check>,
}

impl Case {
    fn new(over: &[Arg], want: nnx_status, needle: &str) -> Case {
        let (over, needle) = (over.to_vec(), needle.to_owned());
        Case {
            over,
            want,
            needle,
            check: None,
        }
    }
}

enum Body {
    /// A call described by its arguments (see `row!`).
    Call(CallFn),
    /// A function whose NULL is a no-op that leaves the message alone.
    Noop(fn()),
    /// A function checked by a test of its own.
    Custom(fn()),
}

struct Row {
    name: &'static str,
    body: Body,
    cases: Vec<Case>,
    also: Vec<fn()>,
    after: Option<fn(&Call)>,
    consumes: bool,
}

/// `row!(f(arg: how(values), ...))`: a row calling `f` with each argument
/// from `c.how("arg", values)`, so the argument's name is the header's.
macro_rules! row {
    ($f:ident($($arg:ident: $how:ident $(($($x:expr),*))?),* $(,)?)) => {
        Row::new(stringify!($f), Body::Call(|c| $f($(c.$how(stringify!($arg) $(, $($x),*)?)),*)))
    };
}

/// A row for a `_free` / `_release` function, called on NULL.
macro_rules! noop {
    ($f:ident) => {
        Row::new(stringify!($f), Body::Noop(|| $f(Handle::null())))
    };
}

fn num<T: TryInto<i128>>(value: T) -> V {
    N(value.try_into().unwrap_or_else(|_| unreachable!()))
}

impl Row {
    fn new(name: &'static str, body: Body) -> Row {
        Row {
            name,
            body,
            cases: Vec::new(),
            also: Vec::new(),
            after: None,
            consumes: false,
        }
    }

    /// One argument given `v` fails with `want` and a message holding
    /// `needle`.
    fn bad(self, name: &'static str, v: V, want: nnx_status, needle: impl AsRef<str>) -> Row {
        self.bads(&[(name, v)], want, needle)
    }

    /// The same, with these arguments given other values.
    fn bads(mut self, over: &[Arg], want: nnx_status, needle: impl AsRef<str>) -> Row {
        self.cases.push(Case::new(over, want, needle.as_ref()));
        self
    }

    /// The call with these arguments succeeds, and `check` holds of it.
    fn good(mut self, over: &[Arg], check: impl Fn(&Call) + 'static) -> Row {
        self = self.bads(over, NNX_OK, "");
        self.cases.last_mut().unwrap().check = Some(Box::new(check));
        self
    }

    fn with(self, cases: impl FnOnce(Row) -> Row) -> Row {
        cases(self)
    }

    /// `case` applied for each item in turn.
    fn each<T>(self, items: impl IntoIterator<Item = T>, case: impl Fn(Row, T) -> Row) -> Row {
        items.into_iter().fold(self, case)
    }

    /// For each `(v, needle)`: `name` given `v` fails with `want` and a
    /// message holding `needle`.
    fn bad_all<N: AsRef<str>>(
        self,
        name: &'static str,
        want: nnx_status,
        cases: impl IntoIterator<Item = (V, N)>,
    ) -> Row {
        self.each(cases, |r, (v, needle)| r.bad(name, v, want, needle))
    }

    /// Each string of `BAD_UTF8` given to `name` fails with a message
    /// holding `needle`.
    fn bad_utf8(self, name: &'static str, needle: &str) -> Row {
        self.bad_all(name, UTF8, BAD_UTF8.map(|bad| (txt(bad), needle)))
    }

    /// The handle argument `name` given `which` fails with `WRONG_KIND`.
    fn wrong(self, name: &'static str, which: H, needle: &str) -> Row {
        self.bad(name, Hd(which), WRONG_KIND, needle)
    }

    /// A hand-written check beside the table's.
    fn also(mut self, f: fn()) -> Row {
        self.also.push(f);
        self
    }

    /// Undoes what a successful call did (a `_retain`).
    fn after(mut self, f: fn(&Call)) -> Row {
        self.after = Some(f);
        self
    }

    /// The call takes ownership even when it fails (DLPack imports).
    fn consumes(mut self) -> Row {
        self.consumes = true;
        self
    }

    fn check(&self) {
        match self.body {
            Body::Noop(f) => {
                let primed = prime_error();
                f();
                assert_eq!(last_error(), primed, "{}: NULL was not a no-op", self.name);
            }
            Body::Custom(f) => f(),
            Body::Call(call) => {
                for name in self.run(call, &Case::new(&[], NNX_OK, "")) {
                    let needle = format!("`{name}`|NULL");
                    self.run(call, &Case::new(&[(name, Null)], NULL_ARG, &needle));
                }
                for case in &self.cases {
                    self.run(call, case);
                }
            }
        }
        for f in &self.also {
            f();
        }
    }

    /// Runs one case on a fresh fixture; gives the required pointers.
    fn run(&self, call: CallFn, case: &Case) -> Vec<&'static str> {
        let label = format!("{} {:?}", self.name, case.over);
        let f = Fix::new();
        let before = f.fingerprint();
        let released = f.counter.get();
        let c = Call::new(&f, case.over.clone());
        let primed = prime_error();
        let status = call(&c);
        let message = last_error();
        let (got, want) = (status_name(status), status_name(case.want));
        assert_eq!(
            status, case.want,
            "{label}: {got} ({message:?}), expected {want}"
        );
        let ok = status == NNX_OK;
        if ok {
            if let Some(check) = &case.check {
                check(&c);
            }
            if let Some(after) = self.after {
                after(&c);
            }
        } else {
            let fresh = message != primed && !message.is_empty();
            assert!(fresh, "{label}: no message of its own");
            for needle in case.needle.split('|').filter(|n| !n.is_empty()) {
                let found = match needle.strip_prefix('^') {
                    Some(start) => message.starts_with(start),
                    None => message.contains(needle),
                };
                assert!(found, "{label}: {message:?} lacks {needle:?}");
            }
            let now = f.fingerprint();
            assert_eq!(now, before, "{label}: a failed call changed its inputs");
            if !self.consumes {
                assert_eq!(f.counter.get(), released, "{label}: a release callback ran");
            }
        }
        let (required, lends) = c.finish(ok, &label);
        f.finish(if ok { lends } else { 0 }, &label);
        required
    }
}

// ---------------------------------------------------------------------------
// Cases shared by families of functions

const F32: i128 = NNX_DTYPE_F32 as i128;
const U8: i128 = NNX_DTYPE_U8 as i128;

/// Shapes and dtypes no array constructor takes.
fn bad_shapes(r: Row, with_bytes: bool) -> Row {
    let cases: [(i128, &[i64], &str); 12] = [
        (F32, &[2, -1], "negative"),
        (U8, &[i64::MIN], "negative"),
        (F32, &[0, -3], "negative"),
        (F32, &[-1], "negative"),
        (F32, &[2, -3], "negative"),
        (F32, &[i64::MAX, 2], "overflow"),
        (U8, &[1 << 32, 1 << 32], "overflow"),
        (NNX_DTYPE_F64 as i128, &[1 << 61], "overflow"),
        (F32, &[0, i64::MAX, 2], "overflow"),
        (F32, &[i64::MAX, 0, 2], "overflow"),
        (F32, &[1 << 40, 1 << 40], "overflow"),
        (F32, &[3, 1 << 62, 4], "overflow"),
    ];
    let unknown = [0, 16, 99, 999, u32::MAX as i128].map(|d| (d, &[2][..], "unknown dtype"));
    let all = cases.into_iter().chain(unknown);
    r.each(all, |r, (dtype, shape, needle)| {
        let mut over = vec![("dtype", N(dtype)), ("shape", Ints(shape.to_vec()))];
        if with_bytes {
            over.push(("nbytes", num(64)));
        }
        r.bads(&over, INVALID, needle)
    })
}

/// Byte counts that disagree with the shape `[2, 3]` of f32.
fn mismatched_bytes(r: Row, counts: &[usize]) -> Row {
    let needles = counts.iter().map(|n| (num(*n), format!("24|{n}")));
    r.bad_all("nbytes", SHAPE, needles)
}

/// Keys that are wrong wherever a path goes: not UTF-8, of no known kind,
/// a NULL string with a length (alone, and after keys that would make new
/// nested states), a NULL or absurdly long key array.
fn bad_keys(r: Row) -> Row {
    let utf8 = BAD_UTF8.map(|bad| [k(&[Raw(bad)]), k(&[S("b"), S("new"), Raw(bad)])]);
    let r = r.each(utf8.concat(), |r, v| r.bad("path", v, UTF8, "UTF-8"));
    let r = r.each([2, 7, u32::MAX], |r, kind| {
        let needle = format!("key kind {kind}");
        let paths = [
            k(&[Kind(kind)]),
            k(&[S("b"), Kind(kind)]),
            k(&[S("brand"), S("new"), Kind(kind)]),
        ];
        r.each(paths, |r, v| r.bad("path", v, INVALID, &needle))
    });
    r.bad("path", k(&[S("b"), NullStr(3)]), NULL_ARG, "`key.str`")
        .bad("path", k(&[NullStr(1)]), NULL_ARG, "`key.str`")
        .bads(&[("path", Null), ("path_len", num(3))], NULL_ARG, "`path`")
        .bad("path_len", num(usize::MAX / 8), INVALID, "too large")
}

/// `/`-separated paths that are wrong wherever one goes.
fn bad_texts(r: Row) -> Row {
    bad_texts_in(r, "path")
}

/// The same, given to the text argument `name`.
fn bad_texts_in(r: Row, name: &'static str) -> Row {
    let new = BAD_UTF8.map(|bad| txt([b"b/new/", bad].concat()));
    let empty = ["a//b", "/a", "a/", "/", "b//x", "new//x", "//"];
    r.bad(name, txt(b"b/\xe2\x82"), UTF8, "UTF-8|path")
        .bad_utf8(name, "UTF-8")
        .each(new, |r, v| r.bad(name, v, UTF8, "UTF-8"))
        .each(empty, |r, text| {
            r.bad(name, txt(text), INVALID, format!("empty component|{text}"))
        })
}

/// A path, as keys or as text.
fn at(keyed: bool, keys: &[K<'static>], text: &str) -> V {
    if keyed {
        k(keys)
    } else {
        txt(text)
    }
}

/// Paths that run through a leaf (`a` is a variable, `b/x` a bare array).
const THROUGH: [(&[K<'static>], &str, &str); 5] = [
    (&[S("a"), S("b")], "a/b", "a"),
    (&[S("a"), I(0), S("c")], "a/0/c", "a"),
    (&[S("b"), S("x"), S("y")], "b/x/y", "b/x"),
    (
        &[S("b"), I(1), S("deeper"), S("still")],
        "b/1/deeper/still",
        "b/1",
    ),
    (&[S("a"), S("new"), I(0)], "a/new/0", "a"),
];

fn through(r: Row, keyed: bool) -> Row {
    r.each(THROUGH, |r, (keys, text, leaf)| {
        let needle = format!("path '{text}' runs through the leaf at '{leaf}'");
        r.bad("path", at(keyed, keys, text), THROUGH_LEAF, needle)
    })
}

/// A path as keys and as text.
type Place = (&'static [K<'static>], &'static str);

/// Paths where nothing is (the string "1" is not the int 1).
const MISSING: [Place; 5] = [
    (&[S("nope")], "nope"),
    (&[S("b"), S("nope")], "b/nope"),
    (&[S("b"), I(2)], "b/2"),
    (&[S("b"), S("1")], ""),
    (&[S("nope"), S("deeper")], "nope/deeper"),
];

fn missing(r: Row, keyed: bool) -> Row {
    r.each(places(keyed, MISSING), |r, (v, text)| {
        r.bad("path", v, NOT_FOUND, format!("nothing at|{text}"))
    })
}

/// The paths as keys, or as text without those only keys can give.
fn places(keyed: bool, paths: impl IntoIterator<Item = Place>) -> Vec<(V, &'static str)> {
    let paths = paths.into_iter().filter(|p| keyed || !p.1.is_empty());
    paths.map(|(ks, t)| (at(keyed, ks, t), t)).collect()
}

/// `contains` answers false for paths through leaves and where nothing is.
fn absent(r: Row, keyed: bool) -> Row {
    let paths = THROUGH.iter().map(|t| (t.0, t.1)).chain(MISSING);
    r.each(places(keyed, paths), |r, (v, _)| {
        r.good(&[("path", v)], says("out_contains", false))
    })
}

/// The state argument a view whose place is gone or holds a leaf.
fn views(r: Row, arg: &'static str) -> Row {
    let r = r.bad(arg, Hd(Dead), NOT_FOUND, "no longer exists");
    r.bad(arg, Hd(LeafView), WRONG_KIND, "'b'|leaf")
}

/// The empty path for a function that needs a place: as text, or as keys
/// NULL and not, each with length 0.
fn no_place(r: Row, keyed: bool, needle: &str) -> Row {
    let r = r.bads(&whole(keyed), INVALID, needle);
    if keyed {
        r.bad("path_len", num(0), INVALID, needle)
    } else {
        r
    }
}

/// Metadata and type names that are not UTF-8, or empty.
fn bad_names(r: Row) -> Row {
    r.bad_utf8("name", "name")
        .bad("name", txt(""), INVALID, "empty")
}

/// Metadata names a reader does not find.
fn absent_names(r: Row) -> Row {
    r.bad_utf8("name", "name")
        .bad("name", txt("absent"), NOT_FOUND, "absent")
        .bad("name", txt(""), NOT_FOUND, "")
}

/// Type ids the registry does not have.
fn unknown_ids(r: Row, arg: &'static str) -> Row {
    let ids = UNKNOWN_IDS.map(|id| (num(id), id.to_string()));
    r.bad_all(arg, UNKNOWN, ids)
}

/// Indexes out of range for a list of `len` entries.
fn past_end(r: Row, len: usize) -> Row {
    let indexes = [len, len + 1, len + 7, usize::MAX];
    r.bad_all("index", RANGE, indexes.map(|i| (num(i), i.to_string())))
}

// ---------------------------------------------------------------------------
// Checks of what a call handed out

/// Checks that the call wrote `want` to the out-pointer `name`.
fn gives<T: Sentinel + PartialEq + std::fmt::Debug>(name: &'static str, want: T) -> impl Fn(&Call) {
    move |c| assert_eq!(c.got::<T>(name), want, "`{name}`")
}

/// Checks that the call handed out the string `want` through `name`.
fn text_is(name: &'static str, want: impl AsRef<str> + 'static) -> impl Fn(&Call) {
    move |c| assert_eq!(text_of(c.got_own(name)), want.as_ref(), "`{name}`")
}

/// Checks that the metadata value `which` now reads as `want`.
fn reads(which: H, want: &'static str) -> impl Fn(&Call) {
    move |c| assert_eq!(meta_repr(c.f.raw(which)), want, "{which:?}")
}

/// Checks that the call wrote `want` to the `bool` out-pointer `name`.
fn says(name: &'static str, want: bool) -> impl Fn(&Call) {
    move |c| assert_eq!(c.got_bool(name), want, "`{name}`")
}

fn nbytes(array: *const nnx_array) -> usize {
    let mut n = SENTINEL;
    ok!(nnx_array_nbytes(array, &mut n));
    n
}

/// The leaf counts of the states handed out through `out_states`.
fn counts(c: &Call) -> Vec<usize> {
    let states = c.got_owns::<nnx_state>("out_states");
    states.into_iter().map(|s| leaves(s)).collect()
}

/// Checks that `Plain` now holds a value of this kind.
fn holds(kind: nnx_value_kind) -> impl Fn(&Call) {
    move |c| assert_eq!(value_kind(c.f.raw(Plain)), kind)
}

/// Checks that the filter handed out selects `n` leaves of `Main`.
fn selects(n: usize) -> impl Fn(&Call) {
    move |c| assert_eq!(selected(c), n)
}

/// How many leaves of `Main` the filter handed out selects.
fn selected(c: &Call) -> usize {
    let (main, filter) = (c.f.raw(Main), c.got_own::<nnx_filter>("out_filter"));
    leaves(St(made(|o| nnx_state_filter(main, &filter, 1, o))).ptr())
}

/// `len` bytes the library lends at `text`.
fn lent_text(text: *const c_char, len: usize) -> String {
    // SAFETY: the library lends `len` bytes at `text`.
    let bytes = unsafe { std::slice::from_raw_parts(text.cast::<u8>(), len) };
    String::from_utf8(bytes.to_vec()).unwrap()
}

// ---------------------------------------------------------------------------
// The table

fn array_rows() -> Vec<Row> {
    // Bad shapes, and byte counts other than the 24 of f32[2, 3].
    let sized = |r: Row| bad_shapes(mismatched_bytes(r, &[0, 4, 20, 23, 25, 32, 64]), true);
    vec![
        row!(nnx_array_new(dtype: n(NNX_DTYPE_F32), shape: ints(&[2, 3]), ndim: len, data: buf,
            nbytes: n(24usize), out_array: own))
        .with(sized)
        .good(&[("shape", Null), ("ndim", num(0)), ("nbytes", num(4))], |c| {
            let data = data_ptr(c.got_own("out_array"));
            assert_ne!(data, c.f.buf.as_ptr().cast(), "a copy");
            // SAFETY: the 4 bytes of a scalar f32, read while the array lives.
            assert_eq!(unsafe { data.cast::<f32>().read_unaligned() }, 2.5, "a scalar needs no shape");
            let mut ndim = SENTINEL;
            ok!(nnx_array_ndim(c.got_own("out_array"), &mut ndim));
            assert_eq!(ndim, 0);
        })
        .good(&[("shape", Ints(vec![0, 5])), ("data", Null), ("nbytes", num(0))], |c| {
            assert_eq!(nbytes(c.got_own("out_array")), 0, "no bytes need no data pointer")
        })
        .bads(&[("shape", Null), ("ndim", num(0)), ("data", Null), ("nbytes", num(0))],
            SHAPE, "")
        .bad("ndim", num(usize::MAX / 4), INVALID, "too large")
        .bads(&[("dtype", N(U8)), ("shape", Ints(vec![1])), ("nbytes", num(usize::MAX))],
            INVALID, "data"),
        row!(nnx_array_zeros(dtype: n(NNX_DTYPE_I32), shape: ints(&[4]), ndim: len, out_array: own))
        .with(|r| bad_shapes(r, false))
        .good(&[("dtype", num(NNX_DTYPE_I64)), ("shape", Null), ("ndim", num(0))], |c| {
            assert_eq!(nbytes(c.got_own("out_array")), 8)
        })
        .bads(&[("dtype", N(U8)), ("shape", Ints(vec![i64::MAX]))], OOM,
            "cannot allocate")
        .bads(&[("dtype", N(U8)), ("shape", Ints(vec![1 << 46]))], OOM, "cannot allocate")
        .bads(&[("dtype", N(U8)), ("shape", Ints(vec![1 << 62]))], OOM, "")
        .bad("ndim", num(usize::MAX), INVALID, "too large")
        .bad("ndim", num(usize::MAX / 8 + 1), INVALID, "too large"),
        row!(nnx_array_wrap(dtype: n(NNX_DTYPE_F32), shape: ints(&[2, 3]), ndim: len, data: buf,
            nbytes: n(24usize), writable: b(true), release: rel, user_data: ud, out_array: own))
        .with(sized)
        .good(&[("dtype", N(U8)), ("shape", Ints(vec![0])), ("data", Null), ("nbytes", num(0)),
            ("writable", B(false))], |_| {})
        .good(&[("release", Null), ("user_data", Null)], |c| {
            let data = data_ptr(c.got_own("out_array"));
            assert_eq!(data, c.f.buf.as_ptr().cast(), "the caller's memory, not a copy")
        }),
        row!(nnx_array_wrap_many(count: n(2usize), dtypes: ints(&[F32 as i64, U8 as i64]),
            shapes: ints(&[2, 3, 4]), ndims: ints(&[2, 1]), data: bufs(2), nbytes: ints(&[24, 4]),
            writable: bools(&[true, false]), release: rels(2), user_data: uds(2), out_arrays: owns))
        .good(&[], |c| {
            let arrays = c.got_owns::<nnx_array>("out_arrays");
            let base = c.f.buf.as_ptr();
            assert_eq!(data_ptr(arrays[0]), base.cast(), "the caller's memory, not a copy");
            assert_eq!(data_ptr(arrays[1]), base.wrapping_add(32).cast());
            assert_eq!((nbytes(arrays[0]), nbytes(arrays[1])), (24, 4));
            let mut writable = false;
            ok!(nnx_array_is_writable(arrays[1], &mut writable));
            assert!(!writable, "each array's own flag");
        })
        .good(&[("release", Null), ("user_data", Null)], |_| {})
        .good(&[("count", num(0)), ("dtypes", Null), ("shapes", Null), ("ndims", Null), ("data", Null),
            ("nbytes", Null), ("writable", Null), ("release", Null), ("user_data", Null),
            ("out_arrays", Null)], |_| {})
        .bad("nbytes", Ints(vec![24, 5]), SHAPE, "^array 1 of 2: uint8 array of shape [4] needs 4 bytes, got 5")
        .bad("data", Ints(vec![0, -1]), NULL_ARG, "^array 1 of 2: argument `data` is NULL")
        .bad("dtypes", Ints(vec![F32 as i64, 999]), INVALID, "^array 1 of 2")
        .bad("user_data", Null, NULL_ARG, "`user_data`")
        .bad("ndims", Ints(vec![i64::MAX, 1]), INVALID, "too large"),
        row!(nnx_array_wrap_device(dtype: n(NNX_DTYPE_F32), shape: ints(&[2, 3]), ndim: len,
            data: buf, nbytes: n(24usize), device_type: n(2i32), device_id: n(0i32),
            writable: b(true), release: rel, user_data: ud, out_array: own))
        .with(sized),
        row!(nnx_array_dtype(array: arr, out_dtype: out))
            .good(&[], |c| assert_eq!(c.got::<u32>("out_dtype"), NNX_DTYPE_F32)),
        row!(nnx_array_ndim(array: arr, out_ndim: out)),
        row!(nnx_array_shape(array: arr, out_shape: out)),
        row!(nnx_array_nbytes(array: arr, out_nbytes: out)),
        row!(nnx_array_data(array: arr, out_data: out))
            .good(&[("array", Hd(ReadOnly))], |c| {
                let data = c.got::<*const c_void>("out_data");
                assert_eq!(data, c.f.memory_of(ReadOnly), "read-only memory reads")
            }),
        row!(nnx_array_data_mut(array: arr, out_data: out))
            .bad("array", Hd(ReadOnly), READ_ONLY, "read-only")
            .good(&[], |c| {
                let data = c.got::<*mut c_void>("out_data");
                assert_eq!(data.cast_const(), c.f.memory_of(Lent), "the lent memory")
            })
            .good(&[("array", Hd(KeyData))], |c| assert!(!c.got::<*mut c_void>("out_data").is_null())),
        row!(nnx_array_is_writable(array: arr, out_writable: outb))
            .good(&[], |c| assert!(c.got_bool("out_writable")))
            .good(&[("array", Hd(ReadOnly))], |c| assert!(!c.got_bool("out_writable")))
            .good(&[("array", Hd(KeyData))], |c| assert!(c.got_bool("out_writable"))),
        row!(nnx_array_retain(array: arr)).after(|c| nnx_array_release(c.f.raw(Lent))),
        noop!(nnx_array_release),
        row!(nnx_array_device(array: arr, out_device_type: out, out_device_id: out))
            .good(&[], |c| assert_eq!((c.got::<i32>("out_device_type"), c.got::<i32>("out_device_id")), (1, 0)))
            .good(&[("array", Hd(DeviceArr))], |c| {
                assert_eq!((c.got::<i32>("out_device_type"), c.got::<i32>("out_device_id")), (2, 3))
            }),
        row!(nnx_array_to_dlpack(array: arr, out_tensor: own)),
        row!(nnx_array_to_dlpack_legacy(array: arr, out_tensor: own)),
        row!(nnx_array_from_dlpack(tensor: tensor(nnx_array_to_dlpack), out_array: own)).consumes(),
        row!(nnx_array_from_dlpack_legacy(tensor: tensor(nnx_array_to_dlpack_legacy), out_array: own))
            .consumes(),
        row!(nnx_array_from_dlpack_notify(tensor: tensor(nnx_array_to_dlpack), release: rel, user_data: ud,
            out_array: own))
        .consumes()
        .good(&[("release", Null), ("user_data", Null)], |_| {}),
        row!(nnx_array_from_dlpack_legacy_notify(tensor: tensor(nnx_array_to_dlpack_legacy), release: rel,
            user_data: ud, out_array: own))
        .consumes(),
    ]
}

fn type_rows() -> Vec<Row> {
    vec![
        row!(nnx_type_register(name: text("ContractType"), parent: n(NNX_TYPE_PARAM), out_type: out))
            .with(bad_names)
            .with(|r| unknown_ids(r, "parent"))
            .bads(&[("name", txt("ContractType")), ("parent", num(NNX_TYPE_BATCH_STAT))],
                CONFLICT, "ContractType|Param|BatchStat")
            .bads(&[("name", txt("Param")), ("parent", num(NNX_TYPE_CACHE))], CONFLICT, "")
            .bads(&[("name", txt("Variable")), ("parent", num(NNX_TYPE_PARAM))], CONFLICT, "")
            .good(&[("name", txt("Param")), ("parent", num(NNX_TYPE_VARIABLE))], |c| {
                assert_eq!(c.got::<u32>("out_type"), NNX_TYPE_PARAM, "built-ins keep their ids")
            })
            .good(&[], |c| {
                let (mut id, mut parent) = (SENTINEL_U32, SENTINEL_U32);
                ok!(nnx_type_lookup(cstr("ContractType").as_ptr(), &mut id));
                assert_eq!(c.got::<u32>("out_type"), id, "same name, same parent: same id");
                ok!(nnx_type_parent(id, &mut parent));
                assert_eq!(parent, NNX_TYPE_PARAM, "a conflict changed the parent");
                let (mut name, mut sub) = (null(), BoolOut::new());
                ok!(nnx_type_name(id, &mut name));
                ok!(nnx_type_is_subtype(id, NNX_TYPE_VARIABLE, sub.ptr()));
                assert_eq!((text_of(name).as_str(), sub.get()), ("ContractType", true));
            })
            .also(failed_registrations_register_nothing),
        row!(nnx_type_lookup(name: text("Param"), out_type: out))
            .with(absent_names)
            .bad("name", txt("param"), NOT_FOUND, "param")
            .good(&[], |c| assert_eq!(c.got::<u32>("out_type"), NNX_TYPE_PARAM)),
        row!(nnx_type_name(type_id: n(NNX_TYPE_PARAM), out_name: out))
            .with(|r| unknown_ids(r, "type_id"))
            .good(&[], |c| assert_eq!(text_of(c.got("out_name")), "Param")),
        row!(nnx_type_parent(type_id: n(NNX_TYPE_PARAM), out_parent: out))
            .with(|r| unknown_ids(r, "type_id"))
            .good(&[("type_id", num(NNX_TYPE_VARIABLE))], gives("out_parent", NNX_TYPE_NONE)),
        row!(nnx_type_is_subtype(type_id: n(NNX_TYPE_PARAM), ancestor: n(NNX_TYPE_VARIABLE),
            out_result: outb))
            .with(|r| unknown_ids(r, "type_id"))
            .with(|r| unknown_ids(r, "ancestor"))
            .each(UNKNOWN_IDS, |r, id| {
                r.bads(&[("type_id", num(id)), ("ancestor", num(id))], UNKNOWN, "")
            })
            .good(&[], |c| assert!(c.got_bool("out_result"))),
        row!(nnx_type_count(out_count: out)).good(&[], |c| assert!(c.got::<usize>("out_count") >= 12)),
    ]
}

/// Failed registrations register nothing: NULL out, an unknown parent.
fn failed_registrations_register_nothing() {
    let owned = cstr("ContractNeverRegistered");
    let (name, mut id) = (owned.as_ptr(), SENTINEL_U32);
    fails!(
        nnx_type_register(name, NNX_TYPE_PARAM, null_mut()),
        NNX_ERR_NULL_ARGUMENT
    );
    fails!(
        nnx_type_register(name, UNKNOWN_TYPE, &mut id),
        NNX_ERR_UNKNOWN_TYPE
    );
    fails!(nnx_type_lookup(name, &mut id), NNX_ERR_KEY_NOT_FOUND);
    assert_eq!(id, SENTINEL_U32);
}

/// Key data and names jax refuses; checked by `nnx_variable_new_key` and
/// `nnx_variable_set_key`, whose variable `which` gives.
fn bad_key_data(r: Row, which: fn(&Call) -> *mut nnx_variable) -> Row {
    let zeros = |dtype| Zeros(dtype, vec![2]);
    let u32s = |shape: &[i64]| Zeros(NNX_DTYPE_U32, shape.to_vec());
    let key = |shape, name| [("key_data", u32s(shape)), ("impl_name", txt(name))];
    let r = r
        .bad("key_data", zeros(NNX_DTYPE_F32), INVALID, "uint32")
        .bad("key_data", zeros(NNX_DTYPE_U64), INVALID, "got uint64")
        .bads(&key(&[], "my_prng"), INVALID, "scalar")
        .bad("impl_name", txt(""), INVALID, "empty")
        .bad("impl_name", txt(b"fry\xff"), UTF8, "impl_name");
    // jax's own implementations have their key shape last.
    let jax: [(&str, &[i64], &str); 7] = [
        ("threefry2x32", &[4], "[..., 2]"),
        ("threefry2x32", &[2, 1], "[..., 2]"),
        ("rbg", &[2], "[..., 4]"),
        ("unsafe_rbg", &[3, 2], "[..., 4]"),
        ("threefry4x32", &[2], "[..., 4]"),
        ("philox2x32", &[2], "[..., 1]"),
        ("philox4x32", &[4], "[..., 2]"),
    ];
    let r = r.each(jax, |r, (name, shape, want)| {
        r.bads(&key(shape, name), INVALID, want)
    });
    // Custom implementations take any uint32 data of at least one
    // dimension, batches of jax's own their key shape last.
    let custom = [("my_prng", &[5][..]), ("rbg", &[2, 3, 4])];
    r.each(custom, |r, (name, shape)| {
        let check = move |c: &Call| assert_eq!(get_key(which(c)).1, name);
        r.good(&key(shape, name), check)
    })
}

/// Opaque type names the library refuses.
fn bad_type_names(r: Row) -> Row {
    let r = r.bad("type_name", txt(""), INVALID, "empty");
    r.bad("type_name", txt(b"py\xc3"), UTF8, "type_name")
}

/// A getter of one kind on `WithMeta`'s entries of other kinds.
fn other_kinds(r: Row, entries: &[(&'static str, &'static str)]) -> Row {
    r.each(entries, |r, (name, needle)| {
        r.bad("name", txt(name), WRONG_KIND, *needle)
    })
}

/// A variable's metadata entry as JSON.
fn entry_json(var: *const nnx_variable, name: &str) -> String {
    let name = cstr(name);
    let json = made(|o| nnx_variable_get_metadata_json(var, name.as_ptr(), o));
    LibStr(json).text()
}

/// A variable's metadata entry as its repr.
fn entry_repr(var: *const nnx_variable, name: &str) -> String {
    meta_repr(meta_made(|out| nnx_variable_get_metadata(var, cstr(name).as_ptr(), out)).ptr())
}

const FORM: &str =
    r#"["map","lr",0.001,"betas",["tuple",0.9,0.999],"clip",["float","0x7ff0000000000000"]]"#;

/// `levels` nested lists around null, as JSON.
fn deep_json(levels: usize) -> String {
    format!("{}null{}", "[\"list\",".repeat(levels), "]".repeat(levels))
}

fn variable_rows() -> Vec<Row> {
    vec![
        row!(nnx_variable_new(type_id: n(NNX_TYPE_PARAM), value: opt(Lent), out_variable: own))
            .with(|r| unknown_ids(r, "type_id"))
            .each(UNKNOWN_IDS, |r, id| {
                r.bads(&[("type_id", num(id)), ("value", Null)], UNKNOWN, "")
            })
            .good(&[("value", Null)], |c| {
                assert_eq!(value_kind(c.got_own("out_variable")), NNX_VALUE_NONE)
            }),
        row!(nnx_variable_type(variable: var, out_type: out)),
        row!(nnx_variable_copy(variable: var, out_variable: own)).each([WithMeta, KeyVar, Opaque],
            |r, h| r.good(&[("variable", Hd(h))], move |c| {
                let (original, copy) = (c.f.raw(h), c.got_own::<nnx_variable>("out_variable"));
                let before = variable_print(original);
                assert_eq!(variable_print(copy), before, "same type, shared value, equal metadata");
                ok!(nnx_variable_set_metadata_str(copy, cstr("added").as_ptr(), cstr("x").as_ptr()));
                assert_eq!(variable_print(original), before, "the copy's metadata is its own");
            })),
        row!(nnx_variable_change_counter(out_counter: out)).good(&[], |c| {
            let counter = c.got::<*const u64>("out_counter");
            // SAFETY: the library's counter, valid for the process; read as
            // the atomic it is.
            let read = || unsafe { &*counter.cast::<std::sync::atomic::AtomicU64>() }.load(Ordering::SeqCst);
            let before = read();
            ok!(nnx_variable_set_value(c.f.raw(Plain), null_mut()));
            assert!(read() > before, "a change counts");
        }),
        row!(nnx_variable_revision(variable: var, out_revision: out)).good(&[], |c| {
            let before = c.got::<u32>("out_revision");
            ok!(nnx_variable_set_value(c.f.raw(Plain), null_mut()));
            assert!(revision(c.f.raw(Plain)) > before, "a change moves it");
        }),
        row!(nnx_variable_revisions(variables: list(&[Plain, KeyVar]), count: len, out_revisions: outv(2)))
            .bad("variables", List(vec![Some(Plain), None]), NULL_ARG, "`variables[1]`")
            .bad("count", num(usize::MAX / 2), INVALID, "too large")
            .good(&[("variables", Null), ("count", num(0)), ("out_revisions", Null)], |_| {})
            .good(&[], |c| {
                let got = c.gotv::<u32>("out_revisions");
                assert_eq!(got[..2], [revision(c.f.raw(Plain)), revision(c.f.raw(KeyVar))]);
            }),
        row!(nnx_variable_get_value(variable: var, out_value: own))
            .bad("variable", Hd(KeyVar), WRONG_KIND,
                "typed PRNG key (threefry2x32)|nnx_variable_get_key")
            .bad("variable", Hd(Opaque), WRONG_KIND,
                "opaque value (test:thing)|nnx_variable_get_opaque")
            .good(&[("variable", Hd(NoValue))], |c| {
                assert!(c.got_own::<nnx_array>("out_value").is_null())
            }),
        row!(nnx_variable_set_value(variable: var, value: opt(Lent)))
            .good(&[("value", Null)], holds(NNX_VALUE_NONE)),
        row!(nnx_variable_value_kind(variable: var, out_kind: out))
            .each([(KeyVar, NNX_VALUE_KEY), (Opaque, NNX_VALUE_OPAQUE), (NoValue, NNX_VALUE_NONE),
                (Plain, NNX_VALUE_ARRAY)],
                |r, (h, kind)| r.good(&[("variable", Hd(h))], gives("out_kind", kind))),
        row!(nnx_variable_new_key(type_id: n(NNX_TYPE_RNG_KEY), key_data: h(KeyData),
            impl_name: text("threefry2x32"), out_variable: own))
            .with(|r| bad_key_data(r, |c| c.got_own("out_variable")))
            .bad("type_id", num(UNKNOWN_TYPE), UNKNOWN, ""),
        row!(nnx_variable_set_key(variable: h(KeyVar), key_data: h(KeyData),
            impl_name: text("threefry2x32")))
            .with(|r| bad_key_data(r, |c| c.f.raw(KeyVar)))
            .good(&[("variable", Hd(Plain))], holds(NNX_VALUE_KEY)),
        row!(nnx_variable_get_key(variable: h(KeyVar), out_key_data: own, out_impl_name: out))
            .bad("variable", Hd(Plain), WRONG_KIND, "an array|not a typed PRNG key")
            .bad("variable", Hd(NoValue), WRONG_KIND, "no value|not a typed PRNG key")
            .bad("variable", Hd(Opaque), WRONG_KIND, "an opaque value|not a typed PRNG key")
            .good(&[], |c| {
                assert_eq!(c.got_own::<nnx_array>("out_key_data"), c.f.raw(KeyData), "the very array");
                let name = c.got::<*const c_char>("out_impl_name");
                assert_eq!(text_of(name), "threefry2x32");
                let other = key_var(&u32_array(&[2], &[1, 1]), "threefry2x32");
                let (mut data, mut again) = (null_mut(), null());
                ok!(nnx_variable_get_key(other.ptr(), &mut data, &mut again));
                nnx_array_release(data);
                assert_eq!(name, again, "implementation names are interned");
            }),
        row!(nnx_variable_new_opaque(type_id: n(NNX_TYPE_PARAM), type_name: text("test:thing"),
            object: any, release: rel, user_data: ud, out_variable: own))
            .with(bad_type_names)
            .bad("type_id", num(UNKNOWN_TYPE), UNKNOWN, "")
            .good(&[("object", Null), ("release", Null), ("user_data", Null)], |c| {
                let got = get_opaque(c.got_own("out_variable"));
                assert_eq!(got, (null_mut(), "test:thing".to_owned()))
            }),
        row!(nnx_variable_set_opaque(variable: var, type_name: text("test:thing"), object: any,
            release: rel, user_data: ud))
            .with(bad_type_names)
            .good(&[("object", Null), ("release", Null), ("user_data", Null)],
                holds(NNX_VALUE_OPAQUE)),
        row!(nnx_variable_get_opaque(variable: h(Opaque), out_object: out, out_type_name: out))
            .bad("variable", Hd(Plain), WRONG_KIND, "an array|not an opaque value")
            .bad("variable", Hd(NoValue), WRONG_KIND, "no value|not an opaque value")
            .bad("variable", Hd(KeyVar), WRONG_KIND, "a typed PRNG key|not an opaque value")
            .good(&[], |c| assert_eq!(c.got::<*mut c_void>("out_object"), sentinel())),
        row!(nnx_variable_set_metadata_str(variable: var, name: text("tag"), value: text("x")))
            .with(bad_names)
            .bad_utf8("value", "value")
            .good(&[], |c| assert_eq!(entry_repr(c.f.raw(Plain), "tag"), "'x'"))
            .good(&[("value", txt(""))], |c| {
                assert_eq!(entry_repr(c.f.raw(Plain), "tag"), "''", "an empty value is a value");
                let tag = cstr("tag");
                let out = made(|o| nnx_variable_get_metadata_str(c.f.raw(Plain), tag.as_ptr(), o));
                assert_eq!(LibStr(out).text(), "");
                let state = new_state();
                ok!(nnx_state_set_variable_str(state.ptr(), cstr("v").as_ptr(), c.f.raw(Plain)));
                let tagged = Flt(made(|out| nnx_filter_with_tag(cstr("").as_ptr(), out)));
                let part = St(made(|out| nnx_state_filter(state.ptr(), &tagged.ptr(), 1, out)));
                assert_eq!(leaves(part.ptr()), 1, "the empty tag selects it");
            }),
        row!(nnx_variable_set_metadata_int(variable: var, name: text("n"), value: n(1i64)))
            .with(bad_names)
            .good(&[], |c| assert_eq!(entry_json(c.f.raw(Plain), "n"), "1", "read as JSON too")),
        row!(nnx_variable_set_metadata_float(variable: var, name: text("n"), value: x(1.5)))
            .with(bad_names),
        row!(nnx_variable_set_metadata_bool(variable: var, name: text("n"), value: b(true)))
            .with(bad_names),
        row!(nnx_variable_set_metadata(variable: var, name: text("out_sharding"), value: h(MTuple)))
            .with(bad_names)
            .good(&[("value", Hd(MDeep))], |_| {})
            .good(&[], |c| {
                ok!(nnx_meta_append(c.f.raw(MTuple), c.f.raw(MInt)));
                let kept = entry_repr(c.f.raw(Plain), "out_sharding");
                assert_eq!(kept, "(None, 'model')", "a variable keeps a copy");
            }),
        row!(nnx_variable_get_metadata(variable: h(WithMeta), name: text("t"), out_value: own))
            .with(absent_names)
            .good(&[], |c| assert_eq!(meta_repr(c.got_own("out_value")), "(None, 'model')")),
        // Failures leave the entry `t` as it was.
        row!(nnx_variable_set_metadata_json(variable: h(WithMeta), name: text("t"), json: bytes(FORM),
            len: len))
            .with(bad_names)
            .bad("json", txt(b"{\"lr\": 1}"), FORMAT, "not as JSON objects")
            .bad("json", txt(b"[\"list\""), FORMAT, "")
            .bad("json", txt(b"\"\xff\""), UTF8, "")
            .bad("json", txt(deep_json(NNX_MAX_DEPTH + 1)), TOO_DEEP, "")
            .good(&[], |c| {
                let var = c.f.raw(WithMeta);
                assert_eq!(entry_json(var, "t"), FORM);
                let repr = entry_repr(var, "t");
                assert_eq!(repr, "{'lr': 0.001, 'betas': (0.9, 0.999), 'clip': inf}");
            }),
        row!(nnx_variable_get_metadata_json(variable: h(WithMeta), name: text("t"), out_value: own))
            .with(absent_names)
            .good(&[], text_is("out_value", META[4].1))
            .good(&[("name", txt("i"))], text_is("out_value", "3")),
        row!(nnx_variable_get_metadata_str(variable: h(WithMeta), name: text("s"), out_value: own))
            .with(absent_names)
            .with(|r| other_kinds(r, &[("i", "int"), ("f", "float"), ("b", "bool"), ("l", "list ([1])")]))
            .good(&[], text_is("out_value", "text")),
        row!(nnx_variable_get_metadata_int(variable: h(WithMeta), name: text("i"), out_value: out))
            .with(absent_names)
            .with(|r| other_kinds(r, &[("s", "str"), ("f", "float"), ("b", "bool"), ("l", "list")]))
            .good(&[], |c| assert_eq!(c.got::<i64>("out_value"), 3)),
        row!(nnx_variable_get_metadata_float(variable: h(WithMeta), name: text("f"), out_value: out))
            .with(absent_names)
            .with(|r| other_kinds(r, &[("s", "str"), ("i", "int"), ("b", "bool")])),
        row!(nnx_variable_get_metadata_bool(variable: h(WithMeta), name: text("b"), out_value: outb))
            .with(absent_names)
            .with(|r| other_kinds(r, &[("s", "str"), ("i", "int"), ("f", "float")])),
        row!(nnx_variable_tag(variable: var, out_tag: own))
            .good(&[], |c| assert!(c.got_own::<c_char>("out_tag").is_null(), "no tag"))
            .good(&[("variable", Hd(WithMeta))], |c| {
                assert!(c.got_own::<c_char>("out_tag").is_null(), "a tuple tag is no tag")
            })
            .also(an_int_tag_is_no_tag),
        row!(nnx_variable_metadata_count(variable: h(WithMeta), out_count: out))
            .good(&[], |c| assert_eq!(c.got::<usize>("out_count"), 7)),
        row!(nnx_variable_metadata_at(variable: h(WithMeta), index: n(0usize), out_name: own,
            out_kind: out))
            .with(|r| past_end(r, 7))
            .bad("variable", Hd(Plain), RANGE, "0")
            .good(&[("index", num(6))], |c| {
                assert_eq!(text_of(c.got_own("out_name")), "tag");
                assert_eq!(c.got::<u32>("out_kind"), NNX_META_TUPLE);
            }),
        row!(nnx_variable_metadata_kind(variable: h(WithMeta), name: text("f"), out_kind: out))
            .with(absent_names)
            .each([("s", NNX_META_STR), ("i", NNX_META_INT), ("f", NNX_META_FLOAT),
                ("b", NNX_META_BOOL), ("t", NNX_META_TUPLE), ("l", NNX_META_LIST)],
                |r, (name, kind)| r.good(&[("name", txt(name))], gives("out_kind", kind))),
        row!(nnx_variable_remove_metadata(variable: h(WithMeta), name: text("s")))
            .with(absent_names),
        row!(nnx_variable_retain(variable: var)).after(|c| nnx_variable_release(c.f.raw(Plain))),
        noop!(nnx_variable_release),
    ]
}

fn an_int_tag_is_no_tag() {
    let (var, name) = (variable(NNX_TYPE_PARAM, None), cstr("tag"));
    ok!(nnx_variable_set_metadata_int(var.ptr(), name.as_ptr(), 1));
    let mut tag = sentinel();
    ok!(nnx_variable_tag(var.ptr(), &mut tag));
    assert!(tag.is_null());
}

fn meta_rows() -> Vec<Row> {
    let too_deep = format!("{} levels", NNX_MAX_DEPTH + 1);
    let (at_limit, past_int64) = (deep_json(NNX_MAX_DEPTH), "[\"list\", 18446744073709551616]");
    let (no_key, tuple_repr) = ([("key", Null), ("key_len", num(0))], "(None, 'model')");
    let (unequal, list_of_tuple) = (|| says("out_equal", false), r#"["list",null,"model"]"#);
    vec![
        row!(nnx_meta_new_null(out_meta: own)),
        row!(nnx_meta_new_bool(value: b(true), out_meta: own)),
        row!(nnx_meta_new_int(value: n(1i64), out_meta: own)),
        row!(nnx_meta_new_float(value: x(1.5), out_meta: own)),
        row!(nnx_meta_new_list(out_meta: own)),
        row!(nnx_meta_new_tuple(out_meta: own)),
        row!(nnx_meta_new_map(out_meta: own)),
        row!(nnx_meta_new_str(text: bytes("model"), len: len, out_meta: own))
            .bad("text", txt(b"Bad\xffKey"), UTF8, "")
            .good(&[("text", Null), ("len", num(0))], |c| {
                let repr = meta_repr(c.got_own("out_meta"));
                assert_eq!(repr, "''", "no bytes need no pointer")
            }),
        row!(nnx_meta_append(seq: h(MList), item: h(MInt)))
            .wrong("seq", MMap, "not a list or tuple")
            .wrong("seq", MInt, "not a list or tuple")
            .bad("item", Hd(MDeep), TOO_DEEP, &too_deep)
            .good(&[], reads(MList, "[1, 5]")),
        row!(nnx_meta_map_set(map: h(MMap), key: bytes("k"), key_len: len, value: h(MInt)))
            .wrong("map", MList, "")
            .bad("key", txt(b"Bad\xffKey"), UTF8, "key")
            .bad("value", Hd(MDeep), TOO_DEEP, &too_deep)
            // An empty key needs no pointer; a key set again keeps its place.
            .good(&no_key, reads(MMap, "{'a': 1, '': 5}"))
            .good(&[("key", txt("a"))], reads(MMap, "{'a': 5}")),
        row!(nnx_meta_get_kind(meta: h(MInt), out_kind: out))
            .good(&[], gives("out_kind", NNX_META_INT)),
        row!(nnx_meta_get_bool(meta: h(MBool), out_value: outb))
            .wrong("meta", MList, "list")
            .good(&[], says("out_value", true)),
        row!(nnx_meta_get_int(meta: h(MInt), out_value: out))
            .wrong("meta", MMap, "dict")
            .wrong("meta", MNull, "")
            .wrong("meta", MFloat, ""),
        row!(nnx_meta_get_float(meta: h(MFloat), out_value: out)).wrong("meta", MInt, ""),
        row!(nnx_meta_get_str(meta: h(MStr), out_text: out, out_len: out))
            .wrong("meta", MInt, "")
            .good(&[("meta", Json("\"\""))], |c| {
                let text = c.got::<*const c_char>("out_text");
                assert_eq!(c.got::<usize>("out_len"), 0);
                // SAFETY: an empty string points at a static empty C string.
                assert_eq!(unsafe { *text }, 0);
            }),
        row!(nnx_meta_len(meta: h(MTuple), out_len: out))
            .wrong("meta", MInt, "")
            .good(&[], gives("out_len", 2usize)),
        row!(nnx_meta_item(seq: h(MTuple), index: n(1usize), out_item: out))
            .wrong("seq", MMap, "")
            .bad("index", num(2), RANGE, "tuple of 2 items")
            .good(&[], |c| assert_eq!(meta_repr(c.got("out_item")), "'model'")),
        row!(nnx_meta_map_at(map: h(MMap), index: n(0usize), out_key: out, out_key_len: out,
            out_value: out))
        .wrong("map", MList, "")
        .bad("index", num(1), RANGE, "")
        .good(&[], |c| {
            assert_eq!(lent_text(c.got("out_key"), c.got("out_key_len")), "a");
            assert_eq!(meta_repr(c.got("out_value")), "1");
        }),
        row!(nnx_meta_map_get(map: h(MMap), key: bytes("a"), key_len: len, out_value: out))
            .wrong("map", MList, "")
            .bad("key", txt("b"), NOT_FOUND, "\"b\"")
            .bad("key", txt(b"Bad\xffKey"), UTF8, ""),
        // A list is no tuple, 5 is not 5.0.
        row!(nnx_meta_equal(a: h(MList), b: h(MList), out_equal: outb))
            .good(&[], says("out_equal", true))
            .good(&[("a", Json(list_of_tuple)), ("b", Hd(MTuple))], unequal())
            .good(&[("a", Hd(MInt)), ("b", Json("5.0"))], unequal()),
        row!(nnx_meta_clone(meta: h(MList), out_meta: own)),
        noop!(nnx_meta_free),
        row!(nnx_meta_to_string(meta: h(MMap), out_text: own))
            .good(&[("meta", Hd(MTuple))], text_is("out_text", tuple_repr)),
        row!(nnx_meta_to_json(meta: h(MMap), out_text: own))
            .good(&[], text_is("out_text", r#"["map","a",1]"#))
            .good(&[("meta", Hd(MDeep))], text_is("out_text", at_limit)),
        row!(nnx_meta_from_json(text: bytes("[\"list\", 1]"), len: len, out_meta: own))
            .bad("text", txt(b"Bad\xffKey"), UTF8, "")
            .bad("text", txt(past_int64), FORMAT, "int64")
            .bad("text", txt(deep_json(NNX_MAX_DEPTH + 1)), TOO_DEEP, "")
            .with(not_the_form)
            .good(&[("text", txt(deep_json(NNX_MAX_DEPTH)))], |c| {
                let (mut equal, deep) = (BoolOut::new(), c.f.raw(MDeep));
                ok!(nnx_meta_equal(c.got_own("out_meta"), deep, equal.ptr()));
                assert!(equal.get(), "a value at the limit reads back");
            }),
    ]
}

/// JSON that is not the form of a metadata value.
fn not_the_form(r: Row) -> Row {
    let texts = [
        "",
        "{\"a\": 1}",
        "[1]",
        "[\"set\", 1]",
        "[\"map\", \"a\", 1, \"a\", 2]",
        "[\"map\", 1, 2]",
        "[\"float\", \"nan\"]",
        "9223372036854775808",
        "-99999999999999999999",
        "[\"list\", 1",
    ];
    r.each(texts, |r, text| r.bad("text", txt(text), FORMAT, ""))
}

/// `Any` and `All` take the same arguments.
fn combined(r: Row) -> Row {
    let (second, first) = (List(vec![Some(Param), None]), List(vec![None, Some(Param)]));
    r.bad("filters", second, NULL_ARG, "`filters[1]`")
        .bad("filters", first, NULL_ARG, "`filters[0]`")
        .bad("count", num(usize::MAX / 2), INVALID, "too large")
}

/// A list of paths, `None` for NULL keys.
fn paths_of(paths: &[Option<&[K<'static>]>]) -> V {
    Paths(paths.iter().map(|p| p.map(<[_]>::to_vec)).collect())
}

fn filter_rows() -> Vec<Row> {
    let did_you_mean =
        "column 1: no variable type is named \"BatchStats\"; did you mean BatchStat?";
    let (a, a_null): (&[K<'static>], &[K<'static>]) = (&[S("a")], &[S("a"), NullStr(4)]);
    let loose = |key| [("key", key), ("exact", B(false))];
    vec![
        row!(nnx_filter_of_type(type_id: n(NNX_TYPE_PARAM), out_filter: own))
            .with(|r| unknown_ids(r, "type_id"))
            .good(&[], selects(2)),
        // The empty tag is a tag.
        row!(nnx_filter_with_tag(tag: text("stats"), out_filter: own))
            .bad_utf8("tag", "tag")
            .good(&[], selects(1))
            .good(&[("tag", txt(""))], selects(0)),
        row!(nnx_filter_path_contains(key: keys(&[S("b")]), exact: b(true), out_filter: own))
            .bad("key", k(&[NullStr(2)]), NULL_ARG, "`key.str`")
            .bads(&loose(k(&[NullStr(2)])), NULL_ARG, "`key.str`")
            .bads(&loose(k(&[Raw(b"\x80abc")])), UTF8, "")
            .bad_all("key", UTF8, BAD_UTF8.map(|b| (k(&[Raw(b)]), "UTF-8")))
            .each([2, 7, u32::MAX], |r, kind| {
                r.bad("key", k(&[Kind(kind)]), INVALID, kind.to_string())
            })
            .good(&[], selects(2))
            .good(&[("key", k(&[NullStr(0)]))], |c| {
                let state = new_state();
                set_var(&state, "a/b", &variable(NNX_TYPE_PARAM, None));
                let (empty, plain) = (path![""], c.f.raw::<nnx_variable>(Plain));
                ok!(nnx_state_set_variable(state.ptr(), empty.ptr(), 1, plain));
                let filter = c.got_own::<nnx_filter>("out_filter");
                let part = St(made(|out| nnx_state_filter(state.ptr(), &filter, 1, out)));
                let only = (String::new(), NNX_KIND_VARIABLE, plain as usize);
                assert_eq!(identities(part.ptr()), [only]);
            })
            // An int key ignores `str` and `str_len`.
            .good(&[("key", k(&[K::IntJunk(1, 5)]))], selects(1)),
        row!(nnx_filter_path_in(paths: paths(&[&[S("a")], &[S("b"), I(1)]]), count: len,
            out_filter: own))
        .bad("paths", paths_of(&[Some(a), None]), NULL_ARG, "`path`")
        .bad("paths", paths_of(&[Some(a_null)]), NULL_ARG, "`key.str`")
        .each(BAD_UTF8, |r, bad| {
            let (alone, after) = ([Raw(bad)], [S("b"), Raw(bad)]);
            let paths = [
                &[Some(a), Some(&alone)][..],
                &[Some(a), Some(&after)],
                &[Some(&alone)],
            ];
            r.each(paths, |r, p| r.bad("paths", paths_of(p), UTF8, "UTF-8"))
        })
        .each([2, 7, u32::MAX], |r, kind| {
            let (alone, after) = ([Kind(kind)], [S("b"), Kind(kind)]);
            let paths = [&[Some(a), Some(&alone)][..], &[Some(&after)]];
            r.each(paths, |r, p| {
                r.bad("paths", paths_of(p), INVALID, kind.to_string())
            })
        })
        .bad("count", num(usize::MAX / 4), INVALID, "too large")
        .good(&[], selects(2))
        .good(&[("paths", Null), ("count", num(0))], selects(0))
        // No leaf is at the empty path.
        .good(&[("paths", paths_of(&[Some(&[])]))], selects(0)),
        // Any() selects nothing, All() everything.
        row!(nnx_filter_any(filters: list(&[Param, Stats]), count: len, out_filter: own))
            .with(combined)
            .good(&[], selects(3))
            .good(&[("filters", Null), ("count", num(0))], selects(0)),
        row!(nnx_filter_all(filters: list(&[Param, Stats]), count: len, out_filter: own))
            .with(combined)
            .good(&[], selects(0))
            .good(&[("filters", Null), ("count", num(0))], selects(5)),
        row!(nnx_filter_not(filter: flt, out_filter: own)).good(&[], selects(3)),
        row!(nnx_filter_everything(out_filter: own)),
        row!(nnx_filter_nothing(out_filter: own)),
        row!(nnx_filter_callback(callback: cb, user_data: ud, release: rel, out_filter: own))
            .good(&[("user_data", Null), ("release", Null)], selects(5)),
        row!(nnx_filter_matches_variable(filter: flt, path: keys(&[S("z")]), path_len: len,
            variable: var, out_matches: outb))
        .with(bad_keys)
        .bad("filter", Hd(Seven), CALLBACK, "7|callback|'z'")
        .good(&[], says("out_matches", true))
        .good(&[("filter", Hd(Stats))], says("out_matches", false))
        .good(&[("filter", Hd(Nothing))], says("out_matches", false)),
        // A bare array is no Param.
        row!(nnx_filter_matches_array(filter: flt, path: keys(&[S("b"), S("x")]), path_len: len,
            array: arr, out_matches: outb))
        .with(bad_keys)
        .good(&[], says("out_matches", false))
        .good(&[("filter", Hd(All))], says("out_matches", true)),
        row!(nnx_filter_clone(filter: flt, out_filter: own)),
        noop!(nnx_filter_free),
        row!(nnx_filter_parse(text: text("Param | tag:x & ~none"), out_filter: own))
            .bad("text", txt("(Param"), INVALID, "column 7")
            .bad("text", txt("Param & NoSuchType"), UNKNOWN, "column 9")
            .bad("text", txt("BatchStats | Param"), UNKNOWN, did_you_mean)
            .bad("text", txt(b"P\xff"), UTF8, "")
            .good(&[], selects(2)),
    ]
}

/// Ranges past the end of `Entries` (5 entries).
fn flat_ranges(r: Row) -> Row {
    let ranges = [(0, 6), (5, 1), (6, 0), (1, 13), (usize::MAX, 2)];
    r.each(ranges, |r, (start, count)| {
        let over = [("start", num(start)), ("count", num(count))];
        r.bads(&over, RANGE, start.to_string())
    })
}

/// Indexes past the end of `Entries`, and index 0 of an empty list.
fn flat_indexes(r: Row) -> Row {
    past_end(r, 5).bads(&[("flat", Hd(NoEntries)), ("index", num(0))], RANGE, "0")
}

fn flat_rows() -> Vec<Row> {
    let pushed = |r: Row| no_place(bad_keys(r), true, "non-empty path");
    let bulk = |keys: &[K<'static>], offsets: &[i64]| {
        [
            ("count", num(2)),
            ("keys", k(keys)),
            ("key_offsets", Ints(offsets.to_vec())),
            ("variables", list(&[Plain, Plain])),
        ]
    };
    let five = [S("a"), S("b"), I(3), Raw(b"\xff"), Kind(7)];
    vec![
        row!(nnx_path_parse(text: bytes("b/1/-3/007"), text_len: len, out_keys: optv(8),
            keys_capacity: n(8usize), out_len: out))
            .with(|r| bad_texts_in(r, "text"))
            .bad("keys_capacity", num(3), INVALID, "keys_capacity 3|4 keys")
            .good(&[], |c| {
                let keys = c.gotv::<nnx_key>("out_keys");
                let texts: Vec<String> = keys[..c.got::<usize>("out_len")].iter().map(key_text).collect();
                assert_eq!(texts, ["b", "#1", "#-3", "007"]);
            })
            .good(&[("out_keys", Null)], |c| assert_eq!(c.got::<usize>("out_len"), 4))
            .good(&[("text", txt(""))], |c| assert_eq!(c.got::<usize>("out_len"), 0))
            .good(&[("text", txt("-9223372036854775808/9223372036854775808"))], |c| {
                let keys = c.gotv::<nnx_key>("out_keys");
                assert_eq!(keys[..2].iter().map(key_text).collect::<Vec<_>>(),
                    ["#-9223372036854775808", "9223372036854775808"]);
            }),
        row!(nnx_state_flatten(state: st, out_flat: own))
            .with(|r| views(r, "state"))
            .good(&[], |c| assert_eq!(flat_entries(c.got_own("out_flat")).len(), 5)),
        row!(nnx_flat_new(out_flat: own)),
        row!(nnx_flat_push_variable(flat: h(NoEntries), path: keys(&[S("v")]), path_len: len,
            variable: var))
            .with(pushed)
            .good(&[], |c| assert_eq!(flat_entries(c.f.raw(NoEntries)).len(), 1)),
        row!(nnx_flat_push_array(flat: h(NoEntries), path: keys(&[S("w")]), path_len: len,
            array: arr))
            .with(pushed),
        row!(nnx_flat_len(flat: h(Entries), out_len: out))
            .good(&[], |c| assert_eq!(c.got::<usize>("out_len"), 5)),
        row!(nnx_flat_path(flat: h(Entries), index: n(1usize), out_path: out, out_len: out))
            .with(flat_indexes)
            .good(&[], |c| {
                let n = c.got::<usize>("out_len");
                // SAFETY: `n` keys lent by the list.
                let keys = unsafe { std::slice::from_raw_parts(c.got::<*const nnx_key>("out_path"), n) };
                assert_eq!(keys.iter().map(key_text).collect::<Vec<_>>(), ["b", "#1"]);
            }),
        row!(nnx_flat_kind(flat: h(Entries), index: n(2usize), out_kind: out))
            .with(flat_indexes)
            .good(&[], |c| assert_eq!(c.got::<u32>("out_kind"), NNX_KIND_ARRAY)),
        row!(nnx_flat_variable(flat: h(Entries), index: n(0usize), out_variable: out))
            .with(flat_indexes)
            .bad("index", num(2), WRONG_KIND, "2"),
        row!(nnx_flat_array(flat: h(Entries), index: n(2usize), out_array: out))
            .with(flat_indexes)
            .with(|mut r| {
                for index in [0, 1, 3, 4] {
                    r = r.bad("index", num(index), WRONG_KIND, index.to_string());
                }
                r
            }),
        row!(nnx_flat_leaves(flat: h(Entries), start: n(0usize), count: n(5usize), retain: b(false),
            out_kinds: optv(13), out_types: optv(13), out_variables: optv(13), out_arrays: optv(13)))
            .with(flat_ranges)
            .good(&[("retain", B(true)), ("out_kinds", Null), ("out_types", Null),
                ("out_variables", Null), ("out_arrays", Null)], |_| {})
            .good(&[], |c| {
                let (v, a) = (NNX_KIND_VARIABLE, NNX_KIND_ARRAY);
                assert_eq!(c.gotv::<u32>("out_kinds")[..5], [v, v, a, v, v]);
            }),
        row!(nnx_flat_paths(flat: h(Entries), start: n(0usize), count: n(5usize),
            out_key_offsets: outv(14), out_keys: optv(64), keys_capacity: n(64usize)))
            .with(flat_ranges)
            .bads(&[("count", num(usize::MAX)), ("out_keys", Null), ("keys_capacity", num(0))],
                INVALID, "")
            .bad("keys_capacity", num(7), INVALID, "keys_capacity 7|8")
            .good(&[("out_keys", Null), ("keys_capacity", num(99))], |c| {
                assert_eq!(c.gotv::<usize>("out_key_offsets")[..6], [0, 1, 3, 5, 7, 8])
            }),
        row!(nnx_flat_push_many(flat: h(NoEntries), count: n(1usize), key_offsets: ints(&[0, 2]),
            keys: keys(&[S("a"), S("b")]), variables: optl(&[Plain]), arrays: optl(&[])))
            .bad("keys", k(&[S("a"), NullStr(2)]), NULL_ARG, "`key.str`")
            .bad("variables", Null, NULL_ARG, "`variables`")
            .bads(&[("variables", List(vec![None])), ("arrays", List(vec![None]))],
                NULL_ARG, "`arrays`")
            .bads(&bulk(&five, &[0, 2, 1]), INVALID, "must not decrease")
            .bads(&bulk(&five, &[0, 2, 2]), INVALID, "entry 1 of 2|non-empty path")
            .bads(&bulk(&[S("ok"), I(1), Raw(b"\xff")], &[0, 1, 3]), UTF8,
                "entry 1 of 2")
            .bads(&bulk(&[S("ok"), I(1), Kind(7)], &[0, 1, 3]), INVALID,
                "entry 1 of 2")
            .bads(&[&bulk(&five, &[0, 2, 3])[..], &[("arrays", List(vec![Some(Lent), None]))]].concat(),
                INVALID, "entry 0 of 2|both a variable and an array")
            .good(&bulk(&five, &[0, 2, 3]), |c| assert_eq!(flat_entries(c.f.raw(NoEntries)).len(), 2))
            .good(&[("count", num(0)), ("key_offsets", Null), ("keys", Null), ("variables", Null)],
                |c| assert_eq!(flat_entries(c.f.raw(NoEntries)).len(), 0)),
        row!(nnx_state_from_flat_leaves(flat: h(Entries), count: n(5usize),
            variables: optl(&[Plain; 5]), arrays: optl(&[]), out_state: own))
            .bad("count", num(4), INVALID, "count 4 is not the flat list's length, 5")
            .bad("variables", List(vec![Some(Plain), None, Some(Plain), Some(Plain), Some(Plain)]),
                NULL_ARG, "entry 1 of 5|NULL both")
            .bad("arrays", List(vec![Some(Lent), None, None, None, None]), INVALID,
                "entry 0 of 5|both a variable and an array")
            .good(&[("variables", Null), ("arrays", list(&[Lent; 5]))], |c| {
                let lent = c.f.raw::<nnx_array>(Lent) as usize;
                assert!(identities(c.got_own("out_state")).iter().all(|e| e.2 == lent));
            })
            .good(&[], |c| {
                let plain = c.f.raw::<nnx_variable>(Plain) as usize;
                let want: Vec<_> = flat_entries(c.f.raw(Entries)).into_iter().map(|e| (e.0, plain)).collect();
                let got: Vec<_> = identities(c.got_own("out_state")).into_iter().map(|e| (e.0, e.2)).collect();
                assert_eq!(got, want, "the list's paths, the new leaves");
            }),
        row!(nnx_state_from_flat(flat: h(Entries), out_state: own))
            .good(&[], |c| assert_eq!(leaves(c.got_own("out_state")), 5)),
        noop!(nnx_flat_free),
    ]
}

/// Both ways to split a state into parts.
fn partition(r: Row) -> Row {
    let (first, second) = (List(vec![None, Some(All)]), List(vec![Some(Param), None]));
    let r = views(r, "state")
        .bad("filters", first, NULL_ARG, "`filters[0]`")
        .bad("filters", second, NULL_ARG, "`filters[1]`")
        .bads(&[("filters", Null), ("count", num(0))], INVALID, "filter")
        .bad("count", num(0), INVALID, "filter")
        .bad("count", num(usize::MAX / 2), INVALID, "too large")
        // The first leaf asked about, in sorted order, is `a`.
        .bad("filters", list(&[Seven]), CALLBACK, "7|callback|'a'");
    let sevens: [&[H]; 3] = [&[Param, Seven], &[AnySeven], &[Param, Seven, All]];
    let r = r.bad_all("filters", CALLBACK, sevens.map(|f| (list(f), "7|callback")));
    // A callback failing midway, first (asked about all 5 leaves) or behind
    // a type filter (asked about the 4 that are no BatchStat).
    let first = [0, 1, 4].map(|n| [FailAfter(n), Stats, All]);
    let behind = [0, 1, 3].map(|n| [Stats, FailAfter(n), All]);
    let r = r.each([first, behind].concat(), |r, f| {
        r.bad("filters", list(&f), CALLBACK, "7")
    });
    let answers = [-1, 2, c_int::MAX, c_int::MIN].map(|a| (list(&[Answer(a)]), a.to_string()));
    let r = r.bad_all("filters", CALLBACK, answers);
    // The Everything rule: `...` only last; checked before any leaf is
    // looked at; a clone of the literal is the literal, `Any(...)` and
    // `Not(Not(...))` of it are not.
    let order = "^`...` or `True` can only be used as the last filters";
    let misplaced: [(&[H], usize); 5] = [
        (&[All, Param], 0),
        (&[All, All, Param], 0),
        (&[Param, All, Nothing], 1),
        (&[Param, All, All, Nothing, All], 1),
        (&[AllClone, Param], 0),
    ];
    let misplaced = misplaced.map(|(filters, i)| (list(filters), format!("{order}|index {i}")));
    let r = r.bad_all("filters", ORDER, misplaced);
    let empty = [("state", Hd(Empty)), ("filters", list(&[All, Param]))];
    let r = r.bads(&empty, ORDER, format!("{order}|index 0"));
    let parts: [(&[H], &[usize]); 7] = [
        (&[Param, All], &[2, 3]),
        (&[Param, All, All], &[2, 3, 0]),
        (&[All], &[5]),
        (&[All, All], &[5, 0]),
        (&[AnyAll, Param], &[5, 0]),
        (&[NotNotAll, Param], &[5, 0]),
        (&[Param, AllClone, All], &[2, 3, 0]),
    ];
    r.each(parts, |r, (filters, want)| {
        r.good(&[("filters", list(filters))], move |c| {
            assert_eq!(counts(c), want)
        })
    })
}

/// The whole state, as the empty path.
fn whole(keyed: bool) -> Vec<Arg> {
    if keyed {
        vec![("path", Null), ("path_len", num(0))]
    } else {
        vec![("path", txt(""))]
    }
}

/// What a reader at a path shares: bad paths, paths through leaves and
/// where nothing is, and the empty path of a dead view.
fn reader(r: Row, keyed: bool) -> Row {
    let r = if keyed { bad_keys(r) } else { bad_texts(r) };
    dead_whole(missing(through(views(r, "state"), keyed), keyed), keyed)
}

/// The empty path of a dead view: the whole of a state no longer there.
fn dead_whole(r: Row, keyed: bool) -> Row {
    let dead = [&whole(keyed)[..], &[("state", Hd(Dead))]].concat();
    r.bads(&dead, NOT_FOUND, "no longer exists")
}

/// What a writer at a path shares.
fn writer(r: Row, keyed: bool) -> Row {
    let r = if keyed { bad_keys(r) } else { bad_texts(r) };
    no_place(through(views(r, "state"), keyed), keyed, "empty path")
}

/// A getter at a path finding a leaf of another kind.
fn other_leaves(r: Row, keyed: bool, at: &[(&[K<'static>], &str, &'static str)]) -> Row {
    r.each(at, |r, (keys, text, needle)| {
        r.bad("path", self::at(keyed, keys, text), WRONG_KIND, *needle)
    })
}

/// The empty string is a key like any other, given without a pointer; it
/// is not the int 0.
fn the_empty_key_is_a_key(c: &Call) {
    let state = c.f.raw::<nnx_state>(Main);
    let (empty, zero, mut kind) = (path![""], path![0], SENTINEL_U32);
    ok!(nnx_state_get_kind(state, empty.ptr(), 1, &mut kind));
    assert_eq!(kind, NNX_KIND_VARIABLE);
    fails!(
        nnx_state_get_kind(state, zero.ptr(), 1, &mut kind),
        NNX_ERR_KEY_NOT_FOUND
    );
    let mut key = sentinel_key();
    ok!(nnx_state_key_at(state, 4, &mut key));
    assert_eq!((key.kind, key.str_len), (NNX_KEY_STR, 0));
    let text = !key.str.is_null();
    assert!(text, "a key handed out is NUL-terminated text");
}

/// A view of the empty path is the state itself, live.
fn a_live_view_of_everything(c: &Call) {
    let view = c.got_own::<nnx_state>("out_state");
    let (path, var) = (cstr("through_view"), variable(NNX_TYPE_PARAM, None));
    ok!(nnx_state_set_variable_str(view, path.as_ptr(), var.ptr()));
    assert_eq!(leaves(c.f.raw(Main)), 6);
}

fn state_rows() -> Vec<Row> {
    const A: &[K<'static>] = &[S("a")];
    const B: &[K<'static>] = &[S("b")];
    const BX: &[K<'static>] = &[S("b"), S("x")];
    const Z: &[K<'static>] = &[S("z")];
    let state_value = |r: Row| {
        let r = r.bad("value", Hd(Dead), NOT_FOUND, "no longer exists");
        r.bad("value", Hd(LeafView), WRONG_KIND, "leaf")
    };
    vec![
        row!(nnx_state_new(out_state: own)),
        noop!(nnx_state_free),
        row!(nnx_state_clone(state: st, out_state: own)).with(|r| views(r, "state")),
        row!(nnx_state_deep_copy(state: st, out_state: own))
            .with(|r| views(r, "state"))
            .bad("state", Hd(OnDevice), INVALID, "device"),
        row!(nnx_state_set_variable(state: st, path: keys(&[S("new"), I(0)]), path_len: len,
            variable: var))
            .with(|r| writer(r, true))
            .good(&[("path", k(&[NullStr(0)]))], the_empty_key_is_a_key),
        row!(nnx_state_set_variable_str(state: st, path: text("new/0"), variable: var))
            .with(|r| writer(r, false))
            .bads(&[("state", Hd(View)), ("path", txt("x/y"))], THROUGH_LEAF, "'x'"),
        row!(nnx_state_replace_values(state: st, count: n(2usize), key_offsets: ints(&[0, 2, 4]),
            keys: keys(&[S("b"), I(1), S("b"), S("x")]), values: list(&[Lent, Lent])))
            .bad("values", List(vec![Some(Lent), None]), NULL_ARG, "`values[1]`")
            .bad("key_offsets", Ints(vec![0, 2, 1]), INVALID, "must not decrease")
            .bad("keys", k(&[S("b"), I(1), S("b"), S("nope")]), NOT_FOUND, "nothing at 'b/nope'")
            .bad("keys", k(&[S("b"), I(1), S("z"), S("x")]), THROUGH_LEAF, "runs through the leaf at 'z'")
            .bad("key_offsets", Ints(vec![0, 2, 3]), WRONG_KIND, "'b' is a nested state")
            .bad("keys", k(&[S("b"), I(1), S("z"), Raw(b"\xff")]), UTF8, "entry 1 of 2")
            .good(&[("count", num(0)), ("key_offsets", Null), ("keys", Null), ("values", Null)], |_| {})
            .good(&[], |c| {
                let (main, lent) = (c.f.raw::<nnx_state>(Main), c.f.raw::<nnx_array>(Lent));
                let after = identities(main);
                let at = |path: &str| after.iter().find(|e| e.0 == path).expect(path).clone();
                assert_eq!(at("b/x").2, lent as usize, "a bare array: the value itself");
                let stat = made(|o| nnx_state_get_variable_str(main, cstr("b/1").as_ptr(), o));
                let printed = variable_print(stat);
                nnx_variable_release(stat);
                assert!(printed.contains(&format!("at {:#x}", lent as usize)), "{printed}");
                assert!(printed.contains("stats"), "its metadata copied: {printed}");
                assert_eq!(after.len(), 5);
            }),
        row!(nnx_state_set_array(state: st, path: keys(&[S("new")]), path_len: len, array: arr))
            .with(|r| writer(r, true)),
        row!(nnx_state_set_array_str(state: st, path: text("new"), array: arr))
            .with(|r| writer(r, false)),
        row!(nnx_state_set_state(state: st, path: keys(&[S("new")]), path_len: len, value: h(Other)))
            .with(|r| writer(r, true))
            .with(state_value),
        row!(nnx_state_set_state_str(state: st, path: text("new"), value: h(Other)))
            .with(|r| writer(r, false))
            .with(state_value),
        row!(nnx_state_get_kind(state: st, path: keys(&[S("a")]), path_len: len, out_kind: out))
            .with(|r| reader(r, true))
            .good(&whole(true), gives("out_kind", NNX_KIND_STATE))
            .good(&[("path", k(BX))], gives("out_kind", NNX_KIND_ARRAY)),
        row!(nnx_state_get_kind_str(state: st, path: text("a"), out_kind: out))
            .with(|r| reader(r, false))
            .good(&whole(false), gives("out_kind", NNX_KIND_STATE))
            .good(&[], gives("out_kind", NNX_KIND_VARIABLE)),
        row!(nnx_state_contains(state: st, path: keys(&[S("a")]), path_len: len,
            out_contains: outb))
            .with(|r| dead_whole(views(absent(bad_keys(r), true), "state"), true))
            .good(&whole(true), says("out_contains", true))
            .good(&[], says("out_contains", true)),
        row!(nnx_state_contains_str(state: st, path: text("a"), out_contains: outb))
            .with(|r| dead_whole(views(absent(bad_texts(r), false), "state"), false))
            .good(&[], says("out_contains", true)),
        row!(nnx_state_get_variable(state: st, path: keys(A), path_len: len, out_variable: own))
            .with(|r| reader(r, true))
            .bads(&whole(true), WRONG_KIND, "")
            .with(|r| other_leaves(r, true, &[(BX, "", "bare array"), (B, "", "nested state")])),
        row!(nnx_state_get_variable_str(state: st, path: text("b/1"), out_variable: own))
            .with(|r| reader(r, false))
            .with(|r| other_leaves(r, false,
                &[(&[], "b/x", "'b/x'|bare array"), (&[], "b", "'b'|nested state")])),
        row!(nnx_state_get_array(state: st, path: keys(BX), path_len: len, out_array: own))
            .with(|r| reader(r, true))
            .bads(&whole(true), WRONG_KIND, "")
            .with(|r| other_leaves(r, true, &[(A, "", "variable"), (Z, "", "variable"),
                (B, "", "nested state")])),
        row!(nnx_state_get_array_str(state: st, path: text("b/x"), out_array: own))
            .with(|r| reader(r, false))
            .with(|r| other_leaves(r, false, &[(&[], "a", "variable"), (&[], "b", "nested state")])),
        row!(nnx_state_get_state(state: st, path: keys(B), path_len: len, out_state: own))
            .with(|r| reader(r, true))
            .with(|r| other_leaves(r, true, &[(A, "", "'a'|not a nested state"),
                (Z, "", "not a nested state"), (BX, "", "not a nested state")]))
            .good(&whole(true), a_live_view_of_everything),
        row!(nnx_state_get_state_str(state: st, path: text("e"), out_state: own))
            .with(|r| reader(r, false))
            .with(|r| other_leaves(r, false, &[(&[], "a", "'a'|not a nested state"),
                (&[], "b/x", "'b/x'|not a nested state"), (&[], "b/1", "not a nested state")]))
            .good(&whole(false), a_live_view_of_everything),
        row!(nnx_state_remove(state: st, path: keys(A), path_len: len))
            .with(|r| missing(writer(r, true), true)),
        row!(nnx_state_remove_str(state: st, path: text("a")))
            .with(|r| missing(writer(r, false), false)),
        row!(nnx_state_len(state: st, out_len: out))
            .with(|r| views(r, "state"))
            .good(&[], |c| assert_eq!(c.got::<usize>("out_len"), 4)),
        row!(nnx_state_key_at(state: st, index: n(3usize), out_key: out))
            .with(|r| past_end(views(r, "state"), 4))
            .good(&[], |c| assert_eq!(key_text(&c.got("out_key")), "e")),
        row!(nnx_state_version(state: st, out_version: out)).good(&[], |c| {
            let version = |state| {
                let mut v = SENTINEL_I64 as u64;
                ok!(nnx_state_version(state, &mut v));
                v
            };
            let (main, view) = (c.f.raw(Main), c.f.raw(View));
            let before = c.got::<u64>("out_version");
            assert_eq!(version(main), before, "no change, same number");
            ok!(nnx_variable_set_value(c.f.raw(Plain), null_mut()));
            assert_eq!(version(main), before, "a variable's value is not the tree");
            ok!(nnx_state_remove_str(view, cstr("x").as_ptr()));
            assert_ne!(version(main), before, "a change through a view counts");
            assert_eq!(version(view), version(main), "a view has its parent's");
        }),
        row!(nnx_state_num_leaves(state: st, out_count: out))
            .with(|r| views(r, "state"))
            .good(&[], |c| assert_eq!(c.got::<usize>("out_count"), 5)),
        row!(nnx_state_to_string(state: st, out_text: own))
            .with(|r| views(r, "state"))
            .good(&[("state", Hd(OnDevice))], |c| {
                assert_contains!(text_of(c.got_own("out_text")), "<device 2:3>")
            }),
        row!(nnx_state_filter(state: st, filters: list(&[Param, All]), count: len, out_states: owns))
            .with(partition)
            .good(&[("filters", list(&[Param, Stats]))], |c| assert_eq!(counts(c), [2, 1])),
        row!(nnx_state_split(state: st, filters: list(&[Param, All]), count: len, out_states: owns))
            .with(partition)
            .bad("filters", list(&[Param]), NON_EXHAUSTIVE,
                "^Non-exhaustive filters|('b', 1)")
            .bad("filters", list(&[Param, Stats]), NON_EXHAUSTIVE, "('b', 'x')")
            // Sorted order, not insertion order.
            .bads(&[("state", Hd(Other)), ("filters", list(&[Param]))], NON_EXHAUSTIVE,
                "('aa', 9)"),
        row!(nnx_state_merge(states: list(&[Main, Other]), count: len, out_state: own))
            .bad("states", List(vec![Some(Main), None]), NULL_ARG, "`states[1]`")
            .bad("states", List(vec![None]), NULL_ARG, "`states[0]`")
            .bads(&[("states", Null), ("count", num(0))], INVALID, "at least one")
            .bad("count", num(0), INVALID, "at least one")
            .bad("count", num(usize::MAX / 2), INVALID, "too large")
            .bad("states", list(&[Other, Dead]), NOT_FOUND, "no longer exists")
            .bad("states", list(&[Dead]), NOT_FOUND, "no longer exists")
            .bad("states", list(&[Main, LeafView]), WRONG_KIND, "leaf")
            .good(&[], |c| assert_eq!(leaves(c.got_own("out_state")), 8)),
        row!(nnx_state_diff(state: st, other: h(Other), out_state: own))
            .with(|r| views(views(r, "state"), "other"))
            .good(&[], |c| assert_eq!(leaves(c.got_own("out_state")), 5)),
        row!(nnx_state_update(state: st, source: h(Other)))
            .with(|r| views(views(r, "state"), "source"))
            .good(&[], |c| assert_eq!(leaves(c.f.raw(Main)), 8)),
    ]
}

fn checkpoint_rows() -> Vec<Row> {
    let (missing, unknown) = (txt("missing.safetensors"), ("leaf_type", num(UNKNOWN_TYPE)));
    let no_dir =
        "^cannot save '|no/such/dir/x.safetensors': the directory '|no/such/dir' does not exist";
    vec![
        row!(nnx_safetensors_load(path: file("s.safetensors"), leaf_type: n(NNX_TYPE_PARAM),
            flags: n(0u32), out_state: own))
        .bad("path", missing, IO, "missing.safetensors")
        .bad("path", txt("bad.safetensors"), FORMAT, "bad.safetensors")
        .bad("path", txt("short.safetensors"), FORMAT, "truncated")
        .bad("flags", num(4), INVALID, "")
        .bads(&[("path", txt("bad.safetensors")), unknown], UNKNOWN, "")
        .good(&[], |c| {
            let state = c.got_own("out_state");
            assert_eq!(leaves(state), 5);
            assert_eq!(file_metadata(state), [pair("format", "pt")]);
        }),
        row!(nnx_safetensors_save(state: st, path: file("out.safetensors"), flags: n(0u32)))
            .with(|r| views(r, "state"))
            .bad("flags", num(1), INVALID, "")
            .bad("path", txt("no/such/dir/x.safetensors"), IO, no_dir)
            .bad("state", Hd(OnDevice), INVALID, "device 2:3"),
        row!(nnx_safetensors_save_sharded(state: st, directory: file(""), name: text("model"),
            max_shard_size: n(1u64 << 20), flags: n(0u32)))
        .with(|r| views(r, "state"))
        .bad("max_shard_size", num(0), INVALID, "")
        .bad("name", txt("a/b"), INVALID, "")
        .bad("flags", num(2), INVALID, "")
        .bad("name", txt(b"\xff"), UTF8, "")
        .bad("state", Hd(OnDevice), INVALID, "device 2:3"),
        row!(nnx_safetensors_metadata_len(state: st, out_len: out))
            .good(&[], gives("out_len", 1usize))
            .good(&[("state", Hd(Other))], gives("out_len", 0usize)),
        row!(nnx_safetensors_metadata_at(state: st, index: n(0usize), out_name: own,
            out_value: own))
        .bad("index", num(1), RANGE, "index 1 is out of range for 1")
        .bad("state", Hd(Other), RANGE, "for 0 metadata entries")
        .good(&[], |c| {
            assert_eq!(text_of(c.got_own("out_name")), "format");
            assert_eq!(text_of(c.got_own("out_value")), "pt");
        }),
        row!(nnx_safetensors_metadata_get(state: st, name: text("format"), out_value: own))
            .bad("name", txt("formats"), NOT_FOUND, "\"formats\"")
            .bad("name", txt(b"\xff"), UTF8, "")
            .good(&[], text_is("out_value", "pt")),
        row!(nnx_safetensors_metadata_set(state: st, name: text("format"), value: text("np")))
            .bad("name", txt("nnx_state.v1"), INVALID, "reserved")
            .bad("name", txt("nnx_state.v7"), INVALID, "reserved")
            .bad("name", txt(b"\xff"), UTF8, "")
            .bad("value", txt(b"\xff"), UTF8, "")
            .good(&[], carries(&[("format", "np")]))
            .good(
                &[("name", txt("total_size"))],
                carries(&[("format", "pt"), ("total_size", "np")]),
            ),
        row!(nnx_safetensors_metadata_remove(state: st, name: text("format")))
            .bad("name", txt("nope"), NOT_FOUND, "\"nope\"")
            .bad("name", txt(b"\xff"), UTF8, "")
            .good(&[], carries(&[])),
        row!(nnx_safetensors_metadata_clear(state: st)).good(&[], carries(&[])),
    ]
}

fn pair(name: &str, value: &str) -> (String, String) {
    (name.to_owned(), value.to_owned())
}

/// Checks that `Main` now carries these file metadata entries, in order.
fn carries(want: &'static [(&str, &str)]) -> impl Fn(&Call) {
    move |c| {
        let want: Vec<_> = want.iter().map(|(name, value)| pair(name, value)).collect();
        assert_eq!(file_metadata(c.f.raw(Main)), want)
    }
}

// ---------------------------------------------------------------------------
// Status names, the version and the error message

fn error_rows() -> Vec<Row> {
    vec![
        Row::new("nnx_status_name", Body::Custom(status_names)),
        Row::new("nnx_version", Body::Custom(version)),
        Row::new("nnx_last_error_message", Body::Custom(last_error_message)),
        noop!(nnx_string_free),
    ]
}

/// Every status has its name and fixed value; any other integer is unknown.
fn status_names() {
    let all = [
        (NNX_OK, "NNX_OK", 0),
        (NNX_ERR_NULL_ARGUMENT, "NNX_ERR_NULL_ARGUMENT", 1),
        (NNX_ERR_INVALID_ARGUMENT, "NNX_ERR_INVALID_ARGUMENT", 2),
        (NNX_ERR_INVALID_UTF8, "NNX_ERR_INVALID_UTF8", 3),
        (NNX_ERR_KEY_NOT_FOUND, "NNX_ERR_KEY_NOT_FOUND", 4),
        (NNX_ERR_WRONG_KIND, "NNX_ERR_WRONG_KIND", 5),
        (NNX_ERR_PATH_THROUGH_LEAF, "NNX_ERR_PATH_THROUGH_LEAF", 6),
        (NNX_ERR_SHAPE_MISMATCH, "NNX_ERR_SHAPE_MISMATCH", 7),
        (NNX_ERR_UNKNOWN_TYPE, "NNX_ERR_UNKNOWN_TYPE", 8),
        (NNX_ERR_TYPE_CONFLICT, "NNX_ERR_TYPE_CONFLICT", 9),
        (NNX_ERR_NON_EXHAUSTIVE, "NNX_ERR_NON_EXHAUSTIVE", 10),
        (NNX_ERR_FILTER_ORDER, "NNX_ERR_FILTER_ORDER", 11),
        (NNX_ERR_INDEX_OUT_OF_RANGE, "NNX_ERR_INDEX_OUT_OF_RANGE", 12),
        (NNX_ERR_CALLBACK, "NNX_ERR_CALLBACK", 13),
        (NNX_ERR_READ_ONLY, "NNX_ERR_READ_ONLY", 14),
        (NNX_ERR_OUT_OF_MEMORY, "NNX_ERR_OUT_OF_MEMORY", 15),
        (NNX_ERR_FORMAT, "NNX_ERR_FORMAT", 16),
        (NNX_ERR_IO, "NNX_ERR_IO", 17),
        (NNX_ERR_TOO_DEEP, "NNX_ERR_TOO_DEEP", 18),
        (NNX_ERR_PANIC, "NNX_ERR_PANIC", 100),
    ];
    for (status, name, value) in all {
        assert_eq!(status as i32, value, "{name} changed its value");
        assert_eq!(status_name(status), name);
        let (first, again) = (nnx_status_name(value), nnx_status_name(value));
        assert_eq!(first, again, "not a static string");
    }
    for value in [-1, 19, 42, 99, 101, 1000, i32::MIN, i32::MAX] {
        assert_eq!(name_of(value), "NNX_UNKNOWN_STATUS", "value {value}");
    }
}

/// The version is the crate's and the header's, a static string.
fn version() {
    let ptr = nnx_version();
    let version = text_of(ptr);
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
    assert_eq!(ptr, nnx_version(), "not a static string");
    let header =
        std::fs::read_to_string(common::header::root().join("include/nnx_state.h")).unwrap();
    assert_contains!(header, format!("#define NNX_STATE_VERSION \"{version}\""));
    for (part, name) in version.split('.').zip(["MAJOR", "MINOR", "PATCH"]) {
        assert_contains!(header, format!("#define NNX_STATE_VERSION_{name} {part}\n"));
    }
}

/// The message is per thread: empty on a fresh thread, kept by successful
/// calls, valid until the next failure on its own thread.
fn last_error_message() {
    let fresh = std::thread::spawn(last_error).join().unwrap();
    assert_eq!(fresh, "");
    let mut name: *const c_char = sentinel_const();
    assert_eq!(nnx_type_name(UNKNOWN_TYPE, &mut name), UNKNOWN);
    let ptr = nnx_last_error_message();
    let mine = text_of(ptr);
    assert_contains!(mine, "unknown variable type");
    assert_contains!(mine, UNKNOWN_TYPE.to_string());
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
    let other = {
        let barrier = barrier.clone();
        std::thread::spawn(move || {
            barrier.wait();
            assert_eq!(last_error(), "", "saw another thread's message");
            let (name, mut out) = (cstr("NoSuchTypeOnThisThread"), SENTINEL_U32);
            assert_eq!(nnx_type_lookup(name.as_ptr(), &mut out), NOT_FOUND);
            assert_contains!(last_error(), "NoSuchTypeOnThisThread");
            barrier.wait();
        })
    };
    barrier.wait();
    barrier.wait();
    other.join().unwrap();
    assert_eq!(leaves(sample_state().ptr()), SAMPLE_LEAVES);
    let now = nnx_last_error_message();
    assert_eq!(now, ptr, "a success or another thread moved it");
    assert_eq!(text_of(ptr), mine);
}

// ---------------------------------------------------------------------------
// The tests

/// `tables!(test => rows, ...)`: a test that checks each part of the table,
/// and `all_rows`, the whole table.
macro_rules! tables {
    ($($test:ident => $rows:ident),*) => {
        fn all_rows() -> Vec<Vec<Row>> {
            vec![$($rows()),*]
        }
        $(
            #[test]
            fn $test() {
                for row in $rows() {
                    row.check();
                }
            }
        )*
    };
}

tables!(
    arrays_and_dlpack => array_rows,
    variable_types => type_rows,
    variables => variable_rows,
    metadata_values => meta_rows,
    filters => filter_rows,
    flat_lists => flat_rows,
    states => state_rows,
    checkpoints => checkpoint_rows,
    errors_and_strings => error_rows
);

#[test]
fn every_extern_function_has_a_row() {
    let mut rowed = BTreeSet::new();
    for row in all_rows().iter().flatten() {
        let name = row.name.to_owned();
        assert!(rowed.insert(name), "two rows for {}", row.name);
    }
    let declared = common::header::header_functions();
    let missing: Vec<_> = declared.difference(&rowed).collect();
    let extra: Vec<_> = rowed.difference(&declared).collect();
    assert!(
        missing.is_empty(),
        "functions of include/nnx_state.h without a row: {missing:?}"
    );
    assert!(
        extra.is_empty(),
        "rows for functions the header does not declare: {extra:?}"
    );
}
