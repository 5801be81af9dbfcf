//! `JsonBody`: the only way handlers read a request body. It refuses a wrong content type (415) before reading,
//! stops reading as soon as the body passes the limit (413), and tells malformed JSON (400) apart from JSON of
//! the wrong shape (422, with a pointer). serde_json's recursion limit turns deeply nested input into a 400
//! instead of a stack overflow.
//!
//! Every body is a JSON object (an array or a scalar is a 422 naming the expected type), and no string in it,
//! key or value, may hold the NUL character: JSON allows `\u0000`, PostgreSQL's `text` and `jsonb` do not, so it
//! is refused here with a pointer to the string instead of failing in the database. Each body type reads its
//! fields through [`Fields`], which refuses unknown fields and takes numbers the way JSON Schema defines
//! integers (`5.0` is the integer 5).

use crate::error::ApiError;
use axum::extract::{FromRef, FromRequest, Request};
use axum::http::header;
use http_body_util::{BodyExt, Limited};
use serde_json::{Map, Value};

/// A request body type: built from the parsed JSON object, with a JSON Pointer for each refusal.
pub trait RequestBody: Sized {
    fn from_object(object: Map<String, Value>) -> Result<Self, ApiError>;
}

/// A parsed JSON body plus the raw JSON value (for idempotency hashing).
pub struct JsonBody<T> {
    pub value: T,
    pub raw: Value,
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The JSON type of a value, as JSON Schema names it.
pub fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Appends one RFC 6901 reference token to a pointer.
pub fn pointer(base: &str, token: &str) -> String {
    format!("{base}/{}", token.replace('~', "~0").replace('/', "~1"))
}

/// The pointer to the first string (object key or value) holding a NUL character, found without recursion.
pub fn first_nul(value: &Value) -> Option<String> {
    let mut stack: Vec<(&Value, String)> = vec![(value, String::new())];
    while let Some((value, at)) = stack.pop() {
        match value {
            Value::String(s) if s.contains('\0') => return Some(at),
            Value::Array(items) => {
                for (index, item) in items.iter().enumerate().rev() {
                    stack.push((item, format!("{at}/{index}")));
                }
            }
            Value::Object(map) => {
                // Reverse order so the first offending entry in document order is found first.
                for (key, item) in map.iter().rev() {
                    let item_at = pointer(&at, key);
                    if key.contains('\0') {
                        return Some(item_at);
                    }
                    stack.push((item, item_at));
                }
            }
            _ => {}
        }
    }
    None
}

/// Refuses a value holding NUL anywhere (422 at `base` + the pointer inside it).
pub fn refuse_nul(base: &str, value: &Value) -> Result<(), ApiError> {
    match first_nul(value) {
        Some(at) => Err(ApiError::invalid(
            format!("{base}{at}"),
            "strings cannot contain the NUL character (\\u0000): it cannot be stored",
        )),
        None => Ok(()),
    }
}

/// The integer a JSON number stands for, as JSON Schema defines integers: `5` and `5.0` are, `5.5` is not.
pub fn integer(value: &Value) -> Option<i64> {
    let number = value.as_number()?;
    if let Some(n) = number.as_i64() {
        return Some(n);
    }
    let float = number.as_f64()?;
    // 2^63 is exactly representable; anything at or past it does not fit.
    (float.fract() == 0.0 && (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&float))
        .then_some(float as i64)
}

/// Rewrites every number that is an integer by JSON Schema's definition (`5.0`) as that integer, so checks that
/// want an integer (`as_u64`) accept it. Only for documents whose numbers are settings (the workflow document),
/// never for an execution's input, which is passed on as given.
pub fn normalize_integers(value: &mut Value) {
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            Value::Number(n) if n.is_f64() => {
                if let Some(i) = integer(value) {
                    *value = Value::from(i);
                }
            }
            Value::Array(items) => stack.extend(items.iter_mut()),
            Value::Object(map) => stack.extend(map.values_mut()),
            _ => {}
        }
    }
}

