//! Replays the cases of `tests/data/conformance.jsonl`, recorded from real
//! flax.nnx by `conformance/generate.py`, through the Rust core, and checks
//! that every result agrees: keys in the same order at every level, the very
//! same leaf objects, and the same errors. The file's format is documented at
//! the top of the generator.

use std::collections::HashMap;
use std::sync::Arc;

use nnx_state::{
    key::format_path_tuple, ops, types, Array, Child, ErrorKind, Filter, Key, Leaf, MetaValue,
    Node, TypeId, Variable,
};
use serde_json::Value;

const CASES: &str = include_str!("data/conformance.jsonl");

/// The leaves of one case, by ID, created on first sight.
#[derive(Default)]
struct Leaves {
    by_id: HashMap<i64, Leaf>,
}

impl Leaves {
    fn get(&mut self, json: &Value) -> Leaf {
        if let Some(id) = json.get("array").and_then(Value::as_i64) {
            return self
                .by_id
                .entry(id)
                .or_insert_with(|| Leaf::Array(Arc::new(value_of(id))))
                .clone();
        }
        let id = json["var"].as_i64().expect("a leaf has an id");
        self.by_id
            .entry(id)
            .or_insert_with(|| {
                let type_id = type_named(json["type"].as_str().expect("a type name"));
                let var = Variable::new(type_id, Some(Arc::new(value_of(id)))).unwrap();
                if let Some(tag) = json["tag"].as_str() {
                    var.set_metadata("tag", MetaValue::Str(tag.to_owned()))
                        .unwrap();
                }
                Leaf::Variable(Arc::new(var))
            })
            .clone()
    }
}

fn value_of(id: i64) -> Array {
    Array::from_slice(&[1], &[id as f32]).unwrap()
}

fn type_named(name: &str) -> TypeId {
    types::lookup(name).unwrap_or_else(|| panic!("type {name} is not registered"))
}

fn key(json: &Value) -> Key {
    match json {
        Value::String(s) => Key::str(s),
        Value::Number(n) => Key::int(n.as_i64().expect("an i64 key")),
        other => panic!("not a key: {other}"),
    }
}

fn path(json: &Value) -> Vec<Key> {
    json.as_array().expect("a path").iter().map(key).collect()
}

fn tree(json: &Value, leaves: &mut Leaves) -> Node {
    let mut node = Node::new();
    for pair in json.as_array().expect("a tree") {
        let child = &pair[1];
        let value = match child.get("state") {
            Some(sub) => Child::Node(Arc::new(tree(sub, leaves))),
            None => Child::Leaf(leaves.get(child)),
        };
        node.insert(key(&pair[0]), value);
    }
    node
}

fn filter(json: &Value) -> Filter {
    let list =
        |v: &Value| -> Vec<Filter> { v.as_array().expect("filters").iter().map(filter).collect() };
    if let Some(t) = json.get("of_type") {
        Filter::of_type(type_named(t.as_str().unwrap()))
    } else if let Some(t) = json.get("tag") {
        Filter::with_tag(t.as_str().unwrap())
    } else if let Some(k) = json.get("path_contains") {
        Filter::path_contains(key(k), json["exact"].as_bool().unwrap())
    } else if let Some(ps) = json.get("path_in") {
        Filter::path_in(ps.as_array().unwrap().iter().map(path).collect())
    } else if let Some(fs) = json.get("any") {
        Filter::any(list(fs)).unwrap()
    } else if let Some(fs) = json.get("all") {
        Filter::all(list(fs)).unwrap()
    } else if let Some(f) = json.get("not") {
        Filter::negate(filter(f)).unwrap()
    } else if let Some(form) = json.get("everything") {
        match form.as_str().unwrap() {
            // `...` and `True` obey the "last filters" rule; an Everything()
            // instance does not, which Any(Everything) reproduces.
            "ellipsis" | "true" => Filter::Everything,
            _ => Filter::any(vec![Filter::Everything]).unwrap(),
        }
    } else if json.get("nothing").is_some() {
        Filter::Nothing
    } else if let Some(name) = json.get("callback") {
        callback(name.as_str().unwrap())
    } else {
        panic!("unknown filter {json}")
    }
}

fn callback(name: &str) -> Filter {
    match name {
        "depth_even" => Filter::callback(|p, _| Ok(p.len() % 2 == 0)),
        "last_key_int" => Filter::callback(|p, _| Ok(matches!(p.last(), Some(Key::Int(_))))),
        "is_variable" => Filter::callback(|_, leaf| Ok(matches!(leaf, Leaf::Variable(_)))),
        "value_gt_50" => Filter::callback(|_, leaf| {
            let array = match leaf {
                Leaf::Variable(v) => v.array().expect("a value"),
                Leaf::Array(a) => a.clone(),
            };
            Ok(array.to_f64_vec().unwrap()[0] > 50.0)
        }),
        other => panic!("unknown callback {other}"),
    }
}

