//! JSON as the checkpoint formats need it: like `serde_json::Value`, but an
//! object with a repeated name is an error (serde_json keeps the last one
//! silently, and the safetensors crate inherits that), and nesting is
//! bounded by [`JSON_MAX_DEPTH`].
//!
//! Also the JSON form of a metadata value ([`meta_to_json`],
//! [`meta_from_json`]), which checkpoints record and the C API exchanges as
//! text (`nnx_meta_to_json`): `null`, `true`/`false`, an integer, a number
//! with a fraction or an exponent for a float, a string, and tagged arrays
//! for the rest, one JSON level per level of the value:
//!
//! ```json
//! ["tuple", null, "model"]
//! ["list", 1, 2.0, ["tuple"]]
//! ["map", "lr", 0.001, "betas", ["tuple", 0.9, 0.999]]
//! ["float", "0x7ff8000000000000"]
//! ```
//!
//! A map lists its keys and values in turn, in order (JSON objects would
//! not keep the order through every reader); a float that JSON cannot write
//! (NaN, infinities) is tagged with its IEEE bits in hexadecimal.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::error::{bail, Error, ErrorKind, Result as CoreResult};
use crate::limits::MAX_DEPTH;
use crate::meta::{MetaMap, MetaSeq, MetaValue};

/// The deepest JSON [`parse_strict`] reads: a metadata value of
/// [`MAX_DEPTH`] levels (one more for a tagged float at the bottom) inside
/// the five levels of a checkpoint record
/// (`{"leaves": [{"metadata": [[name, kind, value]]}]}`), with a margin.
/// Counted here rather than left to serde_json's fixed limit (128), so
/// that it follows [`MAX_DEPTH`].
pub(crate) const JSON_MAX_DEPTH: usize = MAX_DEPTH + 8;

/// A JSON value parsed with every object's names checked to be distinct,
/// at most `remaining` levels deep.
struct StrictSeed {
    remaining: usize,
}

impl<'de> DeserializeSeed<'de> for StrictSeed {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl StrictSeed {
    /// The seed for the values one level down.
    fn inner<E: de::Error>(&self) -> Result<StrictSeed, E> {
        match self.remaining.checked_sub(1) {
            Some(remaining) => Ok(StrictSeed { remaining }),
            None => Err(E::custom(format!(
                "nested deeper than {JSON_MAX_DEPTH} levels"
            ))),
        }
    }
}

impl<'de> Visitor<'de> for StrictSeed {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element_seed(self.inner()?)? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            let value = map.next_value_seed(self.inner()?)?;
            if out.contains_key(&name) {
                return Err(de::Error::custom(format!("duplicate name {name:?}")));
            }
            out.insert(name, value);
        }
        Ok(Value::Object(out))
    }
}

/// Parses `text` as one JSON value (surrounding whitespace allowed), with
/// repeated names in an object as an error, and nesting past
/// [`JSON_MAX_DEPTH`] too.
pub(crate) fn parse_strict(text: &str) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    // Our seed counts the levels instead, so that a record may hold a
    // metadata value as deep as the library takes.
    de.disable_recursion_limit();
    let value = StrictSeed {
        remaining: JSON_MAX_DEPTH,
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

// ---------------------------------------------------------------------------
// Metadata values

/// The tags of the JSON arrays that stand for values.
const TAG_LIST: &str = "list";
const TAG_TUPLE: &str = "tuple";
const TAG_MAP: &str = "map";
const TAG_FLOAT: &str = "float";

/// A float's IEEE bits as checkpoints write them: `"0x7ff8000000000000"`.
pub(crate) fn float_bits(x: f64) -> String {
    format!("0x{:016x}", x.to_bits())
}

/// The float of a [`float_bits`] string.
pub(crate) fn float_from_bits(text: &str) -> Option<f64> {
    let hex = text.strip_prefix("0x")?;
    if hex.is_empty() || hex.len() > 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok().map(f64::from_bits)
}

/// The JSON form of a value (see the module documentation).
pub(crate) fn meta_to_json(value: &MetaValue) -> Value {
    match value {
        MetaValue::Null => Value::Null,
        MetaValue::Bool(b) => Value::Bool(*b),
        MetaValue::Int(i) => Value::from(*i),
        MetaValue::Float(x) => match Number::from_f64(*x) {
            Some(n) => Value::Number(n),
            None => Value::Array(vec![TAG_FLOAT.into(), float_bits(*x).into()]),
        },
        MetaValue::Str(s) => Value::from(s.as_str()),
        MetaValue::List(_) | MetaValue::Tuple(_) | MetaValue::Map(_) => {
            let mut out = Vec::new();
            let tag = container_to_json(value, &mut out);
            out.insert(0, tag.into());
            Value::Array(out)
        }
    }
}

/// The tag of a list, tuple or map, after pushing its contents to `out`:
/// the items, or each key followed by its value.
pub(crate) fn container_to_json(value: &MetaValue, out: &mut Vec<Value>) -> &'static str {
    match value {
        MetaValue::List(seq) | MetaValue::Tuple(seq) => {
            out.extend(seq.iter().map(meta_to_json));
            if matches!(value, MetaValue::List(_)) {
                TAG_LIST
            } else {
                TAG_TUPLE
            }
        }
        MetaValue::Map(map) => {
            for (key, item) in map.iter() {
                out.push(key.into());
                out.push(meta_to_json(item));
            }
            TAG_MAP
        }
        _ => unreachable!("only containers have contents"),
    }
}

