//! Cutting the hosts into batches: an optional canary batch first, then batches of N hosts or
//! P% of them (rounded up, at least one).

use crate::error::ExitError;

/// A batch size as given: `5` or `25%`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BatchSize {
    /// This many hosts.
    Hosts(usize),
    /// This percentage of all hosts.
    Percent(u8),
}

impl std::str::FromStr for BatchSize {
    type Err = ExitError;

    fn from_str(text: &str) -> Result<Self, ExitError> {
        let bad = || {
            ExitError::Usage(format!(
                "invalid --batch `{text}`: give a number of hosts (4) or a percentage (25%)"
            ))
        };
        let size = match text.trim().strip_suffix('%') {
            Some(percent) => match percent.parse::<u8>() {
                Ok(p) if (1..=100).contains(&p) => Self::Percent(p),
                _ => return Err(bad()),
            },
            None => match text.trim().parse::<usize>() {
                Ok(n) if n >= 1 => Self::Hosts(n),
                _ => return Err(bad()),
            },
        };
        Ok(size)
    }
}

impl BatchSize {
    /// Hosts per batch for `total` hosts.
    pub(crate) fn hosts(self, total: usize) -> usize {
        match self {
            Self::Hosts(n) => n,
            Self::Percent(p) => (total * usize::from(p)).div_ceil(100),
        }
        .max(1)
    }
}

/// Cuts `items` into batches, keeping their order.
pub(crate) fn batches<T: Clone>(items: &[T], size: BatchSize, canary: usize) -> Vec<Vec<T>> {
    let canary = canary.min(items.len());
    let mut out = Vec::new();
    if canary > 0 {
        out.push(items[..canary].to_vec());
    }
    let per_batch = size.hosts(items.len());
    out.extend(items[canary..].chunks(per_batch).map(<[T]>::to_vec));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!("25%".parse::<BatchSize>().unwrap().hosts(4), 1);
        assert_eq!("25%".parse::<BatchSize>().unwrap().hosts(5), 2);
        assert_eq!("1%".parse::<BatchSize>().unwrap().hosts(3), 1);
        assert_eq!("3".parse::<BatchSize>().unwrap().hosts(10), 3);
        for bad in ["0", "0%", "101%", "x", "-1", ""] {
            assert!(bad.parse::<BatchSize>().is_err(), "{bad}");
        }
    }

    #[test]
    fn canary_first_then_fixed_batches() {
        let hosts: Vec<u32> = (1..=7).collect();
        assert_eq!(
            batches(&hosts, BatchSize::Hosts(3), 1),
            vec![vec![1], vec![2, 3, 4], vec![5, 6, 7]]
        );
        assert_eq!(
            batches(&hosts, BatchSize::Percent(50), 0),
            vec![vec![1, 2, 3, 4], vec![5, 6, 7]]
        );
        assert_eq!(batches(&hosts[..1], BatchSize::Hosts(3), 5), vec![vec![1]]);
        assert!(batches::<u32>(&[], BatchSize::Hosts(3), 0).is_empty());
    }
}
