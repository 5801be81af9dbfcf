//! Resource quantities as kube-apiserver decodes them (`resource.ParseQuantity`): the whole grammar, signs
//! and exponents included (`-1`, `1e3`, `1.5Gi`), unlike the stricter `crate::quantity` the product writes.
//! A string outside the grammar is refused while the body is decoded (a `400`, before any validation).

use std::cmp::Ordering;

/// Why a quantity string could not be decoded, worded as `resource.ParseQuantity` words it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityDecodeError {
    #[error("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")]
    FormatWrong,
    #[error("unable to parse quantity's suffix")]
    Suffix,
}

/// A decoded quantity: its text and its value in nano-units (saturating far beyond any real resource).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeQuantity {
    text: String,
    nanos: i128,
}

impl KubeQuantity {
    /// Decodes `text` as the API server does.
    pub fn parse(text: &str) -> Result<Self, QuantityDecodeError> {
        let (negative, whole, fraction, suffix) = split(text)?;
        let (exp10, exp2) = interpret_suffix(suffix).ok_or(QuantityDecodeError::Suffix)?;
        let digits = format!("{whole}{fraction}");
        let digits = digits.trim_start_matches('0');
        let mut nanos: i128 = if digits.len() > 36 { i128::MAX } else { digits.parse().unwrap_or(0) };
        let scale = exp10 - fraction.len() as i64 + 9;
        nanos = scale_by_ten(nanos, scale);
        for _ in 0..exp2 {
            nanos = nanos.saturating_mul(2);
        }
        Ok(Self { text: text.to_owned(), nanos: if negative { -nanos } else { nanos } })
    }

    /// Decodes a JSON quantity (a string, or a number as clients may send).
    pub fn from_json(value: &serde_json::Value) -> Result<Self, QuantityDecodeError> {
        match value {
            serde_json::Value::String(s) => Self::parse(s),
            serde_json::Value::Number(n) => Self::parse(&n.to_string()),
            _ => Err(QuantityDecodeError::FormatWrong),
        }
    }

    /// The quantity as written (the API server would print its canonical form, e.g. `1` for `1000m`).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }
}

impl PartialOrd for KubeQuantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for KubeQuantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

fn scale_by_ten(mut value: i128, scale: i64) -> i128 {
    if scale >= 0 {
        for _ in 0..scale.min(60) {
            value = value.saturating_mul(10);
        }
    } else {
        for _ in 0..(-scale).min(60) {
            // Round up: a request below one nano-unit still asks for something.
            value = (value + 9) / 10;
        }
    }
    value
}

/// `parseQuantityString`: sign, digits, `.` and digits, then a suffix of `eEinumkKMGTP` letters followed by an
/// optional signed exponent.
fn split(text: &str) -> Result<(bool, &str, &str, &str), QuantityDecodeError> {
    if text.is_empty() {
        return Err(QuantityDecodeError::FormatWrong);
    }
    let (negative, rest) = match text.as_bytes()[0] {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let digits_end = |s: &str| s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let whole_end = digits_end(rest);
    let (whole, mut rest) = rest.split_at(whole_end);
    let mut fraction = "";
    if let Some(after_dot) = rest.strip_prefix('.') {
        let end = digits_end(after_dot);
        fraction = &after_dot[..end];
        rest = &after_dot[end..];
    }
    if whole.is_empty() && fraction.is_empty() && !text.contains('.') {
        // No number at all: the grammar needs at least one of `[0-9.]`.
        return Err(QuantityDecodeError::FormatWrong);
    }
    let letters = rest.find(|c: char| !"eEinumkKMGTP".contains(c)).unwrap_or(rest.len());
    let mut tail = &rest[letters..];
    tail = tail.strip_prefix(['-', '+']).unwrap_or(tail);
    if !tail.bytes().all(|b| b.is_ascii_digit()) {
        return Err(QuantityDecodeError::FormatWrong);
    }
    Ok((negative, whole, fraction, rest))
}

/// `(power of ten, power of two)` of a suffix, `None` when the API server does not know it.
fn interpret_suffix(suffix: &str) -> Option<(i64, u32)> {
    let decimal = |e| Some((e, 0));
    let binary = |e| Some((0, e));
    match suffix {
        "" => decimal(0),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => binary(10),
        "Mi" => binary(20),
        "Gi" => binary(30),
        "Ti" => binary(40),
        "Pi" => binary(50),
        "Ei" => binary(60),
        s if s.starts_with(['e', 'E']) => s[1..].parse::<i64>().ok().map(|e| (e, 0)),
        _ => None,
    }
}
