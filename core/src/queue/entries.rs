//! Reading Redis stream replies. `XRANGE`, `XREAD`, `XREADGROUP` and `XAUTOCLAIM` all carry
//! entries as `[id, [field, value, ...]]`; this is the one place that takes them apart.

use redis::Value;

/// One stream entry: its id and its fields in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The entry id (`<ms>-<seq>`).
    pub id: String,
    /// Field/value pairs.
    pub fields: Vec<(String, String)>,
}

impl Entry {
    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Entries of a list of `[id, fields]` pairs (`XRANGE`, one stream of `XREAD`). An entry
/// deleted while pending comes back with nil fields and is skipped.
pub fn entries(value: Value) -> Vec<Entry> {
    let Value::Array(items) = value else {
        return Vec::new();
    };
    items.into_iter().filter_map(entry).collect()
}

/// Entries of every stream in an `XREAD`/`XREADGROUP` reply (`[[key, entries], ...]` or a
/// RESP3 map).
pub fn read_reply_entries(value: Value) -> Vec<Entry> {
    let streams = match value {
        Value::Array(s) => s,
        Value::Map(m) => m
            .into_iter()
            .map(|(k, v)| Value::Array(vec![k, v]))
            .collect(),
        _ => return Vec::new(),
    };
    streams
        .into_iter()
        .flat_map(|stream| match stream {
            Value::Array(mut kv) if kv.len() == 2 => entries(kv.remove(1)),
            _ => Vec::new(),
        })
        .collect()
}

fn entry(value: Value) -> Option<Entry> {
    let Value::Array(mut pair) = value else {
        return None;
    };
    if pair.len() != 2 {
        return None;
    }
    let Value::Array(raw) = pair.pop()? else {
        return None;
    };
    let id = text(&pair[0])?;
    let fields = raw
        .chunks(2)
        .filter_map(|kv| match kv {
            [k, v] => Some((text(k)?, text(v).unwrap_or_default())),
            _ => None,
        })
        .collect();
    Some(Entry { id, fields })
}

/// A bulk or simple string as text.
pub fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// `XRANGE key (after + COUNT count`: the entries after `after` (exclusive), or from the
/// start; one page of a stream that a reader walks with its own cursor.
pub async fn range_after(
    conn: &mut redis::aio::ConnectionManager,
    key: &str,
    after: Option<&str>,
    count: usize,
) -> redis::RedisResult<redis::Value> {
    let start = after
        .map(|id| format!("({id}"))
        .unwrap_or_else(|| "-".into());
    redis::cmd("XRANGE")
        .arg(key)
        .arg(start)
        .arg("+")
        .arg("COUNT")
        .arg(count)
        .query_async(conn)
        .await
}
