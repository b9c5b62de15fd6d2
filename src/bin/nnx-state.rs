//! `nnx-state`: look into safetensors checkpoints and split them by filters.
//!
//! ```text
//! nnx-state inspect FILE [--filter EXPR] [--flat] [LOAD OPTIONS]
//! nnx-state split FILE --filter EXPR -o OUT [--filter EXPR -o OUT ...] [LOAD OPTIONS]
//! ```
//!
//! FILE is a `.safetensors` file, a sharded checkpoint's `*.index.json`, or
//! a directory holding `model.safetensors` or its index. Filters use the
//! library's filter syntax (`Param`, `tag:dropout`, `path:attention`,
//! `path~:attn`, `at:a/0/b`, `~`, `&`, `|`, parentheses, `...`, `none`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use nnx_state::io::{self, LoadOptions, SaveOptions};
use nnx_state::{parse_filter, types, Array, Filter, Key, Leaf, State, Value};

const USAGE: &str = "\
usage:
  nnx-state inspect FILE [--filter EXPR] [--flat] [LOAD OPTIONS]
  nnx-state split FILE --filter EXPR -o OUT [--filter EXPR -o OUT ...] [LOAD OPTIONS]
  nnx-state --help | --version

FILE is a .safetensors file, a sharded checkpoint's *.index.json, or a
directory holding model.safetensors or model.safetensors.index.json.

inspect   prints the tree of the checkpoint: for each leaf its type, dtype,
          shape and bytes; for each nested state its leaves and bytes; and
          the totals. --filter EXPR shows only the leaves it selects;
          --flat prints one line per leaf with its full path.
split     splits the checkpoint as nnx.split_state does: each leaf goes to
          the first filter that selects it, and every leaf must be selected
          (end with --filter ... to catch the rest). The i-th part is saved
          to the i-th -o file (safetensors, written atomically).

LOAD OPTIONS (for files not written by nnx-state):
  --type NAME   the variable type of each tensor (default Param)
  --bare        bare arrays instead of variables
  --str-keys    keep decimal name components as string keys

filter syntax: Param, BatchStat, ... (a type and its subtypes), type:NAME,
tag:NAME, path:KEY (an element equals KEY; a bare decimal KEY is an int
key, \"0\" quoted a string), path~:TEXT (an element contains TEXT),
at:a/0/b (that path), ... or * (everything), none; ~ (not), & (and),
| (or), parentheses; ~ binds tightest, then &, then |.
";

/// A failure: the message and the exit code (1: the operation failed, 2:
/// the command line is wrong).
struct Failure(String, u8);

fn usage_error(message: impl Into<String>) -> Failure {
    Failure(format!("{}\n\n{USAGE}", message.into()), 2)
}

impl From<nnx_state::Error> for Failure {
    fn from(e: nnx_state::Error) -> Failure {
        Failure(e.to_string(), 1)
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(message, code)) => {
            eprintln!("nnx-state: {message}");
            ExitCode::from(code)
        }
    }
}

