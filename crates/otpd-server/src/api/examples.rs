//! Examples for the OpenAPI document: every request body and every JSON success response
//! gets an `example`, so `/docs` shows a request and a response for each operation (and
//! clients generated from the document have one). An example written on the route wins;
//! the others are built here from the schema: its own `example`, `default` or first `enum`
//! value, else a value of its type within its bounds, with realistic values for the
//! fields every caller knows (a phone number, a code, an id).

use serde_json::{Map, Value, json};

/// Deepest nesting an example is built to (schemas refer to each other).
const MAX_DEPTH: usize = 8;

/// Values for well-known property names, where the type alone would say `"string"`.
const KNOWN: &[(&str, &str)] = &[
    ("to", "+14155550123"),
    ("To", "+14155550123"),
    ("code", "123456"),
    ("Code", "123456"),
    ("verification_id", "ver_01jf8zq3k5x7c9v2b4n6m8p0qr"),
    ("service", "default"),
    ("name", "default"),
    ("country", "US"),
    ("locale", "en"),
    ("key", "otpd_live_…"),
    ("entity", "user-42"),
    ("client_ip", "198.51.100.4"),
    ("provider", "twilio"),
    ("friendly_name", "Acme"),
    ("FriendlyName", "Acme"),
    ("Channel", "sms"),
    ("sid", "VAaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
    ("service_sid", "VAaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
    ("account_sid", "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
    ("url", "https://app.example.com/otpd"),
    ("webhook_url", "https://app.example.com/hooks/otpd"),
    ("detail", "`to` is not a valid phone number"),
];

/// Adds the missing examples to an OpenAPI document (as JSON).
pub fn fill(doc: &mut Value) {
    let components = doc.get("components").cloned().unwrap_or(Value::Null);
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for item in paths.values_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for op in item.values_mut() {
            if let Some(content) = op
                .pointer_mut("/requestBody/content")
                .and_then(Value::as_object_mut)
            {
                for media in content.values_mut() {
                    add_example(media, &components, Purpose::Request);
                }
            }
            let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
                continue;
            };
            for (status, response) in responses.iter_mut() {
                if !status.starts_with('2') {
                    continue;
                }
                let Some(content) = response.get_mut("content").and_then(Value::as_object_mut)
                else {
                    continue;
                };
                for (media_type, media) in content.iter_mut() {
                    if media_type.contains("json") {
                        add_example(media, &components, Purpose::Response);
                    }
                }
            }
        }
    }
}

/// What an example shows: a request (what a caller must or usually sends) or a
/// response (everything it holds).
#[derive(Clone, Copy, PartialEq)]
enum Purpose {
    Request,
    Response,
}

fn add_example(media: &mut Value, components: &Value, purpose: Purpose) {
    let Some(media) = media.as_object_mut() else {
        return;
    };
    if media.contains_key("example") || media.contains_key("examples") {
        return;
    }
    let Some(schema) = media.get("schema") else {
        return;
    };
    let example = sample(schema, components, purpose, None, 0);
    media.insert("example".into(), example);
}

/// An example value of `schema` (`name`: the property it is the value of).
fn sample(
    schema: &Value,
    components: &Value,
    purpose: Purpose,
    name: Option<&str>,
    depth: usize,
) -> Value {
    if depth > MAX_DEPTH {
        return Value::Null;
    }
    let schema = resolve(schema, components);
    if let Some(v) = schema
        .get("example")
        .or_else(|| schema.get("examples").and_then(|e| e.get(0)))
        .or_else(|| schema.get("default").filter(|d| !d.is_null()))
        .or_else(|| schema.get("const"))
        .or_else(|| {
            schema
                .get("enum")
                .and_then(|e| e.as_array()?.iter().find(|v| !v.is_null()))
        })
    {
        return v.clone();
    }
    for combined in ["allOf", "oneOf", "anyOf"] {
        if let Some(parts) = schema.get(combined).and_then(Value::as_array) {
            return combine(parts, combined == "allOf", components, purpose, name, depth);
        }
    }
    match first_type(schema) {
        Some("object") => object(schema, components, purpose, depth),
        Some("array") => {
            let item = schema.get("items").cloned().unwrap_or(Value::Null);
            json!([sample(&item, components, purpose, None, depth + 1)])
        }
        Some("integer") => json!(integer(schema)),
        Some("number") => json!(integer(schema) as f64 + 0.05),
        Some("boolean") => json!(true),
        Some("string") => json!(string(schema, name)),
        _ if schema.get("properties").is_some() => object(schema, components, purpose, depth),
        _ => Value::Null,
    }
}

/// Follows a local `$ref` (`#/components/schemas/…`) chain.
fn resolve<'a>(mut schema: &'a Value, components: &'a Value) -> &'a Value {
    for _ in 0..MAX_DEPTH {
        let Some(reference) = schema.get("$ref").and_then(Value::as_str) else {
            break;
        };
        let Some(target) = reference
            .strip_prefix("#/components/")
            .and_then(|path| components.pointer(&format!("/{path}")))
        else {
            break;
        };
        schema = target;
    }
    schema
}

/// The schema's type, the first that is not `null`.
fn first_type(schema: &Value) -> Option<&str> {
    match schema.get("type")? {
        Value::String(t) => Some(t.as_str()),
        Value::Array(types) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null"),
        _ => None,
    }
}

/// `allOf`: the parts' objects merged; `oneOf`/`anyOf`: the first part that is not null.
fn combine(
    parts: &[Value],
    all: bool,
    components: &Value,
    purpose: Purpose,
    name: Option<&str>,
    depth: usize,
) -> Value {
    if all {
        let mut merged = Map::new();
        for part in parts {
            match sample(part, components, purpose, name, depth + 1) {
                Value::Object(fields) => merged.extend(fields),
                other if parts.len() == 1 => return other,
                _ => {}
            }
        }
        return Value::Object(merged);
    }
    parts
        .iter()
        .map(|p| sample(p, components, purpose, name, depth + 1))
        .find(|v| !v.is_null())
        .unwrap_or(Value::Null)
}

/// An object: a response shows every property; a request the required ones and those
/// with a value of their own (`example`), so it is one a caller would send.
fn object(schema: &Value, components: &Value, purpose: Purpose, depth: usize) -> Value {
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut out = Map::new();
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (key, property) in properties {
            let shown = purpose == Purpose::Response
                || required.contains(&key.as_str())
                || resolve(property, components).get("example").is_some()
                || property.get("example").is_some();
            if !shown {
                continue;
            }
            let value = sample(property, components, purpose, Some(key), depth + 1);
            if !value.is_null() || required.contains(&key.as_str()) {
                out.insert(key.clone(), value);
            }
        }
    }
    if out.is_empty()
        && let Some(extra) = schema.get("additionalProperties").filter(|a| a.is_object())
    {
        out.insert(
            "key".into(),
            sample(extra, components, purpose, None, depth + 1),
        );
    }
    Value::Object(out)
}

