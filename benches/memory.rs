//! Memory: a state holding more than 1 GiB of tensors is split into
//! (Param, BatchStat, Cache) and merged back ten times; resident memory and
//! its peak must grow by less than 2%, which no copy of the tensors could
//! do. Also reports the bookkeeping, the bytes a leaf costs beyond its
//! tensor data: in the state, and in the outputs of split and merge.
//!
//! `cargo bench --bench memory` runs it on 100,008 leaves (the model shape
//! of `benches/ops.rs`: `layers/<i>/attn/{q,k,v,o}: Param`,
//! `layers/<i>/norm/{scale: Param, mean, var: BatchStat}`,
//! `layers/<i>/cache/{k,v}: Cache`) of 10,752 bytes each (float32 x 2688),
//! 1.0 GiB of tensors: it needs about 1.1 GiB of memory and a few seconds.
//! Options after `--`: `--leaves N`, `--bytes-per-leaf B` (a multiple of 4),
//! `--columnar` (the state held in columnar form, see `nnx_state::table`:
//! then split and merge give columnar states too).
//! It exits with status 1 when the 2% bound or a zero-copy check fails.
//!
//! Under `cargo test` (no `--bench` argument) it runs once on a small state
//! as a smoke test, checking that the outputs hold the very same variables
//! and tensor buffers, without judging the (too small to measure) growth.
//!
//! Memory is read from `/proc/self/status` (Linux): `VmRSS` (resident now)
//! and `VmHWM` (peak resident), which is reset to the current resident size
//! after the state is built (`echo 5 > /proc/self/clear_refs`) so that the
//! peak covers the split/merge loop only.

use std::sync::Arc;

use nnx_state::{Array, Child, DType, Filter, Key, Leaf, Node, State, TypeId, Variable};

mod common;
use common::{model, LAYER, LEAVES_PER_LAYER};

/// Leaves per layer: attn/{q,k,v,o}, norm/{scale, mean, var}, cache/{k,v}.
const ROUNDS: usize = 10;
/// The bound on growth, in percent of the resident size before the loop.
const MAX_GROWTH_PERCENT: f64 = 2.0;

/// A `kB` field of `/proc/self/status`, in bytes.
fn status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    let kb: u64 = line[field.len() + 1..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

fn rss() -> u64 {
    status_bytes("VmRSS").expect("VmRSS in /proc/self/status (Linux only)")
}

fn peak() -> u64 {
    status_bytes("VmHWM").expect("VmHWM in /proc/self/status (Linux only)")
}

/// Resets the peak (`VmHWM`) to the current resident size; false where the
/// kernel does not allow it.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// A new array of float32 values, every byte written (copied from `fill`),
/// so that its pages are resident.
fn array(fill: &[u8]) -> Arc<Array> {
    let elements = (fill.len() / 4) as i64;
    Arc::new(Array::new(DType::F32, &[elements], Some(fill)).expect("an array"))
}

/// The model-shaped state (`common`) over `variables`, in [`LAYER`]'s
/// order: a tree, or (`columnar`) a columnar state made from it, the tree
/// freed and the allocator trimmed.
fn model_state(variables: &[Arc<Variable>], columnar: bool) -> State {
    let layers = variables.len() / LEAVES_PER_LAYER;
    let node = model(layers, false, |i, _| {
        Child::Leaf(Leaf::Variable(variables[i].clone()))
    });
    if !columnar {
        return State::from_node(node);
    }
    let state = State::columnar(node);
    assert!(state.is_columnar());
    trim_allocator();
    state
}

/// Returns memory the allocator holds but does not use to the system, so
/// that the resident size shows what is still allocated (glibc only).
fn trim_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Every leaf of `b` is the very leaf of `a` at the same path, and its
/// tensor the very same buffer: nothing was copied.
fn same_leaves(a: &State, b: &State) -> bool {
    let (fa, fb) = (a.flatten().unwrap(), b.flatten().unwrap());
    fa.len() == fb.len()
        && fa.iter().zip(&fb).all(|((pa, la), (pb, lb))| {
            let same_buffer = match (la, lb) {
                (Leaf::Variable(x), Leaf::Variable(y)) => match (x.array(), y.array()) {
                    (Some(u), Some(v)) => u.buffer().as_ptr() == v.buffer().as_ptr(),
                    (None, None) => true,
                    _ => false,
                },
                (Leaf::Array(u), Leaf::Array(v)) => u.buffer().as_ptr() == v.buffer().as_ptr(),
                _ => false,
            };
            pa == pb && la.same(lb) && same_buffer
        })
}

struct Options {
    leaves: usize,
    bytes_per_leaf: usize,
    smoke: bool,
    columnar: bool,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().collect();
    let smoke = !args.iter().any(|a| a == "--bench");
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(|v| v.replace('_', "").parse::<usize>().expect("a number"))
    };
    let (leaves, bytes) = if smoke {
        (900, 1024)
    } else {
        (100_000, 2688 * 4)
    };
    let bytes_per_leaf = value("--bytes-per-leaf").unwrap_or(bytes);
    assert!(
        bytes_per_leaf >= 4 && bytes_per_leaf % 4 == 0,
        "--bytes-per-leaf: a positive multiple of 4"
    );
    Options {
        leaves: value("--leaves").unwrap_or(leaves),
        bytes_per_leaf,
        smoke,
        columnar: args.iter().any(|a| a == "--columnar"),
    }
}

fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / (1024.0 * 1024.0))
}

fn per_leaf(bytes: i64, leaves: usize) -> String {
    format!("{:.1} B", bytes as f64 / leaves as f64)
}

fn main() {
    let opts = options();
    let leaves = opts.leaves.div_ceil(LEAVES_PER_LAYER) * LEAVES_PER_LAYER;
    let tensor_bytes = (leaves * opts.bytes_per_leaf) as u64;
    let fill: Vec<u8> = std::iter::repeat_n(1.0f32.to_ne_bytes(), opts.bytes_per_leaf / 4)
        .flatten()
        .collect();
    let filters = [
        Filter::of_type(TypeId::PARAM),
        Filter::of_type(TypeId::BATCH_STAT),
        Filter::of_type(TypeId::CACHE),
    ];

    println!(
        "state: {leaves} leaves (model-shaped), {} bytes each, {} of tensors ({tensor_bytes} bytes)",
        opts.bytes_per_leaf,
        mib(tensor_bytes as f64)
    );

    // Build the state in stages (arrays, variables, tree); what it costs
    // beyond the tensor bytes is bookkeeping. The two vectors of handles
    // (8 bytes a leaf each) are gone by the last measurement.
    let before_build = rss();
    let arrays: Vec<Arc<Array>> = (0..leaves).map(|_| array(&fill)).collect();
    let with_arrays = rss();
    let variables: Vec<Arc<Variable>> = arrays
        .iter()
        .zip(LAYER.iter().cycle())
        .map(|(a, (_, _, t))| Arc::new(Variable::new(*t, Some(a.clone())).expect("a variable")))
        .collect();
    let with_variables = rss();
    let state = model_state(&variables, opts.columnar);
    let with_tree = rss();
    drop(variables);
    drop(arrays);
    let built = rss();
    assert_eq!(state.num_leaves().unwrap(), leaves);
    let bookkeeping = built as i64 - before_build as i64 - tensor_bytes as i64;
    let handles = (leaves * std::mem::size_of::<usize>()) as i64;

    // One split and one merge, with their outputs alive: what they add.
    let peak_reset = reset_peak();
    let base = rss();
    let base_peak = peak();
    let parts = state.split(&filters).unwrap();
    let with_parts = rss();
    let merged = {
        let refs: Vec<&State> = parts.iter().collect();
        State::merge(&refs).unwrap()
    };
    let with_merged = rss();
    let mut counts_ok = merged.num_leaves().unwrap() == leaves;
    drop(merged);
    drop(parts);
    let after_first = rss();

    // Nine more rounds: split, merge, keep both alive, drop them.
    for _ in 1..ROUNDS {
        let parts = state.split(&filters).unwrap();
        let refs: Vec<&State> = parts.iter().collect();
        let merged = State::merge(&refs).unwrap();
        counts_ok &= merged.num_leaves().unwrap() == leaves;
        drop(merged);
        drop(parts);
    }
    let end = rss();
    let end_peak = peak();

    // The zero-copy check flattens whole states, which takes memory of its
    // own: it runs after the measurements, on one more split and merge.
    let parts = state.split(&filters).unwrap();
    let refs: Vec<&State> = parts.iter().collect();
    let merged = State::merge(&refs).unwrap();
    let part_leaves: usize = parts.iter().map(|p| p.num_leaves().unwrap()).sum();
    let zero_copy = counts_ok && part_leaves == leaves && same_leaves(&state, &merged);
    drop(merged);
    drop(refs);
    drop(parts);
    trim_allocator();
    let retained = rss();

    let growth = (end as f64 - base as f64) / base as f64 * 100.0;
    let peak_growth = (end_peak as f64 - base_peak as f64) / base_peak as f64 * 100.0;

    println!();
    println!("| measure | resident (VmRSS) | per leaf |");
    println!("|---|---:|---:|");
    println!("| before building | {} | |", mib(before_build as f64));
    println!(
        "| state built | {} | {} |",
        mib(built as f64),
        per_leaf(built as i64 - before_build as i64, leaves)
    );
    println!(
        "| **bookkeeping** (built - before - tensor bytes) | {} | **{}** |",
        mib(bookkeeping as f64),
        per_leaf(bookkeeping, leaves)
    );
    println!(
        "| of which arrays: headers and allocator overhead of the buffers | {} | {} |",
        mib((with_arrays as i64 - before_build as i64 - tensor_bytes as i64 - handles) as f64),
        per_leaf(
            with_arrays as i64 - before_build as i64 - tensor_bytes as i64 - handles,
            leaves
        )
    );
    println!(
        "| of which variables | {} | {} |",
        mib((with_variables as i64 - with_arrays as i64 - handles) as f64),
        per_leaf(with_variables as i64 - with_arrays as i64 - handles, leaves)
    );
    println!(
        "| of which {} | {} | {} |",
        match opts.columnar {
            true => "the table (rows, nodes, counts)",
            false => "the tree (nodes, keys, entries)",
        },
        mib((with_tree as i64 - with_variables as i64) as f64),
        per_leaf(with_tree as i64 - with_variables as i64, leaves)
    );
    println!(
        "| split(Param, BatchStat, Cache), parts alive | +{} | {} |",
        mib(with_parts as f64 - base as f64),
        per_leaf(with_parts as i64 - base as i64, leaves)
    );
    println!(
        "| merge(3 parts), result alive too | +{} | {} |",
        mib(with_merged as f64 - with_parts as f64),
        per_leaf(with_merged as i64 - with_parts as i64, leaves)
    );
    println!(
        "| after the first round, outputs dropped (kept by the state or the allocator) | +{} | {} |",
        mib(after_first as f64 - base as f64),
        per_leaf(after_first as i64 - base as i64, leaves)
    );
    println!(
        "| after {ROUNDS} rounds | +{} | {} |",
        mib(end as f64 - base as f64),
        per_leaf(end as i64 - base as i64, leaves)
    );
    println!(
        "| all outputs dropped, allocator trimmed (what the state keeps) | +{} | {} |",
        mib(retained as f64 - base as f64),
        per_leaf(retained as i64 - base as i64, leaves)
    );
    println!();
    println!(
        "resident before the rounds {}, after {ROUNDS} rounds {}: growth {growth:.3}%",
        mib(base as f64),
        mib(end as f64)
    );
    println!(
        "peak resident before the rounds {}, after {} rounds {}: growth {peak_growth:.3}%{}",
        mib(base_peak as f64),
        ROUNDS,
        mib(end_peak as f64),
        if peak_reset {
            " (peak reset after building)"
        } else {
            " (peak could not be reset: it includes building)"
        }
    );
    println!(
        "zero-copy check (every output leaf is the input's variable over the same buffer): {}",
        if zero_copy { "passed" } else { "FAILED" }
    );
    println!(
        "in-memory sizes (std::mem::size_of, before allocator rounding and Arc counts): \
         Variable {} B, Array {} B, (Key, Child) {} B, Node {} B",
        std::mem::size_of::<Variable>(),
        std::mem::size_of::<Array>(),
        std::mem::size_of::<(Key, Child)>(),
        std::mem::size_of::<Node>()
    );

    if opts.smoke {
        // Small states are below what resident sizes can resolve; check
        // only that nothing was copied.
        println!("smoke run (no --bench): growth not judged at this size");
        assert!(zero_copy, "outputs must hold the input's very leaves");
        return;
    }
    let within = growth < MAX_GROWTH_PERCENT && peak_growth < MAX_GROWTH_PERCENT;
    println!(
        "target: resident and peak growth < {MAX_GROWTH_PERCENT}% over {ROUNDS} rounds: {}",
        if within { "met" } else { "NOT met" }
    );
    if !(within && zero_copy) {
        std::process::exit(1);
    }
}
