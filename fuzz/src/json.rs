//! JSON values as the fuzzer makes them (bounded depth), for message and
//! body fields whose types the server must check.

use arbitrary::{Arbitrary, Result, Unstructured};
use serde_json::{Map, Value};

/// Any JSON value, at most a few levels deep.
#[derive(Debug, Clone)]
pub struct Json(pub Value);

impl<'a> Arbitrary<'a> for Json {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        value(u, 3).map(Json)
    }
}

fn value(u: &mut Unstructured<'_>, depth: u8) -> Result<Value> {
    let pick = if depth == 0 { u.int_in_range(0..=4)? } else { u.int_in_range(0..=6)? };
    Ok(match pick {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => Value::from(u.arbitrary::<i64>()?),
        3 => serde_json::Number::from_f64(u.arbitrary()?).map_or(Value::Null, Value::Number),
        4 => Value::String(u.arbitrary()?),
        5 => Value::Array((0..u.int_in_range(0..=4)?).map(|_| value(u, depth - 1)).collect::<Result<_>>()?),
        _ => Value::Object(object(u, depth - 1, &[])?),
    })
}

/// An object whose keys are mostly `known` (the fields the server reads).
pub fn object(u: &mut Unstructured<'_>, depth: u8, known: &[&str]) -> Result<Map<String, Value>> {
    let mut m = Map::new();
    for _ in 0..u.int_in_range(0..=5)? {
        let key = if !known.is_empty() && u.ratio(3, 4)? {
            known[u.choose_index(known.len())?].to_string()
        } else {
            u.arbitrary()?
        };
        m.insert(key, value(u, depth)?);
    }
    Ok(m)
}