fn format_error(message: String) -> Error {
    Error::new(ErrorKind::Format, message)
}

/// The value of a JSON form (see the module documentation). A malformed
/// form is a `Format` error; a value nested past [`MAX_DEPTH`] `TooDeep`.
pub(crate) fn meta_from_json(json: &Value) -> CoreResult<MetaValue> {
    Ok(match json {
        Value::Null => MetaValue::Null,
        Value::Bool(b) => MetaValue::Bool(*b),
        Value::String(s) => MetaValue::Str(s.clone()),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                MetaValue::Int(i)
            } else if n.is_u64() {
                bail!(Format, "metadata integer {n} is outside the int64 range");
            } else {
                MetaValue::Float(n.as_f64().expect("a number is an i64, u64 or f64"))
            }
        }
        Value::Array(parts) => match parts.split_first() {
            Some((Value::String(tag), rest)) => tagged_from_json(tag, rest)?,
            _ => bail!(
                Format,
                "a metadata array must start with \"list\", \"tuple\", \"map\" or \"float\": {json}"
            ),
        },
        Value::Object(_) => bail!(
            Format,
            "metadata maps are written [\"map\", key, value, ...], not as JSON objects: {json}"
        ),
    })
}

/// The value of a tagged array `[tag, rest...]`, or of a record's
/// `[name, tag, [rest...]]`.
pub(crate) fn tagged_from_json(tag: &str, rest: &[Value]) -> CoreResult<MetaValue> {
    match tag {
        TAG_LIST | TAG_TUPLE => {
            let mut seq = MetaSeq::new();
            for item in rest {
                seq.push(meta_from_json(item)?)?;
            }
            Ok(if tag == TAG_LIST {
                MetaValue::List(seq)
            } else {
                MetaValue::Tuple(seq)
            })
        }
        TAG_MAP => {
            if rest.len() % 2 != 0 {
                bail!(
                    Format,
                    "a metadata map lists keys and values in turn, but has {} items",
                    rest.len()
                );
            }
            let mut map = MetaMap::new();
            for pair in rest.chunks_exact(2) {
                let Value::String(key) = &pair[0] else {
                    bail!(Format, "metadata map keys are strings, not {}", pair[0]);
                };
                if map
                    .insert(key.as_str(), meta_from_json(&pair[1])?)?
                    .is_some()
                {
                    bail!(Format, "metadata map key {key:?} is given twice");
                }
            }
            Ok(MetaValue::Map(map))
        }
        TAG_FLOAT => match rest {
            [Value::String(bits)] => float_from_bits(bits).map(MetaValue::Float).ok_or_else(|| {
                format_error(format!(
                    "{bits:?} is not a float's bits (\"0x\" and 16 hex digits)"
                ))
            }),
            _ => bail!(Format, "a tagged float is [\"float\", \"0x...\"]"),
        },
        _ => bail!(Format, "unknown metadata tag {tag:?}"),
    }
}

/// The value of a JSON text (the C API's `nnx_meta_from_json`). An integer
/// literal too long for 64 bits is refused here: the JSON parser would
/// read it as a float.
pub fn meta_from_text(text: &str) -> CoreResult<MetaValue> {
    check_integer_literals(text)?;
    let json = parse_strict(text).map_err(|e| format_error(format!("metadata JSON: {e}")))?;
    meta_from_json(&json)
}

/// The JSON text of a value (the C API's `nnx_meta_to_json`).
pub fn meta_to_text(value: &MetaValue) -> String {
    meta_to_json(value).to_string()
}

