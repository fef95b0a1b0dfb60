//! pgvector's value types as Serverpod sends them. `Vector(n)` and `HalfVector(n)` are
//! plain `Vec<f64>` (a JSON array of numbers); the two with their own text form are here.

use std::fmt::{self, Write as _};
use std::str::FromStr;

/// `SparseVector(n)`: the non-zero entries of an `n`-dimensional vector. Its JSON form
/// is pgvector's text, `"{1:1.0,3:2.5}/5"` (1-based indices), as Serverpod writes it;
/// a dense array of numbers also decodes.
///
/// ```
/// use streampod_protocol::types::SparseVector;
///
/// let v = SparseVector::from_dense(&[1.0, 0.0, 2.5, 0.0, 0.0]);
/// assert_eq!(v.to_string(), "{1:1.0,3:2.5}/5");
/// assert_eq!("{1:1.0,3:2.5}/5".parse::<SparseVector>(), Ok(v.clone()));
/// assert_eq!(v.to_dense(), [1.0, 0.0, 2.5, 0.0, 0.0]);
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SparseVector {
    dimensions: usize,
    /// 0-based indices, ascending, each with its value in `values`.
    indices: Vec<usize>,
    values: Vec<f64>,
}

/// Text that is not a sparse vector or bit string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} '{text}': {reason}")]
pub struct InvalidVector {
    kind: &'static str,
    text: String,
    reason: &'static str,
}

impl SparseVector {
    /// The most dimensions a sparse vector read from text (the wire) may have:
    /// 1,000,000, so [`to_dense`](Self::to_dense) of a peer's vector allocates at most
    /// 8 MB. (pgvector allows more; a vector built in code is not limited.)
    pub const MAX_DIMENSIONS: usize = 1_000_000;

    /// The non-zero entries of `dense`.
    pub fn from_dense(dense: &[f64]) -> Self {
        let (indices, values) = dense
            .iter()
            .enumerate()
            .filter(|(_, value)| **value != 0.0)
            .map(|(index, value)| (index, *value))
            .unzip();
        Self {
            dimensions: dense.len(),
            indices,
            values,
        }
    }

    /// How many dimensions the vector has.
    pub fn dimensions(&self) -> usize {
        self.dimensions
    }

    /// The non-zero entries, as (0-based index, value), ascending by index.
    pub fn entries(&self) -> impl Iterator<Item = (usize, f64)> + '_ {
        self.indices
            .iter()
            .copied()
            .zip(self.values.iter().copied())
    }

    /// Every value, zeros included.
    pub fn to_dense(&self) -> Vec<f64> {
        let mut dense = vec![0.0; self.dimensions];
        for (index, value) in self.entries() {
            if let Some(slot) = dense.get_mut(index) {
                *slot = value;
            }
        }
        dense
    }
}

/// Writes a number as Dart's `double.toString` does for the usual cases: `1.0`, `2.5`.
fn write_dart_double(out: &mut String, value: f64) {
    if value.is_finite() && value.fract() == 0.0 && value.abs() < 1e21 {
        let _ = write!(out, "{value:.1}");
    } else {
        let _ = write!(out, "{value}");
    }
}

impl fmt::Display for SparseVector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = String::from("{");
        for (n, (index, value)) in self.entries().enumerate() {
            if n > 0 {
                text.push(',');
            }
            let _ = write!(text, "{}:", index + 1);
            write_dart_double(&mut text, value);
        }
        let _ = write!(text, "}}/{}", self.dimensions);
        f.write_str(&text)
    }
}

impl FromStr for SparseVector {
    type Err = InvalidVector;

