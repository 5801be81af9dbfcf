//! One field error as kube-apiserver reports it (`field.Error`): its type (the `StatusCause` reason), the
//! field path, the offending value and a detail, rendered exactly as `Error()` renders them.

use std::fmt;

/// The kind of a field error; each is one `StatusCause.reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    Invalid,
    Required,
    Duplicate,
    NotSupported,
    Forbidden,
    NotFound,
    TooMany,
    TooLong,
}

impl ErrorType {
    /// The `StatusCause.reason` of this kind (`FieldValueInvalid`, ...).
    pub fn reason(self) -> &'static str {
        match self {
            Self::Invalid => "FieldValueInvalid",
            Self::Required => "FieldValueRequired",
            Self::Duplicate => "FieldValueDuplicate",
            Self::NotSupported => "FieldValueNotSupported",
            Self::Forbidden => "FieldValueForbidden",
            Self::NotFound => "FieldValueNotFound",
            Self::TooMany => "FieldValueTooMany",
            Self::TooLong => "FieldValueTooLong",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Invalid => "Invalid value",
            Self::Required => "Required value",
            Self::Duplicate => "Duplicate value",
            Self::NotSupported => "Unsupported value",
            Self::Forbidden => "Forbidden",
            Self::NotFound => "Not found",
            Self::TooMany => "Too many",
            Self::TooLong => "Too long",
        }
    }
}

/// The offending value, printed as Go's `fmt` prints it in `field.Error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadValue {
    /// A string: quoted (`%q`).
    Str(String),
    /// A number: as is (`%v`).
    Int(i64),
    /// A Go-syntax rendering of a composite value (`%#v`, e.g. `[]int32{2, 1}`), already formatted.
    Go(String),
    /// No value in the message (`field.OmitValueType{}`).
    Omit,
}

impl fmt::Display for BadValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Str(s) => f.write_str(&go_quote(s)),
            Self::Int(i) => write!(f, "{i}"),
            Self::Go(s) => f.write_str(s),
            Self::Omit => Ok(()),
        }
    }
}

/// Go's `strconv.Quote` for the strings that occur in manifests.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A field path as kube-apiserver writes it: `spec.template.spec.containers[0].resources.requests[cpu]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path(String);

impl Path {
    pub fn new(root: &str) -> Self {
        Self(root.to_owned())
    }

    pub fn child(&self, name: &str) -> Self {
        if self.0.is_empty() { Self(name.to_owned()) } else { Self(format!("{}.{name}", self.0)) }
    }

    pub fn index(&self, i: usize) -> Self {
        Self(format!("{}[{i}]", self.0))
    }

    pub fn key(&self, key: &str) -> Self {
        Self(format!("{}[{key}]", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One validation failure: `field: <Type>[: value][: detail]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub kind: ErrorType,
    pub field: String,
    pub value: BadValue,
    pub detail: String,
}

impl FieldError {
    pub fn invalid(path: &Path, value: BadValue, detail: impl Into<String>) -> Self {
        Self { kind: ErrorType::Invalid, field: path.to_string(), value, detail: detail.into() }
    }

    pub fn required(path: &Path, detail: impl Into<String>) -> Self {
        Self { kind: ErrorType::Required, field: path.to_string(), value: BadValue::Omit, detail: detail.into() }
    }

    pub fn forbidden(path: &Path, detail: impl Into<String>) -> Self {
        Self { kind: ErrorType::Forbidden, field: path.to_string(), value: BadValue::Omit, detail: detail.into() }
    }

    pub fn duplicate(path: &Path, value: BadValue) -> Self {
        Self { kind: ErrorType::Duplicate, field: path.to_string(), value, detail: String::new() }
    }

    pub fn not_found(path: &Path, value: BadValue) -> Self {
        Self { kind: ErrorType::NotFound, field: path.to_string(), value, detail: String::new() }
    }

    /// `Unsupported value: "x": supported values: "a", "b"`, the values in the order given (the API server does
    /// not sort them).
    pub fn not_supported(path: &Path, value: BadValue, supported: &[&str]) -> Self {
        let detail = if supported.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = supported.iter().map(|v| go_quote(v)).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        Self { kind: ErrorType::NotSupported, field: path.to_string(), value, detail }
    }

    pub fn too_many(path: &Path, actual: usize, max: usize) -> Self {
        Self {
            kind: ErrorType::TooMany,
            field: path.to_string(),
            value: BadValue::Int(actual as i64),
            detail: format!("must have at most {max} items"),
        }
    }

    pub fn too_long(path: &Path, max: usize) -> Self {
        Self {
            kind: ErrorType::TooLong,
            field: path.to_string(),
            value: BadValue::Omit,
            detail: format!("must have at most {max} bytes"),
        }
    }

    /// The message without the field (`ErrorBody()`), which is also the `StatusCause.message`.
    pub fn body(&self) -> String {
        let omit_value = matches!(self.kind, ErrorType::Required | ErrorType::Forbidden | ErrorType::TooLong)
            || self.value == BadValue::Omit;
        let mut body =
            if omit_value { self.kind.label().to_owned() } else { format!("{}: {}", self.kind.label(), self.value) };
        if !self.detail.is_empty() {
            body.push_str(": ");
            body.push_str(&self.detail);
        }
        body
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

impl std::error::Error for FieldError {}