/// Reads the fields of one JSON object of a request body, each refusal pointing at its field.
pub struct Fields {
    at: String,
    object: Map<String, Value>,
}

impl Fields {
    /// The object at pointer `at`, refusing any field not in `allowed` (the document says
    /// `additionalProperties: false`).
    pub fn new(at: &str, object: Map<String, Value>, allowed: &[&str]) -> Result<Self, ApiError> {
        if let Some(unknown) = object.keys().find(|key| !allowed.contains(&key.as_str())) {
            return Err(ApiError::invalid(
                pointer(at, unknown),
                format!("unknown field `{unknown}`; expected one of: {}", allowed.join(", ")),
            ));
        }
        Ok(Self { at: at.to_string(), object })
    }

    /// An object value at pointer `at` (`what` names it in the refusal).
    pub fn object_at(at: &str, value: Value, what: &str) -> Result<Map<String, Value>, ApiError> {
        match value {
            Value::Object(object) => Ok(object),
            other => {
                let pointer = if at.is_empty() { String::new() } else { at.to_string() };
                Err(ApiError::invalid(pointer, format!("{what} must be a JSON object, not {}", json_type(&other))))
            }
        }
    }

    pub fn pointer(&self, name: &str) -> String {
        pointer(&self.at, name)
    }

    /// Takes a field out; a JSON `null` counts as absent.
    pub fn take(&mut self, name: &str) -> Option<Value> {
        self.object.remove(name).filter(|v| !v.is_null())
    }

    /// An integer field within `range`.
    pub fn integer(&mut self, name: &str, range: std::ops::RangeInclusive<i64>) -> Result<Option<i64>, ApiError> {
        let Some(value) = self.take(name) else { return Ok(None) };
        match integer(&value) {
            Some(n) if range.contains(&n) => Ok(Some(n)),
            _ => Err(ApiError::invalid(
                self.pointer(name),
                format!("`{name}` must be an integer from {} to {}", range.start(), range.end()),
            )),
        }
    }

    /// A number field greater than 0 and at most `max`.
    pub fn positive_number(&mut self, name: &str, max: f64) -> Result<Option<f64>, ApiError> {
        let Some(value) = self.take(name) else { return Ok(None) };
        match value.as_f64() {
            Some(n) if n > 0.0 && n <= max => Ok(Some(n)),
            _ => Err(ApiError::invalid(
                self.pointer(name),
                format!("`{name}` must be a number greater than 0 and at most {max}"),
            )),
        }
    }

    pub fn string(&mut self, name: &str) -> Result<Option<String>, ApiError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(ApiError::invalid(
                self.pointer(name),
                format!("`{name}` must be a string, not {}", json_type(&other)),
            )),
        }
    }

    pub fn boolean(&mut self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(other) => Err(ApiError::invalid(
                self.pointer(name),
                format!("`{name}` must be a boolean, not {}", json_type(&other)),
            )),
        }
    }

    /// An object field.
    pub fn object(&mut self, name: &str) -> Result<Option<Map<String, Value>>, ApiError> {
        let at = self.pointer(name);
        self.take(name).map(|value| Self::object_at(&at, value, &format!("`{name}`"))).transpose()
    }

    /// A field whose value may be any JSON (absent is `null`).
    pub fn any(&mut self, name: &str) -> Value {
        self.object.remove(name).unwrap_or(Value::Null)
    }
}

/// The largest request body accepted (`API_MAX_BODY_BYTES`), taken from the router's state.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: RequestBody,
    BodyLimit: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let BodyLimit(limit) = BodyLimit::from_ref(state);
        let content_type = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !is_json(content_type) {
            return Err(ApiError::UnsupportedMediaType(if content_type.is_empty() {
                "none (expected application/json)".into()
            } else {
                format!("{content_type} (expected application/json)")
            }));
        }
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|len| len > limit) {
            return Err(ApiError::TooLarge { limit });
        }
        let bytes = Limited::new(request.into_body(), limit)
            .collect()
            .await
            .map_err(|err| {
                if err.is::<http_body_util::LengthLimitError>() {
                    ApiError::TooLarge { limit }
                } else {
                    ApiError::Malformed(format!("could not read the body: {err}"))
                }
            })?
            .to_bytes();
        let raw: Value =
            serde_json::from_slice(&bytes).map_err(|err| ApiError::Malformed(format!("invalid JSON: {err}")))?;
        refuse_nul("", &raw)?;
        let object = Fields::object_at("", raw.clone(), "the request body")?;
        let value = T::from_object(object)?;
        Ok(Self { value, raw })
    }
}