/// Compares an output tree with the expected one: same keys in the same
/// order at every level, and the very leaf objects the IDs name.
fn compare(
    node: &Node,
    expected: &Value,
    leaves: &Leaves,
    at: &mut Vec<Key>,
) -> Result<(), String> {
    let pairs = expected.as_array().unwrap();
    let got: Vec<&Key> = node.keys().collect();
    let want: Vec<Key> = pairs.iter().map(|p| key(&p[0])).collect();
    if got.len() != want.len() || got.iter().zip(&want).any(|(a, b)| *a != b) {
        return Err(format!(
            "at {}: keys {:?}, expected {:?}",
            format_path_tuple(at),
            got,
            want
        ));
    }
    for (pair, (k, child)) in pairs.iter().zip(node.iter()) {
        at.push(*k);
        let spec = &pair[1];
        match (child, spec.get("state")) {
            (Child::Node(n), Some(sub)) => compare(n, sub, leaves, at)?,
            (Child::Leaf(leaf), None) => {
                let id = spec.get("var").or_else(|| spec.get("array")).unwrap();
                let want = &leaves.by_id[&id.as_i64().unwrap()];
                if !leaf.same(want) {
                    return Err(format!(
                        "at {}: not the input leaf {id}",
                        format_path_tuple(at)
                    ));
                }
            }
            _ => {
                return Err(format!(
                    "at {}: a leaf where a state is expected, or the reverse",
                    format_path_tuple(at)
                ))
            }
        }
        at.pop();
    }
    Ok(())
}

fn run_case(case: &Value) -> Result<(), String> {
    let mut leaves = Leaves::default();
    let inputs: Vec<Arc<Node>> = case
        .get("inputs")
        .map(|ins| {
            ins.as_array()
                .unwrap()
                .iter()
                .map(|t| Arc::new(tree(t, &mut leaves)))
                .collect()
        })
        .unwrap_or_default();
    let filters: Vec<Filter> = case
        .get("filters")
        .map(|fs| fs.as_array().unwrap().iter().map(filter).collect())
        .unwrap_or_default();
    let result: nnx_state::Result<Vec<Arc<Node>>> = match case["op"].as_str().unwrap() {
        "filter" => ops::filter(&inputs[0], &filters),
        "split" => ops::split(&inputs[0], &filters),
        "merge" => ops::merge(&inputs).map(|n| vec![n]),
        "diff" => Ok(vec![ops::diff(&inputs[0], &inputs[1])]),
        "from_flat" => {
            let pairs: Vec<(Vec<Key>, Leaf)> = case["pairs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (path(&p[0]), leaves.get(&p[1])))
                .collect();
            ops::from_flat(pairs).map(|n| vec![Arc::new(n)])
        }
        other => panic!("unknown op {other}"),
    };
    let expect = &case["expect"];
    match (result, expect.get("error").and_then(Value::as_str)) {
        (Ok(outputs), None) => {
            let wanted = expect["states"].as_array().unwrap();
            if outputs.len() != wanted.len() {
                return Err(format!(
                    "{} outputs, expected {}",
                    outputs.len(),
                    wanted.len()
                ));
            }
            for (i, (out, want)) in outputs.iter().zip(wanted).enumerate() {
                compare(out, want, &leaves, &mut Vec::new())
                    .map_err(|e| format!("output {i}: {e}"))?;
            }
            Ok(())
        }
        (Err(e), Some("FILTER_ORDER")) if e.kind() == ErrorKind::FilterOrder => Ok(()),
        (Err(e), Some("NON_EXHAUSTIVE")) if e.kind() == ErrorKind::NonExhaustive => {
            let first = format_path_tuple(&path(&expect["path"]));
            if e.message().contains(&first) {
                Ok(())
            } else {
                Err(format!("message {:?} does not name {first}", e.message()))
            }
        }
        (Ok(_), Some(error)) => Err(format!("succeeded, Flax raised {error}")),
        (Err(e), expected) => Err(format!(
            "failed with {:?} ({e}), expected {expected:?}",
            e.kind()
        )),
    }
}

#[test]
fn every_case_agrees_with_flax() {
    let mut lines = CASES.lines();
    let header: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(header["format"], "nnx-state-conformance");
    for pair in header["types"].as_array().unwrap() {
        let parent = type_named(pair[1].as_str().unwrap());
        types::register(pair[0].as_str().unwrap(), parent).unwrap();
    }
    let mut failures = Vec::new();
    let mut count = 0;
    let mut extensions = 0;
    for line in lines {
        let case: Value = serde_json::from_str(line).unwrap();
        count += 1;
        if case.get("extension").is_some() {
            extensions += 1;
        }
        if let Err(why) = run_case(&case) {
            failures.push(format!("case {} ({}): {why}", case["id"], case["op"]));
        }
    }
    assert!(count >= 1000, "only {count} cases");
    println!(
        "{count} cases replayed ({extensions} where Flax fails and our documented rule applies)"
    );
    assert!(
        failures.is_empty(),
        "{} of {count} cases disagree with Flax:\n{}",
        failures.len(),
        failures
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