/// Fails on a number with no fraction and no exponent whose digits do not
/// fit 64 bits, outside strings; other text is left to the parser.
fn check_integer_literals(text: &str) -> CoreResult<()> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                i += 1;
                while i < bytes.len()
                    && matches!(bytes[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                {
                    i += 1;
                }
                let literal = &text[start..i];
                if !literal.contains(['.', 'e', 'E']) && literal.parse::<i64>().is_err() {
                    // Either too long for 64 bits or malformed; the parser
                    // reports the malformed ones.
                    let digits = literal.trim_start_matches('-');
                    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                        bail!(
                            Format,
                            "metadata integer {literal} is outside the int64 range"
                        );
                    }
                }
            }
            _ => i += 1,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_names_are_errors_at_any_depth() {
        assert!(parse_strict(r#"{"a": 1, "b": {"c": [1, 2.5, null, true]}}"#).is_ok());
        let e = parse_strict(r#"{"a": 1, "a": 1}"#).unwrap_err();
        assert!(e.to_string().contains("duplicate name \"a\""), "{e}");
        assert!(parse_strict(r#"{"x": {"dtype": "F32", "dtype": "F32"}}"#).is_err());
        assert!(parse_strict("{} x").is_err());
        assert!(parse_strict("{}    ").is_ok());
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = "[".repeat(100_000);
        assert!(parse_strict(&deep).is_err());
    }
    fn text_round_trip(value: &MetaValue) -> MetaValue {
        meta_from_text(&meta_to_text(value)).unwrap()
    }

    #[test]
    fn metadata_values_round_trip_through_text() {
        let value = MetaValue::map([
            (
                "out_sharding",
                MetaValue::tuple([MetaValue::Null, "model".into()]).unwrap(),
            ),
            ("one", MetaValue::tuple([MetaValue::Int(1)]).unwrap()),
            (
                "ints",
                MetaValue::list([MetaValue::Int(i64::MIN), MetaValue::Int(i64::MAX)]).unwrap(),
            ),
            (
                "floats",
                MetaValue::list([1.0.into(), (-0.0).into(), 1e300.into(), 5e-324.into()]).unwrap(),
            ),
            (
                "text",
                MetaValue::list(["".into(), "a\0b \u{e9} \"q\"".into()]).unwrap(),
            ),
            (
                "z",
                MetaValue::map([("b", MetaValue::Bool(false)), ("a", MetaValue::Null)]).unwrap(),
            ),
        ])
        .unwrap();
        let text = meta_to_text(&value);
        assert!(
            text.starts_with(r#"["map","out_sharding",["tuple",null,"model"],"one",["tuple",1]"#),
            "{text}"
        );
        assert_eq!(text_round_trip(&value), value);
        assert_eq!(text_round_trip(&value).to_string(), value.to_string());
        for bits in [
            0x7ff8_0000_0000_0001u64,
            0xfff8_0000_0000_0000,
            0x7ff0_0000_0000_0000,
            0xfff0_0000_0000_0000,
        ] {
            let MetaValue::Float(x) = text_round_trip(&MetaValue::Float(f64::from_bits(bits)))
            else {
                panic!("not a float");
            };
            assert_eq!(x.to_bits(), bits);
        }
        assert_eq!(
            meta_to_text(&MetaValue::Float(f64::INFINITY)),
            r#"["float","0x7ff0000000000000"]"#
        );
        assert_eq!(meta_to_text(&MetaValue::Float(2.0)), "2.0");
        assert_eq!(meta_from_text("2").unwrap(), MetaValue::Int(2));
        assert_eq!(meta_from_text("2.0").unwrap(), MetaValue::Float(2.0));
        assert_eq!(meta_from_text("2e0").unwrap(), MetaValue::Float(2.0));
    }

    #[test]
    fn malformed_metadata_text_is_a_format_error() {
        for text in [
            "{}",
            "[]",
            "[1, 2]",
            r#"["set", 1]"#,
            r#"["map", "a"]"#,
            r#"["map", 1, 2]"#,
            r#"["map", "a", 1, "a", 2]"#,
            r#"["float", "nan"]"#,
            r#"["float", "0x"]"#,
            r#"["float", "0x00000000000000001"]"#,
            r#"["float", 1.0]"#,
            "9223372036854775808",
            "18446744073709551616",
            "-9223372036854775809",
            r#"["list", 123456789012345678901234567890]"#,
            "[",
            "1 2",
        ] {
            let err = meta_from_text(text).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Format, "{text}: {err}");
        }
        // Long digit runs inside strings and in floats are fine.
        let text = r#"["list", "123456789012345678901234567890", 1.5e300, 12345678901234567890.5]"#;
        assert_eq!(
            meta_from_text(text).unwrap().to_string(),
            "['123456789012345678901234567890', 1.5e+300, 1.2345678901234567e+19]"
        );
        assert_eq!(
            meta_from_text("-9223372036854775808").unwrap(),
            MetaValue::Int(i64::MIN)
        );
    }

    #[test]
    fn metadata_text_as_deep_as_the_library_takes() {
        let mut value = MetaValue::Float(f64::NAN);
        for _ in 0..MAX_DEPTH {
            value = MetaValue::tuple([value]).unwrap();
        }
        let text = meta_to_text(&value);
        let back = meta_from_text(&text).unwrap();
        assert_eq!(back.levels(), MAX_DEPTH);
        assert_eq!(back.to_string(), value.to_string());
        let deeper = format!(r#"["list", {text}]"#);
        assert_eq!(
            meta_from_text(&deeper).unwrap_err().kind(),
            ErrorKind::TooDeep
        );
        let nested =
            |levels: usize| format!("{}1{}", r#"["list","#.repeat(levels), "]".repeat(levels));
        let err = meta_from_text(&nested(JSON_MAX_DEPTH)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TooDeep, "{err}");
        let err = meta_from_text(&nested(JSON_MAX_DEPTH + 1)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Format);
        assert!(err.message().contains("nested deeper"), "{err}");
    }
}
