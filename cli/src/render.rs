//! How human output looks: aligned tables, relative times ("3 s ago"), durations, and colour, which is used
//! only when stdout is a terminal and `NO_COLOR` is not set.

use anstyle::{AnsiColor, Style};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::io::IsTerminal;

/// Colours, or none.
#[derive(Debug, Clone, Copy)]
pub struct Palette {
    enabled: bool,
}

impl Palette {
    /// Colour when stdout is a terminal and `NO_COLOR` is unset (or empty, as the convention says).
    pub fn detect() -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Self { enabled: std::io::stdout().is_terminal() && !no_color }
    }

    pub fn plain() -> Self {
        Self { enabled: false }
    }

    fn paint(self, style: Style, text: &str) -> String {
        if self.enabled { format!("{}{text}{}", style.render(), style.render_reset()) } else { text.to_owned() }
    }

    pub fn bold(self, text: &str) -> String {
        self.paint(Style::new().bold(), text)
    }

    pub fn dim(self, text: &str) -> String {
        self.paint(Style::new().dimmed(), text)
    }

    pub fn green(self, text: &str) -> String {
        self.paint(Style::new().fg_color(Some(AnsiColor::Green.into())), text)
    }

    pub fn red(self, text: &str) -> String {
        self.paint(Style::new().fg_color(Some(AnsiColor::Red.into())), text)
    }

    pub fn yellow(self, text: &str) -> String {
        self.paint(Style::new().fg_color(Some(AnsiColor::Yellow.into())), text)
    }

    /// An execution or node status in its colour.
    pub fn status(self, status: &str) -> String {
        match status {
            "succeeded" => self.green(status),
            "failed" | "timed_out" => self.red(status),
            "cancelled" | "skipped" | "not_started" => self.dim(status),
            "running" | "dispatched" | "queued" => self.yellow(status),
            _ => status.to_owned(),
        }
    }
}

/// A table: a header and rows of cells, each column as wide as its widest cell. A cell may be painted by a
/// function applied after the padding, so escape codes never count in the width.
#[derive(Debug, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Self { header: header.iter().map(|h| (*h).to_owned()).collect(), rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The lines, with `paint(column, cell)` applied to the padded cells of the rows (the header is bold).
    pub fn render(&self, palette: Palette, paint: impl Fn(usize, &str) -> Option<String>) -> Vec<String> {
        let columns = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let line = |cells: &[String], header: bool| {
            let mut out = String::new();
            for (i, cell) in cells.iter().enumerate().take(columns) {
                let last = i + 1 == columns;
                let padded = if last { cell.clone() } else { format!("{cell:<width$}", width = widths[i]) };
                let painted = if header {
                    palette.bold(&padded)
                } else {
                    paint(i, cell).map(|p| padded.replacen(cell.as_str(), &p, 1)).unwrap_or(padded)
                };
                out.push_str(&painted);
                if !last {
                    out.push_str("  ");
                }
            }
            out.trim_end().to_owned()
        };
        let mut lines = vec![line(&self.header, true)];
        lines.extend(self.rows.iter().map(|row| line(row, false)));
        lines
    }
}

/// A time relative to `now`: "3 s ago", "5 min ago", "in 2 h".
pub fn relative(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (now - at).num_seconds();
    let (amount, future) = (secs.unsigned_abs(), secs < 0);
    let text = match amount {
        0 if !future => return "just now".to_owned(),
        0..60 => format!("{amount} s"),
        60..3_600 => format!("{} min", amount / 60),
        3_600..86_400 => format!("{} h", amount / 3_600),
        _ => format!("{} d", amount / 86_400),
    };
    if future { format!("in {text}") } else { format!("{text} ago") }
}

/// A duration in milliseconds for people: "850 ms", "2.4 s", "3 min 5 s", "2 h 10 min".
pub fn duration_ms(ms: i64) -> String {
    let ms = ms.max(0);
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{} min {} s", ms / 60_000, ms % 60_000 / 1000),
        _ => format!("{} h {} min", ms / 3_600_000, ms % 3_600_000 / 60_000),
    }
}

/// An RFC 3339 time field of a document.
pub fn time(value: &Value) -> Option<DateTime<Utc>> {
    value.as_str().and_then(|t| DateTime::parse_from_rfc3339(t).ok()).map(|t| t.with_timezone(&Utc))
}

/// A time field relative to now, or "-".
pub fn ago(value: &Value) -> String {
    time(value).map_or_else(|| "-".to_owned(), |t| relative(t, Utc::now()))
}

/// A scalar field as text: strings bare, null or absent as "-".
pub fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.to_owned(),
        other => other.to_string(),
    }
}

/// An optional number of milliseconds as a duration, or "-".
pub fn ms_field(value: &Value) -> String {
    value.as_f64().map_or_else(|| "-".to_owned(), |ms| duration_ms(ms.round() as i64))
}

/// Labels as `k=v,k=v`, or "-".
pub fn labels(value: &Value) -> String {
    match value.as_object() {
        Some(labels) if !labels.is_empty() => {
            labels.iter().map(|(k, v)| format!("{k}={}", text(v))).collect::<Vec<_>>().join(",")
        }
        _ => "-".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    #[test]
    fn relative_times_read_like_speech() {
        let now = Utc::now();
        assert_eq!(relative(now, now), "just now");
        assert_eq!(relative(now - TimeDelta::seconds(3), now), "3 s ago");
        assert_eq!(relative(now - TimeDelta::seconds(300), now), "5 min ago");
        assert_eq!(relative(now - TimeDelta::hours(5), now), "5 h ago");
        assert_eq!(relative(now - TimeDelta::days(3), now), "3 d ago");
        assert_eq!(relative(now + TimeDelta::seconds(7200), now), "in 2 h");
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(duration_ms(850), "850 ms");
        assert_eq!(duration_ms(2_400), "2.4 s");
        assert_eq!(duration_ms(185_000), "3 min 5 s");
        assert_eq!(duration_ms(7_800_000), "2 h 10 min");
    }

    #[test]
    fn tables_align_their_columns() {
        let mut table = Table::new(&["ID", "STATUS", "NOTE"]);
        table.row(vec!["a".into(), "succeeded".into(), "x".into()]);
        table.row(vec!["bbbb".into(), "failed".into(), String::new()]);
        let lines = table.render(Palette::plain(), |_, _| None);
        assert_eq!(lines, ["ID    STATUS     NOTE", "a     succeeded  x", "bbbb  failed"]);
    }
}