/// Like [`JsonBody`], for endpoints whose body is optional: an empty body yields `T::default()`.
pub struct OptionalJsonBody<T>(pub T);

impl<S, T> FromRequest<S> for OptionalJsonBody<T>
where
    S: Send + Sync,
    T: RequestBody + Default,
    BodyLimit: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let has_body = request.headers().contains_key(header::CONTENT_TYPE)
            || request
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|len| len != "0");
        if !has_body {
            return Ok(Self(T::default()));
        }
        JsonBody::<T>::from_request(request, state).await.map(|body| Self(body.value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("application/json; charset=utf-8"));
        assert!(is_json("Application/JSON"));
        assert!(is_json("application/merge-patch+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json(""));
        assert!(!is_json("application/x-www-form-urlencoded"));
    }

    #[test]
    fn nul_is_found_in_keys_and_values_at_any_depth() {
        assert_eq!(first_nul(&json!({"a": [1, {"b": "x\u{0}y"}]})).as_deref(), Some("/a/1/b"));
        assert_eq!(first_nul(&json!({"a/b": {"k\u{0}": 1}})).as_deref(), Some("/a~1b/k\u{0}"));
        assert_eq!(first_nul(&json!("\u{0}")).as_deref(), Some(""));
        assert_eq!(first_nul(&json!({"first": "\u{0}", "second": "\u{0}"})).as_deref(), Some("/first"));
        assert_eq!(first_nul(&json!({"a": ["fine", 1, null, {"b": "ok"}]})), None);
    }

    #[test]
    fn integers_as_json_schema_defines_them() {
        assert_eq!(integer(&json!(5)), Some(5));
        assert_eq!(integer(&json!(5.0)), Some(5));
        assert_eq!(integer(&json!(-0.0)), Some(0));
        assert_eq!(integer(&json!(5.5)), None);
        assert_eq!(integer(&json!(1e300)), None);
        assert_eq!(integer(&json!(u64::MAX)), None);
        assert_eq!(integer(&json!("5")), None);
        assert_eq!(integer(&json!(true)), None);
    }

    #[test]
    fn integral_floats_become_integers() {
        let mut doc = json!({"a": [1.0, 2.5, {"b": -3.0}], "c": 1e300});
        normalize_integers(&mut doc);
        assert_eq!(doc, json!({"a": [1, 2.5, {"b": -3}], "c": 1e300}));
        assert!(doc["a"][0].is_i64());
    }

    #[test]
    fn fields_refuse_unknown_names_and_wrong_types_with_pointers() {
        let object = json!({"a": 1}).as_object().cloned().unwrap();
        let Err(ApiError::Invalid { errors, .. }) = Fields::new("/x", object, &["b"]) else { panic!() };
        assert_eq!(errors[0].pointer, "/x/a");

        let object = json!({"n": 2.0, "s": 3, "o": [1]}).as_object().cloned().unwrap();
        let mut fields = Fields::new("", object, &["n", "s", "o"]).unwrap();
        assert_eq!(fields.integer("n", 0..=9).unwrap(), Some(2));
        let Err(ApiError::Invalid { errors, .. }) = fields.string("s") else { panic!() };
        assert_eq!(errors[0].pointer, "/s");
        let Err(ApiError::Invalid { errors, .. }) = fields.object("o") else { panic!() };
        assert_eq!(errors[0].pointer, "/o");
        assert!(errors[0].message.contains("array"), "{}", errors[0].message);
    }
}