fn run(args: &[String]) -> Result<(), Failure> {
    let Some(command) = args.first() else {
        return Err(usage_error("no command given"));
    };
    match command.as_str() {
        "-h" | "--help" | "help" => {
            print!("{USAGE}");
            Ok(())
        }
        "-V" | "--version" => {
            println!("nnx-state {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        "inspect" => inspect(&Args::parse(&args[1..])?),
        "split" => split(&Args::parse(&args[1..])?),
        other => Err(usage_error(format!("unknown command {other:?}"))),
    }
}

#[derive(Default)]
struct Args {
    file: Option<PathBuf>,
    filters: Vec<String>,
    outputs: Vec<PathBuf>,
    flat: bool,
    type_name: Option<String>,
    bare: bool,
    str_keys: bool,
}

impl Args {
    fn parse(args: &[String]) -> Result<Args, Failure> {
        let mut out = Args::default();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = |name: &str| {
                it.next()
                    .cloned()
                    .ok_or_else(|| usage_error(format!("{name} needs a value")))
            };
            match arg.as_str() {
                "--filter" | "-f" => out.filters.push(value(arg)?),
                "-o" | "--output" => out.outputs.push(PathBuf::from(value(arg)?)),
                "--type" => out.type_name = Some(value(arg)?),
                "--flat" => out.flat = true,
                "--bare" => out.bare = true,
                "--str-keys" => out.str_keys = true,
                s if s.starts_with('-') && s.len() > 1 => {
                    return Err(usage_error(format!("unknown option {s:?}")))
                }
                _ if out.file.is_none() => out.file = Some(PathBuf::from(arg)),
                _ => return Err(usage_error(format!("unexpected argument {arg:?}"))),
            }
        }
        Ok(out)
    }

    fn file(&self) -> Result<&Path, Failure> {
        self.file
            .as_deref()
            .ok_or_else(|| usage_error("no FILE given"))
    }

    fn load_options(&self) -> Result<LoadOptions, Failure> {
        let leaf_type = match (&self.type_name, self.bare) {
            (Some(_), true) => return Err(usage_error("--type and --bare exclude each other")),
            (_, true) => None,
            (None, false) => Some(nnx_state::TypeId::PARAM),
            (Some(name), false) => match types::lookup(name) {
                Some(t) => Some(t),
                None => return Err(usage_error(format!("no variable type is named {name:?}"))),
            },
        };
        Ok(LoadOptions {
            leaf_type,
            copy: false,
            str_keys: self.str_keys,
        })
    }

    fn parsed_filters(&self) -> Result<Vec<Filter>, Failure> {
        self.filters
            .iter()
            .map(|f| parse_filter(f).map_err(|e| usage_error(e.to_string())))
            .collect()
    }
}

fn inspect(args: &Args) -> Result<(), Failure> {
    if !args.outputs.is_empty() {
        return Err(usage_error("inspect writes nothing: -o is for split"));
    }
    let file = args.file()?;
    let loaded = io::load(file, &args.load_options()?)?;
    let filters = args.parsed_filters()?;
    let state = match filters.len() {
        0 => loaded.state,
        1 => loaded.state.filter(&filters)?.remove(0),
        _ => return Err(usage_error("inspect takes at most one --filter")),
    };
    let mut out = String::new();
    let origin = if loaded.written_by_nnx {
        "written by nnx-state"
    } else {
        "written by another tool"
    };
    let _ = writeln!(out, "{}: {origin}", file.display());
    if !loaded.metadata.is_empty() {
        let entries: Vec<String> = loaded
            .metadata
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        let _ = writeln!(out, "metadata: {}", entries.join(", "));
    }
    if let Some(f) = &args.filters.first() {
        let _ = writeln!(out, "filter: {f} = {:?}", filters[0]);
    }
    out.push('\n');
    let rows = rows(&state)?;
    if args.flat {
        print_flat(&mut out, &rows);
    } else {
        print_tree(&mut out, &rows);
    }
    let leaves = rows.len();
    let elements: u64 = rows.iter().map(|r| r.elements).sum();
    let bytes: u64 = rows.iter().map(|r| r.bytes).sum();
    let _ = writeln!(
        out,
        "\ntotal: {} {}, {} elements, {} bytes",
        thousands(leaves as u64),
        if leaves == 1 { "leaf" } else { "leaves" },
        thousands(elements),
        thousands(bytes)
    );
    print!("{out}");
    Ok(())
}

/// One leaf, described.
struct Row {
    path: Vec<Key>,
    kind: String,
    dtype: String,
    shape: String,
    elements: u64,
    bytes: u64,
}

fn rows(state: &State) -> Result<Vec<Row>, Failure> {
    Ok(state
        .flatten()?
        .into_iter()
        .map(|(path, leaf)| {
            let (kind, value) = match &leaf {
                Leaf::Variable(v) => (v.type_name().to_owned(), v.value()),
                Leaf::Array(a) => ("array".to_owned(), Value::Array(a.clone())),
            };
            let described = |dtype: String, a: &Array| {
                let shape = format!("{:?}", a.shape());
                (dtype, shape, a.size() as u64, a.nbytes() as u64)
            };
            let (dtype, shape, elements, bytes) = match &value {
                Value::Array(a) => described(a.dtype().name().to_owned(), a),
                // A key shows its data: the dtype is the key's, the shape
                // and sizes the data's.
                Value::Key(k) => described(k.dtype_name(), k.data()),
                Value::Opaque(o) => (format!("<opaque {}>", o.type_name()), "-".into(), 0, 0),
                Value::None => ("-".into(), "(no value)".into(), 0, 0),
            };
            Row {
                path,
                kind,
                dtype,
                shape,
                elements,
                bytes,
            }
        })
        .collect())
}

fn key_text(key: &Key) -> String {
    let mut s = String::new();
    key.write_plain(&mut s);
    s
}

fn path_text(path: &[Key]) -> String {
    path.iter().map(key_text).collect::<Vec<_>>().join("/")
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn print_flat(out: &mut String, rows: &[Row]) {
    let paths: Vec<String> = rows.iter().map(|r| path_text(&r.path)).collect();
    let width = paths.iter().map(|p| p.chars().count()).max().unwrap_or(0);
    let kind_w = rows.iter().map(|r| r.kind.len()).max().unwrap_or(0);
    let dtype_w = rows.iter().map(|r| r.dtype.len()).max().unwrap_or(0);
    let shape_w = rows.iter().map(|r| r.shape.len()).max().unwrap_or(0);
    for (row, path) in rows.iter().zip(&paths) {
        let _ = writeln!(
            out,
            "{path:<width$}  {:<kind_w$}  {:<dtype_w$}  {:<shape_w$}  {:>13} B",
            row.kind,
            row.dtype,
            row.shape,
            thousands(row.bytes)
        );
    }
}

/// Prints the rows (sorted by path) as an indented tree; each nested state
/// shows its leaf count and bytes.
fn print_tree(out: &mut String, rows: &[Row]) {
    // The lines: (depth, name, a nested state's summary or a leaf's row).
    let mut lines: Vec<(usize, String, Result<String, &Row>)> = Vec::new();
    let mut open: Vec<Key> = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let parent = &row.path[..row.path.len() - 1];
        let common = open.iter().zip(parent).take_while(|(a, b)| a == b).count();
        open.truncate(common);
        for depth in common..parent.len() {
            let prefix = &row.path[..=depth];
            let below: Vec<&Row> = rows[i..]
                .iter()
                .take_while(|r| r.path.starts_with(prefix))
                .collect();
            let bytes: u64 = below.iter().map(|r| r.bytes).sum();
            let summary = format!(
                "{} {}, {} B",
                below.len(),
                if below.len() == 1 { "leaf" } else { "leaves" },
                thousands(bytes)
            );
            lines.push((depth, key_text(&row.path[depth]), Ok(summary)));
            open.push(row.path[depth]);
        }
        lines.push((parent.len(), key_text(&row.path[parent.len()]), Err(row)));
    }
    let width = lines
        .iter()
        .map(|(d, n, _)| 2 * d + n.chars().count())
        .max()
        .unwrap_or(0);
    let kind_w = rows.iter().map(|r| r.kind.len()).max().unwrap_or(0);
    let dtype_w = rows.iter().map(|r| r.dtype.len()).max().unwrap_or(0);
    let shape_w = rows.iter().map(|r| r.shape.len()).max().unwrap_or(0);
    let bytes_w = rows
        .iter()
        .map(|r| thousands(r.bytes).len())
        .max()
        .unwrap_or(0);
    for (depth, name, details) in lines {
        let label = format!("{}{name}", "  ".repeat(depth));
        let details = match details {
            Ok(summary) => summary,
            Err(row) => format!(
                "{:<kind_w$}  {:<dtype_w$}  {:<shape_w$}  {:>bytes_w$} B",
                row.kind,
                row.dtype,
                row.shape,
                thousands(row.bytes)
            ),
        };
        let _ = writeln!(out, "{}", format!("{label:<width$}  {details}").trim_end());
    }
}

fn split(args: &Args) -> Result<(), Failure> {
    let file = args.file()?;
    if args.filters.is_empty() {
        return Err(usage_error("split needs at least one --filter"));
    }
    if args.filters.len() != args.outputs.len() {
        return Err(usage_error(format!(
            "split needs one -o per --filter: {} filters, {} outputs",
            args.filters.len(),
            args.outputs.len()
        )));
    }
    if args.flat {
        return Err(usage_error("--flat is for inspect"));
    }
    let filters = args.parsed_filters()?;
    let loaded = io::load(file, &args.load_options()?)?;
    let parts = loaded.state.split(&filters)?;
    let options = SaveOptions {
        metadata: loaded.metadata.clone(),
    };
    for ((part, output), text) in parts.iter().zip(&args.outputs).zip(&args.filters) {
        io::save(part, output, &options)?;
        let rows = rows(part)?;
        let bytes: u64 = rows.iter().map(|r| r.bytes).sum();
        println!(
            "{}: {} {} ({} bytes) selected by {text}",
            output.display(),
            rows.len(),
            if rows.len() == 1 { "leaf" } else { "leaves" },
            thousands(bytes)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(90866688), "90,866,688");
    }
}
