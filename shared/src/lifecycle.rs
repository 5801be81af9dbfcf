//! The execution lifecycle, defined once: the states an execution moves through, their order, and which are
//! final. The record stores [`ExecutionStatus::as_str`] in `executions.status` and `attempts.status`; the SQL
//! function `flowlike_status_rank` (migration 0002) orders them as [`ExecutionStatus::rank`] does, and a test
//! (`tests/tests/status_machine.rs`) checks the two agree for every state.
//!
//! ```text
//! queued (0) -> dispatched (2) -> running (3) -> succeeded | failed | timed_out | cancelled (9)
//!    ^                                 |
//!    +------ retrying: attempt n+1 ----+   (states are ordered by (attempt, rank))
//! ```

use crate::status::FinishedOutcome;
use serde::{Deserialize, Serialize};

/// Where an execution (or one of its attempts) is in its life. Terminal states never change again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionStatus {
    Queued,
    Dispatched,
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Cancelled,
}

impl ExecutionStatus {
    pub const ALL: [ExecutionStatus; 7] =
        [Self::Queued, Self::Dispatched, Self::Running, Self::Succeeded, Self::Failed, Self::TimedOut, Self::Cancelled];

    /// The rank of every terminal state.
    pub const TERMINAL_RANK: i32 = 9;

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Dispatched => "dispatched",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        self.rank() == Self::TERMINAL_RANK
    }

    /// The state's place within one attempt; the status pipeline orders states by `(attempt, rank)`. Equal to
    /// the SQL `flowlike_status_rank(status)`.
    pub const fn rank(self) -> i32 {
        match self {
            Self::Queued => 0,
            Self::Dispatched => 2,
            Self::Running => 3,
            Self::Succeeded | Self::Failed | Self::TimedOut | Self::Cancelled => Self::TERMINAL_RANK,
        }
    }

    /// The rank of a stored status; text that is no state ranks as terminal, as in SQL.
    pub fn rank_of(stored: &str) -> i32 {
        Self::parse(stored).map_or(Self::TERMINAL_RANK, Self::rank)
    }
}

impl From<FinishedOutcome> for ExecutionStatus {
    fn from(outcome: FinishedOutcome) -> Self {
        match outcome {
            FinishedOutcome::Succeeded => Self::Succeeded,
            FinishedOutcome::Failed => Self::Failed,
            FinishedOutcome::TimedOut => Self::TimedOut,
            FinishedOutcome::Cancelled => Self::Cancelled,
        }
    }
}

impl std::fmt::Display for ExecutionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_serde() {
        for status in ExecutionStatus::ALL {
            assert_eq!(ExecutionStatus::parse(status.as_str()), Some(status));
            assert_eq!(serde_json::to_value(status).unwrap(), serde_json::json!(status.as_str()));
        }
        assert_eq!(ExecutionStatus::parse("retrying"), None);
    }

    #[test]
    fn outcomes_are_the_terminal_states() {
        let outcomes = [
            FinishedOutcome::Succeeded,
            FinishedOutcome::Failed,
            FinishedOutcome::TimedOut,
            FinishedOutcome::Cancelled,
        ];
        for outcome in outcomes {
            let status = ExecutionStatus::from(outcome);
            assert!(status.is_terminal());
            assert_eq!(status.as_str(), outcome.as_str());
        }
        let terminal = ExecutionStatus::ALL.iter().filter(|s| s.is_terminal()).count();
        assert_eq!(terminal, outcomes.len());
    }

    /// Every state the record's SQL names literally (`status = 'queued'`, `status IN ('queued', ...)`) is a state
    /// of this type, spelled as `as_str` spells it.
    #[test]
    fn sql_literals_name_known_states() {
        let sources = [
            include_str!("record/batch.rs"),
            include_str!("record/dispatch.rs"),
            include_str!("record/executions.rs"),
            include_str!("record/operator.rs"),
            include_str!("record/retention.rs"),
            include_str!("record/transitions/mod.rs"),
            include_str!("../migrations/0002_status_pipeline.sql"),
        ];
        let mut seen = 0;
        for source in sources {
            for (at, _) in source.match_indices("status ") {
                let rest = &source[at + "status ".len()..];
                // `status = 'x'`, or `status [NOT] IN ('x', 'y')`; anything else (a bound parameter) names no state.
                let names: Vec<&str> = if let Some(one) = rest.strip_prefix("= '") {
                    one.split('\'').take(1).collect()
                } else if let Some(list) = rest.strip_prefix("IN (").or_else(|| rest.strip_prefix("NOT IN (")) {
                    let list = list.split(')').next().unwrap_or_default();
                    list.split(',').filter_map(|item| item.trim().strip_prefix('\'')?.strip_suffix('\'')).collect()
                } else {
                    continue;
                };
                for name in names {
                    assert!(ExecutionStatus::parse(name).is_some(), "SQL names unknown state {name:?}");
                    seen += 1;
                }
            }
        }
        assert!(seen >= 5, "found only {seen} state literals: the scan is broken");
    }
}
