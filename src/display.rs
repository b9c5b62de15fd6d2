//! An NNX-like listing of a tree, for people.

use std::fmt::Write;

use crate::tree::{Child, Leaf, Node};
use crate::value::Value;

/// At most this many elements of an array are shown.
const MAX_VALUES: usize = 8;

/// Lists the tree as `repr(nnx.State)` does, with arrays shown as
/// `dtype[shape] [values]`, typed keys as `key<fry>[] overlaying uint32[2]
/// [0, 0]` and opaque values as `<opaque TYPE_NAME>`.
pub fn to_string(node: &Node) -> String {
    let mut out = String::from("State(");
    write_node(&mut out, node, 0);
    out.push(')');
    out
}

fn indent(out: &mut String, depth: usize) {
    for _ in 0..depth {
        out.push_str("  ");
    }
}

fn write_node(out: &mut String, node: &Node, depth: usize) {
    if node.is_empty() {
        out.push_str("{}");
        return;
    }
    out.push_str("{\n");
    for (i, (key, child)) in node.iter().enumerate() {
        if i > 0 {
            out.push_str(",\n");
        }
        indent(out, depth + 1);
        let _ = write!(out, "{key}: ");
        match child {
            Child::Node(n) => write_node(out, n, depth + 1),
            Child::Leaf(leaf) => write_leaf(out, leaf, depth + 1),
        }
    }
    out.push('\n');
    indent(out, depth);
    out.push('}');
}

fn write_leaf(out: &mut String, leaf: &Leaf, depth: usize) {
    match leaf {
        Leaf::Array(array) => out.push_str(&array.summary(MAX_VALUES)),
        Leaf::Variable(var) => {
            out.push_str(var.type_name());
            out.push('(');
            let value = var.value();
            let size = match &value {
                Value::Array(array) => Some((array.size(), array.nbytes())),
                Value::Key(key) => Some((key.count(), key.data().nbytes())),
                Value::None | Value::Opaque(_) => None,
            };
            if let Some((size, nbytes)) = size {
                let _ = write!(out, " # {size} ({nbytes} B)");
            }
            out.push('\n');
            indent(out, depth + 1);
            let _ = match &value {
                Value::Array(array) => write!(out, "value={}", array.summary(MAX_VALUES)),
                Value::Key(key) => write!(out, "value={}", key.summary(MAX_VALUES)),
                Value::Opaque(opaque) => write!(out, "value=<opaque {}>", opaque.type_name()),
                Value::None => write!(out, "value=None"),
            };
            for (name, meta) in var.metadata_entries() {
                out.push_str(",\n");
                indent(out, depth + 1);
                let _ = write!(out, "{name}={meta}");
            }
            out.push('\n');
            indent(out, depth);
            out.push(')');
        }
    }
}
