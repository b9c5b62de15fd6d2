//! `nnx-state`: look into safetensors checkpoints, split them by filters
//! and merge them.
//!
//! ```text
//! nnx-state inspect FILE [--filter EXPR] [--flat] [LOAD OPTIONS]
//! nnx-state split FILE --filter EXPR -o OUT [--filter EXPR -o OUT ...] [LOAD OPTIONS]
//! nnx-state merge FILE... -o OUT [--max-shard-size SIZE] [LOAD OPTIONS]
//! ```
//!
//! FILE is a `.safetensors` file, a sharded checkpoint's `*.index.json`, or
//! a directory holding `model.safetensors` or its index. Filters use the
//! library's filter syntax (`Param`, `tag:dropout`, `path:attention`,
//! `path~:attn`, `at:a/0/b`, `~`, `&`, `|`, parentheses, `...`, `none`).
//!
//! A wrong command line gets one line saying what is wrong (with the
//! closest command, option or type name when one is near) and a pointer to
//! `--help`, and exits 2; a failed operation exits 1.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use nnx_state::io::{self, LoadOptions, SaveOptions};
use nnx_state::key::{compare_paths, format_path};
use nnx_state::suggest::closest;
use nnx_state::{parse_filter, types, Array, Filter, Key, Leaf, State, Value};

const USAGE: &str = "\
usage:
  nnx-state inspect FILE [--filter EXPR] [--flat] [LOAD OPTIONS]
  nnx-state split FILE --filter EXPR -o OUT [--filter EXPR -o OUT ...] [LOAD OPTIONS]
  nnx-state merge FILE... -o OUT [--max-shard-size SIZE] [LOAD OPTIONS]
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
merge     merges the checkpoints (files, shards, sharded checkpoints) into
          one: a path found in two of them is an error that names it. OUT is
          a .safetensors file, or with --max-shard-size SIZE (bytes, or like
          5GB, 500MB, 2GiB) a directory (made if missing) that receives
          model-00001-of-0000N.safetensors shards and their index, as
          huggingface_hub writes them. The files' own __metadata__ entries
          are kept (the first file's value where two differ).

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

const COMMANDS: [&str; 3] = ["inspect", "split", "merge"];

/// The options of the commands, with whether each takes a value.
const OPTIONS: [(&str, bool); 10] = [
    ("--filter", true),
    ("-f", true),
    ("--output", true),
    ("-o", true),
    ("--type", true),
    ("--max-shard-size", true),
    ("--flat", false),
    ("--bare", false),
    ("--str-keys", false),
    ("--help", false),
];

/// A failure: the message and the exit code (1: the operation failed, 2:
/// the command line is wrong).
struct Failure(String, u8);

/// A wrong command line: what is wrong, and where to read how it goes.
fn usage_error(message: impl Into<String>) -> Failure {
    Failure(
        format!("{}\nrun 'nnx-state --help' for usage", message.into()),
        2,
    )
}

/// "; did you mean 'X'?" when one of `known` is close to `word`.
fn did_you_mean<'a>(word: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    closest(word, known)
        .map(|k| format!("; did you mean '{k}'?"))
        .unwrap_or_default()
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
            eprintln!("nnx-state: error: {message}");
            ExitCode::from(code)
        }
    }
}

