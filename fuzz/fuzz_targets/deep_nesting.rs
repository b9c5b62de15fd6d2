//! Deep nesting and long filter chains, near and past the nesting limit.
//!
//! Each input is a list of steps decoded with `arbitrary`: set a leaf at a
//! path of some depth (in the state, or in a live view some levels down),
//! nest one state into another, update a view from a state, build a state
//! from a flat list, chain or share filters (Not, Any, All; the same part
//! twice, so that the written-out size doubles), parse a filter text of
//! nested parentheses and `~`, load a safetensors file whose names have
//! many components, and run every operation on what was built. What must
//! hold: no crash, hang or stack overflow; a step fails with `TooDeep`
//! exactly when it would pass `MAX_DEPTH` (and with nothing else), a
//! failed step changes nothing, and every state stays within the limit.

#![no_main]

use std::sync::Arc;

use ::nnx_state::io::{self, LoadOptions};
use ::nnx_state::limits::MAX_FILTER_PARTS;
use ::nnx_state::{
    parse_filter, Array, ErrorKind, Filter, Key, State, TypeId, Variable, MAX_DEPTH,
};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

/// A depth around the limit: most inputs stay near it.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Depth {
    Near(i8),
    Any(u16),
}

impl Depth {
    fn get(self) -> usize {
        match self {
            Depth::Near(d) => (MAX_DEPTH as i64 + (d as i64 % 8)).max(1) as usize,
            Depth::Any(d) => (d as usize % (4 * MAX_DEPTH)).max(1),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Step {
    /// A leaf at a path of that depth, below a view `view` levels down.
    Set { state: u8, view: u8, depth: Depth },
    /// `states[from]` put at a path of `depth` keys in `states[into]`.
    Nest { into: u8, from: u8, depth: Depth },
    /// A view `view` levels down in `states[into]` updated from `states[from]`.
    Update { into: u8, from: u8, view: u8 },
    /// A new state from a flat list with paths of these depths.
    FromFlat { depths: Vec<Depth> },
    /// `filters[of]` wrapped `times` times in Not, Any or All.
    Chain { of: u8, times: u8, how: u8 },
    /// Any(filters[a], filters[b]): shared parts.
    Pair { a: u8, b: u8 },
    /// A filter text of `parens` parentheses around `nots` `~`s.
    Parse { parens: Depth, nots: Depth },
    /// A safetensors file whose one tensor's name has `components` parts.
    Load { components: Depth },
    /// Every operation on `states[state]` with `filters[filter]`.
    Run { state: u8, filter: u8 },
}

struct World {
    states: Vec<State>,
    filters: Vec<Filter>,
    variable: Arc<Variable>,
}

fn path(depth: usize, tag: &str) -> Vec<Key> {
    (0..depth)
        .map(|i| match i {
            0 => Key::str(tag),
            _ => Key::int(i as i64 % 3),
        })
        .collect()
}

/// How many levels the state has: the longest path to a leaf or to an
/// empty nested state (which the limit counts too: operations walk into
/// it).
fn depth_of(state: &State) -> usize {
    fn levels(node: &nnx_state::Node) -> usize {
        node.iter()
            .map(|(_, child)| match child {
                nnx_state::Child::Node(n) => 1 + levels(n),
                nnx_state::Child::Leaf(_) => 1,
            })
            .max()
            .unwrap_or(0)
    }
    levels(&state.node().expect("a live state"))
}

fn expect_limit<T>(result: nnx_state::Result<T>, too_deep: bool, what: &str) -> Option<T> {
    match result {
        Ok(value) => {
            assert!(!too_deep, "{what}: past the limit, yet it worked");
            Some(value)
        }
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::TooDeep, "{what}: {e}");
            assert!(too_deep, "{what}: within the limit, yet {e}");
            None
        }
    }
}

impl World {
    fn state(&self, i: u8) -> &State {
        &self.states[i as usize % self.states.len()]
    }

    fn filter(&self, i: u8) -> &Filter {
        &self.filters[i as usize % self.filters.len()]
    }

    /// A view `levels` down the first path of `state` that goes that deep,
    /// and how deep it is.
    fn view(&self, state: &State, levels: u8) -> (State, usize) {
        let mut view = state.clone();
        let mut depth = 0;
        for _ in 0..levels % 8 {
            let Some(key) = view.keys().expect("keys").into_iter().find(|k| {
                matches!(view.get(&[*k]), Ok(nnx_state::Entry::State(_)))
            }) else {
                break;
            };
            view = view.view(&[key]).expect("a nested state");
            depth += 1;
        }
        (view, depth)
    }

