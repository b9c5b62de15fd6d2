//! Speed of the core operations on model-shaped states, per leaf and against
//! the floor: one pass that takes a new reference to every leaf.
//!
//! split, filter and merge are timed on a tree they have never seen (a
//! fresh copy of the structure, made untimed, so no cache helps), and again
//! ("again") on an unchanged tree they have just processed, where the
//! library reuses what it found.
//!
//! `cargo bench --bench ops` prints a table of medians (ns per leaf and the
//! ratio to the floor) at 1,000 to 1,000,000 leaves. Under `cargo test` it
//! runs once on a small state, as a smoke test. Options after `--`:
//! `--sizes 1000,10000`, `--seconds 0.5` (time budget per operation and
//! size), `--only split` (operations whose name contains the text) and
//! `--named-layers` (layers under text keys `layer_<i>`, so that the
//! layers node is out of key order).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nnx_state::{parse_path, Array, Child, Filter, Leaf, Node, State, TypeId, Variable};

mod common;
use common::{model_keyed, structure_copy, LEAVES_PER_LAYER};

/// A new variable of `type_id` over a one-element array.
fn leaf(type_id: TypeId) -> Child {
    let value = Arc::new(Array::from_slice(&[1], &[0.0f32]).unwrap());
    Child::Leaf(Leaf::Variable(Arc::new(
        Variable::new(type_id, Some(value)).unwrap(),
    )))
}

/// The model-shaped state (`common`), in the order a model builds it;
/// with `named`, layer `i` is under the text key `layer_<i>`.
fn model_state(leaves: usize, named: bool) -> State {
    let layers = leaves.div_ceil(LEAVES_PER_LAYER);
    let key = |i: usize| {
        if named {
            nnx_state::Key::str(&format!("layer_{i}"))
        } else {
            nnx_state::Key::int(i as i64)
        }
    };
    State::from_node(model_keyed(layers, false, key, |_, t| leaf(t)))
}

/// The floor: a new reference to every leaf, into a vector.
fn floor(node: &Node, out: &mut Vec<Leaf>) {
    for (_, child) in node.iter() {
        match child {
            Child::Leaf(leaf) => out.push(leaf.clone()),
            Child::Node(n) => floor(n, out),
        }
    }
}

struct Options {
    sizes: Vec<usize>,
    budget: Duration,
    smoke: bool,
    /// Only the operations whose name contains this (the floor always runs).
    only: Option<String>,
    named_layers: bool,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().collect();
    let smoke = !args.iter().any(|a| a == "--bench");
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let sizes = match value("--sizes") {
        Some(list) => list
            .split(',')
            .map(|s| s.parse().expect("a size"))
            .collect(),
        None if smoke => vec![900],
        None => vec![1_000, 10_000, 100_000, 1_000_000],
    };
    let seconds: f64 = value("--seconds").map_or(if smoke { 0.0 } else { 1.0 }, |s| {
        s.parse().expect("seconds")
    });
    Options {
        sizes,
        budget: Duration::from_secs_f64(seconds),
        smoke,
        only: value("--only"),
        named_layers: args.iter().any(|a| a == "--named-layers"),
    }
}

/// An operation to time: it returns how long its timed part took, so that
/// it can prepare its input untimed.
type Op<'a> = (&'a str, Box<dyn Fn() -> Duration + 'a>);

/// Times `run` alone.
fn timed(run: impl FnOnce()) -> Duration {
    let t = Instant::now();
    run();
    t.elapsed()
}

/// Times `run` on a fresh copy of `state`'s tree (made untimed), so that
/// nothing a previous call cached helps.
fn cold<'a>(state: &'a State, run: impl Fn(&State) + 'a) -> Box<dyn Fn() -> Duration + 'a> {
    Box::new(move || {
        let input = State::from_node(structure_copy(&state.node().unwrap()));
        timed(|| run(&input))
    })
}

/// Runs every operation in turn, round after round, so that noise hits all
/// of them alike; returns the median time of each.
fn measure(ops: &[Op<'_>], budget: Duration) -> Vec<Duration> {
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); ops.len()];
    let started = Instant::now();
    let total = budget * ops.len() as u32;
    loop {
        for (i, (_, run)) in ops.iter().enumerate() {
            samples[i].push(run());
        }
        let rounds = samples[0].len();
        if (started.elapsed() >= total && rounds >= 5) || rounds >= 1000 {
            break;
        }
        if budget.is_zero() {
            break;
        }
    }
    samples
        .into_iter()
        .map(|mut s| {
            s.sort();
            s[s.len() / 2]
        })
        .collect()
}

