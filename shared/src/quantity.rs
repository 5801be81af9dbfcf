//! Kubernetes resource quantities (`500m`, `1.5`, `512Mi`, `1G`) parsed to comparable integers. One grammar for
//! both places that read them: the API validates a workflow's `resources` with it (so what it accepts can always
//! be built into a Job), and the dispatcher parses the operator's settings and checks a workflow's requests
//! against the operator's limits with it.

use std::cmp::Ordering;
use std::fmt;

/// A parsed quantity in nano-units (1 CPU = 10^9, 1 byte = 10^9): every Kubernetes suffix maps to an integer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quantity {
    text: String,
    nanos: u128,
}

/// Why a quantity string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a Kubernetes quantity (e.g. `500m`, `2`, `512Mi`, `1G`)")]
pub struct QuantityError(pub String);

impl Quantity {
    /// Parses a non-negative quantity: digits, optionally a `.` and more digits (`1.5`; not `1.` or `.5`), and
    /// an optional suffix (`n`, `u`, `m`, `k`, `M`, `G`, `T`, `P`, `E`, `Ki`, `Mi`, `Gi`, `Ti`, `Pi`, `Ei`).
    /// Exponent notation (`1e3`) is refused: operators and workflows write suffixes, and one notation keeps error
    /// messages simple. So is a quantity too large to compare (beyond about 10^20 Ei).
    pub fn parse(text: &str) -> Result<Self, QuantityError> {
        let err = || QuantityError(text.to_owned());
        let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
        let (number, suffix) = text.split_at(split);
        let multiplier: u128 = match suffix {
            "n" => 1,
            "u" => 1_000,
            "m" => 1_000_000,
            "" => 1_000_000_000,
            "k" => 1_000_000_000_000,
            "M" => 10u128.pow(15),
            "G" => 10u128.pow(18),
            "T" => 10u128.pow(21),
            "P" => 10u128.pow(24),
            "E" => 10u128.pow(27),
            "Ki" => 1_000_000_000 << 10,
            "Mi" => 1_000_000_000 << 20,
            "Gi" => 1_000_000_000 << 30,
            "Ti" => 1_000_000_000 << 40,
            "Pi" => 1_000_000_000 << 50,
            "Ei" => 1_000_000_000 << 60,
            _ => return Err(err()),
        };
        let (whole, fraction) = match number.split_once('.') {
            Some((_, "")) => return Err(err()),
            Some(parts) => parts,
            None => (number, ""),
        };
        if whole.is_empty() {
            return Err(err());
        }
        let digits = |s: &str| -> Result<u128, QuantityError> {
            if s.is_empty() {
                Ok(0)
            } else if s.len() > 30 || !s.bytes().all(|b| b.is_ascii_digit()) {
                Err(err())
            } else {
                s.parse().map_err(|_| err())
            }
        };
        let whole_nanos = digits(whole)?.checked_mul(multiplier).ok_or_else(err)?;
        let scale = 10u128.checked_pow(u32::try_from(fraction.len()).map_err(|_| err())?);
        let fraction_nanos = match scale {
            // Round up: a quantity below one nano-unit still asks for something.
            Some(scale) => digits(fraction)?.checked_mul(multiplier).ok_or_else(err)?.div_ceil(scale),
            None => return Err(err()),
        };
        Ok(Self { text: text.to_owned(), nanos: whole_nanos.checked_add(fraction_nanos).ok_or_else(err)? })
    }

    /// The quantity as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// More than zero.
    pub fn is_positive(&self) -> bool {
        self.nanos > 0
    }
}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    #[test]
    fn orders_cpu_and_memory_across_suffixes() {
        assert!(q("500m") < q("1"));
        assert_eq!(q("1000m").cmp(&q("1")), Ordering::Equal);
        assert_eq!(q("0.5").cmp(&q("500m")), Ordering::Equal);
        assert!(q("1.5") > q("1499m"));
        assert_eq!(q("1Ki").cmp(&q("1024")), Ordering::Equal);
        assert!(q("1Gi") > q("1G"));
        assert!(q("512Mi") < q("1Gi"));
        assert_eq!(q("1k").cmp(&q("1000")), Ordering::Equal);
    }

    #[test]
    fn refuses_malformed_quantities() {
        for bad in
            ["", "abc", "1x", "-1", "1.2.3", ".", "1.", ".5", "1e3", "Mi", "1 Gi", "99999999999999999999999999999Ei"]
        {
            assert!(Quantity::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(!q("0").is_positive() && !q("0.0Gi").is_positive());
        assert!(q("1n").is_positive() && q("0.001").is_positive());
    }
}