    fn step(&mut self, step: Step) {
        match step {
            Step::Set { state, view, depth } => {
                let state = self.state(state).clone();
                let (view, above) = self.view(&state, view);
                let p = path(depth.get(), "s");
                let before = state.num_leaves().expect("leaves");
                let result = view.set_variable(&p, self.variable.clone());
                let too_deep = above + p.len() > MAX_DEPTH;
                // A path through a leaf fails too, but never past the limit.
                if let Err(e) = &result {
                    if e.kind() == ErrorKind::PathThroughLeaf && !too_deep {
                        return;
                    }
                }
                if expect_limit(result, too_deep, "set").is_none() {
                    assert_eq!(state.num_leaves().expect("leaves"), before);
                }
            }
            Step::Nest { into, from, depth } => {
                let (into, from) = (self.state(into).clone(), self.state(from).clone());
                let p = path(depth.get() % (MAX_DEPTH + 4), "n");
                if p.is_empty() {
                    return;
                }
                let below = depth_of(&from);
                let before = into.num_leaves().expect("leaves");
                let result = into.set_state(&p, &from);
                if let Err(e) = &result {
                    if e.kind() == ErrorKind::PathThroughLeaf {
                        return;
                    }
                }
                // An empty nested node still sits at its path.
                let deepest = p.len() + below;
                if expect_limit(result, deepest > MAX_DEPTH, "set_state").is_none() {
                    assert_eq!(into.num_leaves().expect("leaves"), before);
                }
            }
            Step::Update { into, from, view } => {
                let (into, from) = (self.state(into).clone(), self.state(from).clone());
                let (view, above) = self.view(&into, view);
                let too_deep = above + depth_of(&from) > MAX_DEPTH;
                let before = into.flatten().expect("flat").len();
                if expect_limit(view.update(&from), too_deep, "update").is_none() {
                    assert_eq!(into.flatten().expect("flat").len(), before);
                }
            }
            Step::FromFlat { depths } => {
                let pairs: Vec<(Vec<Key>, nnx_state::Leaf)> = depths
                    .iter()
                    .take(16)
                    .enumerate()
                    .map(|(i, d)| {
                        (
                            path(d.get(), &format!("f{i}")),
                            self.variable.clone().into(),
                        )
                    })
                    .collect();
                let too_deep = pairs.iter().any(|(p, _)| p.len() > MAX_DEPTH);
                if let Some(state) = expect_limit(State::from_flat(pairs), too_deep, "from_flat")
                {
                    self.states.push(state);
                }
            }
            Step::Chain { of, times, how } => {
                let mut filter = self.filter(of).clone();
                for _ in 0..times {
                    let depth = filter.depth() + 1;
                    let made = match how % 3 {
                        0 => Filter::negate(filter.clone()),
                        1 => Filter::any(vec![filter.clone()]),
                        _ => Filter::all(vec![filter.clone(), Filter::Everything]),
                    };
                    let size = filter.size() + if how % 3 == 2 { 2 } else { 1 };
                    let too_big = size > MAX_FILTER_PARTS;
                    match made {
                        Ok(f) => {
                            assert!(depth <= MAX_DEPTH);
                            filter = f;
                        }
                        Err(e) if e.kind() == ErrorKind::TooDeep => {
                            assert!(depth > MAX_DEPTH, "{e}");
                            break;
                        }
                        Err(e) => {
                            assert!(too_big, "{e}");
                            break;
                        }
                    }
                }
                self.filters.push(filter);
            }
            Step::Pair { a, b } => {
                let (a, b) = (self.filter(a).clone(), self.filter(b).clone());
                let depth = a.depth().max(b.depth()) + 1;
                let size = 1 + a.size() + b.size();
                match Filter::any(vec![a, b]) {
                    Ok(f) => {
                        assert!(depth <= MAX_DEPTH && size <= MAX_FILTER_PARTS);
                        self.filters.push(f);
                    }
                    Err(e) => assert!(depth > MAX_DEPTH || size > MAX_FILTER_PARTS, "{e}"),
                }
            }
            Step::Parse { parens, nots } => {
                let (parens, nots) = (parens.get() % (2 * MAX_DEPTH), nots.get() % (2 * MAX_DEPTH));
                let text = format!("{}{}Param{}", "(".repeat(parens), "~".repeat(nots), ")".repeat(parens));
                // `~`s nest the parser and the filter; parentheses only the
                // parser; both count against the limit.
                let too_deep = parens + nots > MAX_DEPTH || nots + 1 > MAX_DEPTH;
                if let Some(f) = expect_limit(parse_filter(&text), too_deep, &text) {
                    self.filters.push(f);
                }
            }
            Step::Load { components } => {
                let n = components.get();
                let name = vec!["a"; n].join(".");
                let header = format!(
                    "{{\"{name}\":{{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}}}"
                );
                let padded = header.len().div_ceil(8) * 8;
                let mut bytes = (padded as u64).to_le_bytes().to_vec();
                bytes.extend_from_slice(header.as_bytes());
                bytes.resize(8 + padded, b' ');
                bytes.extend_from_slice(&1.0f32.to_le_bytes());
                let options = LoadOptions::default();
                let loaded = io::load_bytes(Arc::from(bytes), &options).map(|l| l.state);
                if let Some(state) = expect_limit(loaded, n > MAX_DEPTH, "load") {
                    assert_eq!(depth_of(&state), n);
                    self.states.push(state);
                }
            }
            Step::Run { state, filter } => {
                let state = self.state(state).clone();
                let filter = self.filter(filter).clone();
                let parts = state
                    .filter(&[filter.clone(), Filter::Everything])
                    .expect("filter");
                let split = state
                    .split(&[filter, Filter::Everything])
                    .expect("split with a last Everything");
                let merged = State::merge(&[&split[0], &split[1]]).expect("merge");
                let _ = merged.diff(&parts[0]).expect("diff");
                let _ = state.deep_copy().expect("deep copy");
                let _ = state.to_string_tree().expect("listing");
                let _ = format!("{:?}", self.filters.last());
                assert!(depth_of(&merged) <= MAX_DEPTH);
            }
        }
    }
}

fuzz_target!(|steps: Vec<Step>| {
    let array = Arc::new(Array::from_slice(&[1], &[0.5f32]).expect("an array"));
    let variable = Arc::new(Variable::new(TypeId::PARAM, Some(array)).expect("a variable"));
    let mut world = World {
        states: vec![State::new(), State::new()],
        filters: vec![Filter::of_type(TypeId::PARAM), Filter::Nothing],
        variable,
    };
    for step in steps.into_iter().take(24) {
        world.step(step);
    }
    for state in &world.states {
        assert!(depth_of(state) <= MAX_DEPTH);
    }
});