fn main() {
    let opts = options();
    let (param, stat, cache) = (
        Filter::of_type(TypeId::PARAM),
        Filter::of_type(TypeId::BATCH_STAT),
        Filter::of_type(TypeId::CACHE),
    );
    let three = [param.clone(), stat.clone(), cache.clone()];
    let attn = [Filter::path_contains("attn", true)];
    let first_layer = if opts.named_layers { "layer_0" } else { "0" };
    let lookup_path = parse_path(&format!("layers/{first_layer}/norm/mean")).unwrap();

    println!(
        "{:>9} {:<28} {:>12} {:>10} {:>9}",
        "leaves", "operation", "median", "ns/leaf", "x floor"
    );
    for &size in &opts.sizes {
        let state = model_state(size, opts.named_layers);
        let node = state.node().unwrap();
        let leaves = node.num_leaves();
        let parts = state.split(&three).unwrap();
        let part_refs: Vec<&State> = parts.iter().collect();
        let flat = state.flatten().unwrap();
        // A state whose nodes are already in sorted order, as every output of
        // filter/split is: repeated filtering can share whole subtrees.
        let sorted_state = parts.iter().fold(State::new(), |acc, p| {
            acc.update(p).unwrap();
            acc
        });
        let sorted_state = sorted_state.split(&[Filter::Everything]).unwrap().remove(0);

        let held = std::cell::Cell::new(None);
        let held_split = std::cell::Cell::new(None);
        let held_filter = std::cell::Cell::new(None);
        let ops: Vec<Op<'_>> = vec![
            (
                "floor (clone every leaf)",
                Box::new(|| {
                    timed(|| {
                        let mut out = Vec::with_capacity(leaves);
                        floor(&node, &mut out);
                        black_box(out);
                    })
                }),
            ),
            (
                "split(Param, BatchStat, Cache)",
                cold(&state, |s| {
                    black_box(s.split(&three).unwrap());
                }),
            ),
            (
                "filter(Param)",
                cold(&state, |s| {
                    black_box(s.filter(std::slice::from_ref(&param)).unwrap());
                }),
            ),
            (
                "filter(PathContains(attn))",
                cold(&state, |s| {
                    black_box(s.filter(&attn).unwrap());
                }),
            ),
            (
                "merge(3 parts)",
                Box::new(|| {
                    let inputs: Vec<State> = parts
                        .iter()
                        .map(|p| State::from_node(structure_copy(&p.node().unwrap())))
                        .collect();
                    let refs: Vec<&State> = inputs.iter().collect();
                    timed(|| {
                        black_box(State::merge(&refs).unwrap());
                    })
                }),
            ),
            (
                "flatten",
                Box::new(|| {
                    timed(|| {
                        black_box(state.flatten().unwrap());
                    })
                }),
            ),
            (
                "from_flat",
                Box::new(|| {
                    timed(|| {
                        black_box(State::from_flat(flat.iter().cloned()).unwrap());
                    })
                }),
            ),
            (
                "split, sorted input",
                cold(&sorted_state, |s| {
                    black_box(s.split(&three).unwrap());
                }),
            ),
            (
                "split again (outputs held)",
                Box::new(|| {
                    // As an engine holding the parts until the next step:
                    // the library remembers outputs only while they live.
                    let previous = held_split.take();
                    let t = timed(|| {
                        held_split.set(Some(state.split(&three).unwrap()));
                    });
                    drop(previous);
                    t
                }),
            ),
            (
                "filter(Param) again (held)",
                Box::new(|| {
                    let previous = held_filter.take();
                    let t = timed(|| {
                        held_filter.set(Some(state.filter(std::slice::from_ref(&param)).unwrap()));
                    });
                    drop(previous);
                    t
                }),
            ),
            (
                "merge again (result held)",
                Box::new(|| {
                    // As an engine that keeps the merged state until the next
                    // step: the library holds merge results only weakly.
                    let previous = held.take();
                    let t = timed(|| {
                        held.set(Some(State::merge(&part_refs).unwrap()));
                    });
                    drop(previous);
                    t
                }),
            ),
        ];
        let ops: Vec<Op<'_>> = ops
            .into_iter()
            .enumerate()
            .filter(|(i, (name, _))| {
                *i == 0 || opts.only.as_ref().is_none_or(|o| name.contains(o.as_str()))
            })
            .map(|(_, op)| op)
            .collect();
        let medians = measure(&ops, opts.budget);
        let floor_ns = medians[0].as_nanos() as f64;
        for ((name, _), median) in ops.iter().zip(&medians) {
            let ns = median.as_nanos() as f64;
            println!(
                "{:>9} {:<28} {:>10.3}ms {:>10.1} {:>9.1}",
                leaves,
                name,
                ns / 1e6,
                ns / leaves as f64,
                ns / floor_ns.max(1.0)
            );
        }
        // One path lookup: per call, not per leaf.
        let lookups = 10_000;
        let t = Instant::now();
        for _ in 0..lookups {
            black_box(state.get(&lookup_path).unwrap());
        }
        println!(
            "{:>9} {:<28} {:>10.1}ns {:>10} {:>9}",
            leaves,
            "path lookup (per call)",
            t.elapsed().as_nanos() as f64 / lookups as f64,
            "-",
            "-"
        );
        if opts.smoke {
            assert_eq!(
                parts[0].num_leaves().unwrap()
                    + parts[1].num_leaves().unwrap()
                    + parts[2].num_leaves().unwrap(),
                leaves
            );
        }
    }
}
