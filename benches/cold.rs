//! Where a first call's time goes: split, filter and merge on a state they
//! have never seen, timed apart from dropping their outputs, on three kinds
//! of input of the same model shape (`benches/ops.rs`):
//!
//! - `structure copy`: new nodes over the same leaves (as `ops` times it);
//! - `deep copy`: `State::deep_copy`, new nodes, variables and arrays laid
//!   out afresh (as `benches/side_by_side.py` times it from Python);
//! - `deep copy, one variable per type`: the same, but every leaf of a type
//!   is the same variable, so visiting a leaf costs no memory access of its
//!   own: what is left is the nodes and the outputs' allocations;
//! - `deep copy, columnar`: `State::deep_copy` as it comes, a columnar
//!   state (a view of a table, see `nnx_state::table`), whose split and
//!   filter outputs are views too, as are the parts merged.
//!
//! The first three are trees (the deep copy turned into one).
//!
//! Both key orders are measured: as a model builds the state (attn's q, k,
//! v, o; not sorted) and sorted at every level, as `nnx.state(model)` gives
//! it. `cargo bench --bench cold` prints medians in ns per leaf; options
//! after `--`: `--leaves 100000`, `--reps 15`. Under `cargo test` it runs
//! once on a small state, untimed, as a smoke test.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nnx_state::{Array, Child, Filter, Leaf, State, TypeId, Variable};

mod common;
use common::{model, structure_copy, LEAVES_PER_LAYER};

/// Makes the leaves: a new variable each, or one per type.
struct Leaves {
    shared: Option<Vec<(TypeId, Arc<Variable>)>>,
}

impl Leaves {
    fn variable(type_id: TypeId) -> Arc<Variable> {
        let value = Arc::new(Array::from_slice(&[1], &[0.0f32]).unwrap());
        Arc::new(Variable::new(type_id, Some(value)).unwrap())
    }

    fn leaf(&mut self, type_id: TypeId) -> Child {
        let variable = match &mut self.shared {
            None => Leaves::variable(type_id),
            Some(made) => match made.iter().find(|(t, _)| *t == type_id) {
                Some((_, v)) => v.clone(),
                None => {
                    let v = Leaves::variable(type_id);
                    made.push((type_id, v.clone()));
                    v
                }
            },
        };
        Child::Leaf(Leaf::Variable(variable))
    }
}

/// What each sample runs on.
#[derive(Clone, Copy, PartialEq)]
enum Input {
    StructureCopy,
    DeepCopy,
    Columnar,
}

/// Median time of the call and of dropping its result, on a new input each
/// time.
fn measure<T>(
    reps: usize,
    input: impl Fn() -> T,
    call: impl Fn(&T) -> Vec<State>,
) -> [Duration; 2] {
    let mut calls = Vec::new();
    let mut drops = Vec::new();
    for _ in 0..reps {
        let fresh = input();
        // Making the input freed many small blocks (a deep copy's tree, the
        // previous sample): the C allocator would consolidate them inside
        // the next large allocation, which is the call's. Done here,
        // untimed, as `side_by_side.py` does.
        #[cfg(target_os = "linux")]
        // SAFETY: malloc_trim only returns free memory to the system.
        unsafe {
            libc::malloc_trim(0);
        }
        let t = Instant::now();
        let out = call(&fresh);
        calls.push(t.elapsed());
        let t = Instant::now();
        drop(black_box(out));
        drops.push(t.elapsed());
    }
    calls.sort();
    drops.sort();
    [calls[reps / 2], drops[reps / 2]]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let smoke = !args.iter().any(|a| a == "--bench");
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(|v| v.parse::<usize>().expect("a number"))
    };
    let leaves = value("--leaves").unwrap_or(if smoke { 900 } else { 100_000 });
    let reps = value("--reps").unwrap_or(if smoke { 1 } else { 15 });
    let three = [
        Filter::of_type(TypeId::PARAM),
        Filter::of_type(TypeId::BATCH_STAT),
        Filter::of_type(TypeId::CACHE),
    ];
    if !smoke {
        println!(
            "{:>8} {:<9} {:<34} {:<8} {:>12} {:>12}",
            "leaves", "order", "input", "call", "ns/leaf", "drop ns/leaf"
        );
    }
    for sorted in [false, true] {
        for (input_name, shared, input) in [
            ("structure copy", false, Input::StructureCopy),
            ("deep copy", false, Input::DeepCopy),
            ("deep copy, one variable per type", true, Input::DeepCopy),
            ("deep copy, columnar", false, Input::Columnar),
        ] {
            let mut make = Leaves {
                shared: shared.then(Vec::new),
            };
            let layers = leaves.div_ceil(LEAVES_PER_LAYER);
            let base = State::from_node(model(layers, sorted, |_, t| make.leaf(t)));
            let node = base.node().unwrap();
            let fresh = || match input {
                Input::StructureCopy => State::from_node(structure_copy(&node)),
                Input::DeepCopy => State::from_node(base.deep_copy().unwrap().node().unwrap()),
                Input::Columnar => base.deep_copy().unwrap(),
            };
            let rows: [(&str, [Duration; 2]); 3] = [
                ("split", measure(reps, fresh, |s| s.split(&three).unwrap())),
                (
                    "filter",
                    measure(reps, fresh, |s| s.filter(&three[..1]).unwrap()),
                ),
                (
                    "merge",
                    measure(
                        reps,
                        || {
                            let parts = fresh().split(&three).unwrap();
                            if input == Input::Columnar {
                                return parts; // views remember nothing
                            }
                            // New nodes: nothing remembered from the split.
                            parts
                                .iter()
                                .map(|p| State::from_node(structure_copy(&p.node().unwrap())))
                                .collect::<Vec<_>>()
                        },
                        |parts| vec![State::merge(&parts.iter().collect::<Vec<_>>()).unwrap()],
                    ),
                ),
            ];
            if smoke {
                // A check that it runs, no timing: the parts hold every leaf.
                let parts = fresh().split(&three).unwrap();
                let held: usize = parts.iter().map(|p| p.num_leaves().unwrap()).sum();
                assert_eq!(held, node.num_leaves());
                continue;
            }
            let n = node.num_leaves() as f64;
            for (call, [time, dropping]) in rows {
                println!(
                    "{:>8} {:<9} {:<34} {:<8} {:>12.1} {:>12.1}",
                    node.num_leaves(),
                    if sorted { "sorted" } else { "model" },
                    input_name,
                    call,
                    time.as_nanos() as f64 / n,
                    dropping.as_nanos() as f64 / n
                );
            }
        }
    }
}