    fn from_str(text: &str) -> Result<Self, InvalidVector> {
        let fail = |reason| InvalidVector {
            kind: "SparseVector",
            text: text.chars().take(64).collect(),
            reason,
        };
        let (body, dimensions) = text
            .strip_prefix('{')
            .and_then(|rest| rest.split_once("}/"))
            .ok_or_else(|| fail("expected {index:value,...}/dimensions"))?;
        let dimensions: usize = dimensions
            .trim()
            .parse()
            .map_err(|_| fail("bad dimensions"))?;
        if dimensions > SparseVector::MAX_DIMENSIONS {
            return Err(fail("more dimensions than SparseVector::MAX_DIMENSIONS"));
        }
        let mut entries = Vec::new();
        for entry in body.split(',').filter(|e| !e.trim().is_empty()) {
            let (index, value) = entry
                .split_once(':')
                .ok_or_else(|| fail("an entry is index:value"))?;
            let index: usize = index.trim().parse().map_err(|_| fail("bad index"))?;
            let value: f64 = value.trim().parse().map_err(|_| fail("bad value"))?;
            if index == 0 || index > dimensions {
                return Err(fail("an index is 1 to the dimensions"));
            }
            if value != 0.0 {
                entries.push((index - 1, value));
            }
        }
        entries.sort_by_key(|(index, _)| *index);
        if entries.windows(2).any(|pair| pair[0].0 == pair[1].0) {
            return Err(fail("an index repeats"));
        }
        let (indices, values) = entries.into_iter().unzip();
        Ok(Self {
            dimensions,
            indices,
            values,
        })
    }
}

/// `Bit(n)`: a fixed-length bit string. Its JSON form is the text `"1010"`, as Serverpod
/// writes it; an array of booleans or 0/1 also decodes.
///
/// ```
/// use streampod_protocol::types::Bits;
///
/// let bits: Bits = "1010".parse()?;
/// assert_eq!(bits.as_slice(), [true, false, true, false]);
/// assert_eq!(bits.to_string(), "1010");
/// # Ok::<(), streampod_protocol::InvalidVector>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Bits(pub Vec<bool>);

impl Bits {
    /// The bits, first to last.
    pub fn as_slice(&self) -> &[bool] {
        &self.0
    }
}

impl fmt::Display for Bits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text: String = self.0.iter().map(|&b| if b { '1' } else { '0' }).collect();
        f.write_str(&text)
    }
}

impl FromStr for Bits {
    type Err = InvalidVector;

    fn from_str(text: &str) -> Result<Self, InvalidVector> {
        text.chars()
            .map(|c| match c {
                '0' => Ok(false),
                '1' => Ok(true),
                _ => Err(InvalidVector {
                    kind: "Bit",
                    text: text.chars().take(64).collect(),
                    reason: "only 0 and 1",
                }),
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_cannot_ask_for_a_dense_vector_of_a_billion_dimensions() {
        let huge = format!("{{1:1}}/{}", SparseVector::MAX_DIMENSIONS + 1);
        let error = huge.parse::<SparseVector>().unwrap_err();
        assert!(error.to_string().contains("MAX_DIMENSIONS"), "{error}");
        let at_limit = format!("{{1:1}}/{}", SparseVector::MAX_DIMENSIONS);
        let v: SparseVector = at_limit.parse().unwrap();
        assert_eq!(v.to_dense().len(), SparseVector::MAX_DIMENSIONS);
        // The error quotes at most 64 characters of the text.
        let long = format!("{{{}}}/5", "1:1,".repeat(10_000));
        let message = long.parse::<SparseVector>().unwrap_err().to_string();
        assert!(message.len() < 200, "{message}");
    }

    #[test]
    fn sparse_vectors_read_and_write_pgvector_text() {
        let v: SparseVector = "{3:2.5,1:1}/5".parse().unwrap();
        assert_eq!(v.to_string(), "{1:1.0,3:2.5}/5");
        assert_eq!("{}/3".parse::<SparseVector>().unwrap().to_dense(), [0.0; 3]);
        for bad in [
            "1:1/3",
            "{0:1}/3",
            "{4:1}/3",
            "{1:x}/3",
            "{1:1,1:2}/3",
            "{1:1}/",
        ] {
            assert!(bad.parse::<SparseVector>().is_err(), "{bad}");
        }
    }

    #[test]
    fn bits_are_zeros_and_ones() {
        assert_eq!("".parse::<Bits>(), Ok(Bits(Vec::new())));
        assert!("102"
            .parse::<Bits>()
            .unwrap_err()
            .to_string()
            .contains("'102'"));
    }
}
