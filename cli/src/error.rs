//! What can go wrong in a command, and the exit code each failure gives (2 for all of them: 1 is kept for a
//! watched execution that ended other than `succeeded`, which is an outcome, not an error).

use std::path::PathBuf;

/// One invalid part of a request, from a 422's `errors` (an RFC 6901 JSON Pointer and its message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidPart {
    pub pointer: String,
    pub message: String,
}

/// An API answer that was a problem+json document (or at least not a success).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub status: u16,
    pub title: String,
    pub detail: Option<String>,
    pub errors: Vec<InvalidPart>,
}

impl Problem {
    /// Reads a problem document; an answer that is not one still gets a title (the HTTP reason).
    pub fn from_answer(status: u16, body: &[u8]) -> Self {
        let document: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let text = |name: &str| document.get(name).and_then(|v| v.as_str()).map(str::to_owned);
        let reason = reqwest::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("error");
        let errors = document
            .get("errors")
            .and_then(|e| e.as_array())
            .map(|parts| {
                parts
                    .iter()
                    .map(|part| InvalidPart {
                        pointer: part.get("pointer").and_then(|p| p.as_str()).unwrap_or_default().to_owned(),
                        message: part.get("message").and_then(|m| m.as_str()).unwrap_or_default().to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            status,
            title: text("title").filter(|t| !t.is_empty()).unwrap_or_else(|| reason.to_lowercase()),
            detail: text("detail").filter(|d| !d.is_empty()),
            errors,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command line asks for something impossible (clap's own usage errors never get here).
    #[error("{0}")]
    Usage(String),
    /// No answer at all: connection refused, DNS, timeout.
    #[error("cannot reach the API at {url}: {cause}")]
    Unreachable { url: String, cause: String },
    /// The API answered with a problem.
    #[error("{}", problem_line(.0))]
    Api(Problem),
    /// A success status whose body is not the JSON it should be.
    #[error("unexpected answer from {what}: {cause}")]
    UnexpectedAnswer { what: String, cause: String },
    #[error("cannot read {}: {source}", .path.display())]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not valid JSON: {source}", .path.display())]
    NotJson {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{} is not a workflow document: {why}", .path.display())]
    NotAWorkflow { path: PathBuf, why: String },
    #[error("cannot write the output: {0}")]
    Output(#[source] std::io::Error),
}

fn problem_line(problem: &Problem) -> String {
    let mut line = format!("{} (HTTP {})", problem.title, problem.status);
    if let Some(detail) = &problem.detail {
        line.push_str(": ");
        line.push_str(detail);
    }
    if problem.status == 401 {
        line.push_str(" (check --token or FLOWLIKE_TOKEN)");
    }
    line
}

impl CliError {
    /// Every error ends the process with 2.
    pub const EXIT_CODE: u8 = 2;

    /// The lines printed on stderr: one, and for a 422 one more per invalid part.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![format!("flow-like: {self}")];
        if let Self::Api(problem) = self {
            for part in &problem.errors {
                let pointer = if part.pointer.is_empty() { "(the whole body)" } else { &part.pointer };
                lines.push(format!("  {pointer}: {}", part.message));
            }
        }
        lines
    }
}

impl From<std::io::Error> for CliError {
    fn from(err: std::io::Error) -> Self {
        Self::Output(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_is_one_line_and_a_422_lists_each_pointer() {
        let body = br#"{"type":"x","title":"invalid workflow","status":422,"errors":[
            {"pointer":"/workflow/nodes/a/type","message":"unknown node type"},{"pointer":"","message":"bad"}]}"#;
        let err = CliError::Api(Problem::from_answer(422, body));
        assert_eq!(
            err.lines(),
            [
                "flow-like: invalid workflow (HTTP 422)",
                "  /workflow/nodes/a/type: unknown node type",
                "  (the whole body): bad"
            ]
        );
        let err = CliError::Api(Problem::from_answer(401, br#"{"title":"missing or invalid API key","status":401}"#));
        assert_eq!(err.lines(), ["flow-like: missing or invalid API key (HTTP 401) (check --token or FLOWLIKE_TOKEN)"]);
        let err = CliError::Api(Problem::from_answer(502, b"<html>"));
        assert_eq!(err.lines(), ["flow-like: bad gateway (HTTP 502)"]);
        let err = CliError::Api(Problem::from_answer(409, br#"{"title":"finished","detail":"it is done"}"#));
        assert_eq!(err.lines(), ["flow-like: finished (HTTP 409): it is done"]);
    }
}