/// An integer within the schema's bounds.
fn integer(schema: &Value) -> i64 {
    let min = schema.get("minimum").and_then(Value::as_i64);
    let max = schema.get("maximum").and_then(Value::as_i64);
    match (min, max) {
        (Some(min), _) if min > 0 => min,
        (_, Some(max)) if max < 1 => max,
        _ => 1,
    }
}

/// A string: by format, by the property's well-known name, else a placeholder within the
/// length bounds.
fn string(schema: &Value, name: Option<&str>) -> String {
    match schema.get("format").and_then(Value::as_str) {
        Some("date-time") => return "2026-12-07T12:00:00Z".into(),
        Some("date") => return "2026-12-07".into(),
        Some("email") => return "user@example.com".into(),
        Some("uri") | Some("url") => return "https://app.example.com/otpd".into(),
        Some("uuid") => return "4f1c2a9e-8d3b-4e5f-9a6b-7c8d9e0f1a2b".into(),
        Some("ipv4") | Some("ip") => return "198.51.100.4".into(),
        _ => {}
    }
    if let Some(known) = name.and_then(|n| KNOWN.iter().find(|(k, _)| *k == n)) {
        return known.1.into();
    }
    if name
        .is_some_and(|n| n.ends_with("_at") || n.starts_with("date_") || n == "at" || n == "time")
    {
        return "2026-12-07T12:00:00Z".into();
    }
    // An id described by its prefix ("`ver_…`") gets one of that kind.
    if let Some(prefix) = schema
        .get("description")
        .and_then(Value::as_str)
        .and_then(|d| d.strip_prefix('`')?.split_once("_…`"))
        .map(|(prefix, _)| prefix)
        .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
    {
        return format!("{prefix}_01jf8zq3k5x7c9v2b4n6m8p0qr");
    }
    let min = schema.get("minLength").and_then(Value::as_u64).unwrap_or(0) as usize;
    let text = "string".to_string();
    if text.len() < min {
        "x".repeat(min)
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schema_gets_its_own_example_or_one_of_its_type() {
        let components = json!({"schemas": {"Body": {
            "type": "object",
            "required": ["to"],
            "properties": {
                "to": {"type": "string"},
                "code_length": {"type": "integer", "minimum": 4, "maximum": 10},
                "channel": {"type": "string", "enum": ["sms", "voice"], "example": "voice"},
                "metadata": {"type": ["object", "null"]}
            }
        }}});
        let schema = json!({"$ref": "#/components/schemas/Body"});
        assert_eq!(
            sample(&schema, &components, Purpose::Request, None, 0),
            json!({"to": "+14155550123", "channel": "voice"})
        );
        assert_eq!(
            sample(&schema, &components, Purpose::Response, None, 0),
            json!({"to": "+14155550123", "code_length": 4, "channel": "voice", "metadata": {}})
        );
        let id = json!({"type": "object", "properties": {
            "id": {"type": "string", "description": "`ver_…`"},
            "created_at": {"type": "string"}
        }});
        assert_eq!(
            sample(&id, &components, Purpose::Response, None, 0),
            json!({"id": "ver_01jf8zq3k5x7c9v2b4n6m8p0qr", "created_at": "2026-12-07T12:00:00Z"})
        );
    }

    #[test]
    fn a_written_example_is_kept() {
        let mut doc = json!({"paths": {"/x": {"post": {
            "requestBody": {"content": {"application/json": {
                "schema": {"type": "object"}, "example": {"a": 1}}}},
            "responses": {"200": {"content": {"application/json": {
                "schema": {"type": "array", "items": {"type": "integer", "minimum": 3}}}}}}
        }}}});
        fill(&mut doc);
        let op = &doc["paths"]["/x"]["post"];
        assert_eq!(
            op["requestBody"]["content"]["application/json"]["example"],
            json!({"a": 1})
        );
        assert_eq!(
            op["responses"]["200"]["content"]["application/json"]["example"],
            json!([3])
        );
    }
}