fn run(args: &[String]) -> Result<(), Failure> {
    let Some(command) = args.first() else {
        return Err(usage_error("no command given (inspect, split or merge)"));
    };
    let help = || {
        print!("{USAGE}");
        Ok(())
    };
    let rest = &args[1..];
    if COMMANDS.contains(&command.as_str()) && rest.iter().any(|a| a == "-h" || a == "--help") {
        return help();
    }
    match command.as_str() {
        "-h" | "--help" | "help" => help(),
        "-V" | "--version" => {
            println!("nnx-state {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        "inspect" => inspect(&Args::parse(rest)?),
        "split" => split(&Args::parse(rest)?),
        "merge" => merge(&Args::parse(rest)?),
        other if other.starts_with('-') => Err(usage_error(format!(
            "'{other}' before a command: the command comes first (inspect, split or merge)"
        ))),
        other => Err(usage_error(format!(
            "unknown command '{other}'{}",
            did_you_mean(other, COMMANDS)
        ))),
    }
}

#[derive(Default)]
struct Args {
    files: Vec<PathBuf>,
    filters: Vec<String>,
    outputs: Vec<PathBuf>,
    flat: bool,
    type_name: Option<String>,
    bare: bool,
    str_keys: bool,
    max_shard_size: Option<String>,
}

impl Args {
    fn parse(args: &[String]) -> Result<Args, Failure> {
        let mut out = Args::default();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            // `--type=Param` is `--type Param`.
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n, Some(v.to_owned())),
                _ => (arg.as_str(), None),
            };
            let takes_value = OPTIONS.iter().any(|(o, v)| *o == name && *v);
            let value = if takes_value {
                match inline.or_else(|| it.next().cloned()) {
                    Some(v) => Some(v),
                    None => return Err(usage_error(format!("{name} needs a value"))),
                }
            } else {
                if inline.is_some() {
                    return Err(usage_error(format!("{name} takes no value")));
                }
                None
            };
            match (name, value) {
                ("--filter" | "-f", Some(v)) => out.filters.push(v),
                ("-o" | "--output", Some(v)) => out.outputs.push(PathBuf::from(v)),
                ("--type", Some(v)) => out.type_name = Some(v),
                ("--max-shard-size", Some(v)) => out.max_shard_size = Some(v),
                ("--flat", None) => out.flat = true,
                ("--bare", None) => out.bare = true,
                ("--str-keys", None) => out.str_keys = true,
                (s, _) if s.starts_with('-') && s.len() > 1 => {
                    return Err(usage_error(format!(
                        "unknown option '{s}'{}",
                        did_you_mean(s, OPTIONS.iter().map(|(o, _)| *o))
                    )))
                }
                _ => out.files.push(PathBuf::from(arg)),
            }
        }
        Ok(out)
    }

    /// The one FILE of `inspect` and `split`.
    fn file(&self, command: &str) -> Result<&Path, Failure> {
        match self.files.as_slice() {
            [] => Err(usage_error(format!("{command} needs a FILE"))),
            [file] => Ok(file),
            [_, extra, ..] => Err(usage_error(format!(
                "unexpected argument '{}': {command} takes one FILE",
                extra.display()
            ))),
        }
    }

    /// Refuses the options `command` has no use for.
    fn only(&self, command: &str, allowed: &[&str]) -> Result<(), Failure> {
        let given = [
            ("--filter", !self.filters.is_empty()),
            ("-o", !self.outputs.is_empty()),
            ("--flat", self.flat),
            ("--max-shard-size", self.max_shard_size.is_some()),
        ];
        match given.iter().find(|(o, set)| *set && !allowed.contains(o)) {
            Some((o, _)) => Err(usage_error(format!("{command} takes no {o}"))),
            None => Ok(()),
        }
    }

    fn load_options(&self) -> Result<LoadOptions, Failure> {
        let leaf_type = match (&self.type_name, self.bare) {
            (Some(_), true) => return Err(usage_error("--type and --bare exclude each other")),
            (_, true) => None,
            (None, false) => Some(nnx_state::TypeId::PARAM),
            (Some(name), false) => match types::lookup(name) {
                Some(t) => Some(t),
                None => {
                    return Err(usage_error(format!(
                        "--type: {}",
                        types::unknown_name_message(name)
                    )))
                }
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
        return Err(usage_error(
            "inspect writes nothing: -o is for split and merge",
        ));
    }
    args.only("inspect", &["--filter", "--flat"])?;
    let file = args.file("inspect")?;
    // The command line is checked whole before any file is read.
    let filters = args.parsed_filters()?;
    if filters.len() > 1 {
        return Err(usage_error("inspect takes at most one --filter"));
    }
    let options = args.load_options()?;
    let loaded = io::load(file, &options)?;
    let state = if filters.is_empty() {
        loaded.state
    } else {
        loaded.state.filter(&filters)?.remove(0)
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
    let file = args.file("split")?;
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
    args.only("split", &["--filter", "-o"])?;
    let filters = args.parsed_filters()?;
    let options = args.load_options()?;
    let loaded = io::load(file, &options)?;
    let parts = loaded.state.split(&filters)?;
    let options = SaveOptions {
        metadata: loaded.metadata.clone(),
    };
    for ((part, output), text) in parts.iter().zip(&args.outputs).zip(&args.filters) {
        io::save(part, output, &options)?;
        println!(
            "{}: {} selected by {text}",
            output.display(),
            summary(part)?
        );
    }
    Ok(())
}

/// "3 leaves (48 bytes)".
fn summary(state: &State) -> Result<String, Failure> {
    let rows = rows(state)?;
    let bytes: u64 = rows.iter().map(|r| r.bytes).sum();
    Ok(format!(
        "{} {} ({} bytes)",
        rows.len(),
        if rows.len() == 1 { "leaf" } else { "leaves" },
        thousands(bytes)
    ))
}

fn merge(args: &Args) -> Result<(), Failure> {
    args.only("merge", &["-o", "--max-shard-size"])?;
    if args.files.is_empty() {
        return Err(usage_error("merge needs at least one FILE"));
    }
    let [output] = args.outputs.as_slice() else {
        return Err(usage_error(format!(
            "merge needs one -o OUT, not {}",
            args.outputs.len()
        )));
    };
    let max_shard_size = match &args.max_shard_size {
        Some(text) => Some(parse_size(text).map_err(usage_error)?),
        None => None,
    };
    let options = args.load_options()?;
    // Each leaf with the input it came from.
    let mut leaves: Vec<(Vec<Key>, Leaf, usize)> = Vec::new();
    let mut metadata: BTreeMap<String, String> = BTreeMap::new();
    for (i, file) in args.files.iter().enumerate() {
        let loaded = io::load(file, &options)?;
        for (name, value) in loaded.metadata {
            match metadata.get(&name) {
                Some(kept) if *kept != value => eprintln!(
                    "nnx-state: note: metadata {name:?} is {value:?} in '{}'; kept {kept:?}",
                    file.display()
                ),
                Some(_) => {}
                None => {
                    metadata.insert(name, value);
                }
            }
        }
        leaves.extend(
            loaded
                .state
                .flatten()?
                .into_iter()
                .map(|(path, leaf)| (path, leaf, i)),
        );
    }
    leaves.sort_by(|a, b| compare_paths(&a.0, &b.0).then(a.2.cmp(&b.2)));
    for pair in leaves.windows(2) {
        let ((a, _, i), (b, _, j)) = (&pair[0], &pair[1]);
        let (first, second) = (args.files[*i].display(), args.files[*j].display());
        if a == b {
            return Err(Failure(
                format!(
                    "'{}' is in both '{first}' and '{second}': merge takes each path from one input",
                    format_path(a)
                ),
                1,
            ));
        }
        if b.starts_with(a) {
            return Err(Failure(
                format!(
                    "'{}' is a leaf in '{first}' and holds '{}' in '{second}'",
                    format_path(a),
                    format_path(b)
                ),
                1,
            ));
        }
    }
    let merged = State::from_flat(leaves.into_iter().map(|(p, l, _)| (p, l)))?;
    let save = SaveOptions { metadata };
    match max_shard_size {
        None => io::save(&merged, output, &save)?,
        Some(size) => {
            std::fs::create_dir_all(output).map_err(|e| {
                Failure(
                    format!("cannot make the directory '{}': {e}", output.display()),
                    1,
                )
            })?;
            io::save_sharded(&merged, output, "model", size, &save)?;
        }
    }
    println!(
        "{}: {} from {} {}",
        output.display(),
        summary(&merged)?,
        args.files.len(),
        if args.files.len() == 1 {
            "checkpoint"
        } else {
            "checkpoints"
        }
    );
    Ok(())
}

/// A size in bytes: a number, or one with a unit (`5GB`, `500MB`, `2GiB`,
/// `1.5GB`), as huggingface_hub takes `max_shard_size`.
fn parse_size(text: &str) -> Result<u64, String> {
    const UNITS: [(&str, u64); 9] = [
        ("", 1),
        ("B", 1),
        ("KB", 1_000),
        ("MB", 1_000_000),
        ("GB", 1_000_000_000),
        ("TB", 1_000_000_000_000),
        ("KIB", 1 << 10),
        ("MIB", 1 << 20),
        ("GIB", 1 << 30),
    ];
    let bad =
        || format!("--max-shard-size {text:?}: give bytes, or a size like 5GB, 500MB or 2GiB");
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let unit = unit.trim().to_ascii_uppercase();
    let Some((_, scale)) = UNITS.iter().find(|(u, _)| *u == unit) else {
        return Err(bad());
    };
    let value: f64 = number.parse().map_err(|_| bad())?;
    let bytes = value * *scale as f64;
    if !(1.0..=u64::MAX as f64).contains(&bytes) {
        return Err(format!(
            "--max-shard-size {text:?}: must be at least 1 byte"
        ));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("5GB"), Ok(5_000_000_000));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size(" 1.5 mb "), Ok(1_500_000));
        assert_eq!(parse_size("64"), Ok(64));
        for bad in ["", "GB", "5 parsecs", "0", "0.1B", "-3", "1..2MB"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(90866688), "90,866,688");
    }
}
