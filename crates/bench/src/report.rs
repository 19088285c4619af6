//! The one table a run prints: every measure with its target and whether it was met, as
//! Markdown so that it can go into `docs/benchmarks.md` unchanged.

use std::fmt::Write as _;
use std::time::Duration;

/// Whether a measure met its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Target met.
    Met,
    /// Target missed.
    Missed,
    /// No target: context for the others.
    Info,
}

impl Verdict {
    /// `Met` when `ok`, else `Missed`.
    pub fn of(ok: bool) -> Verdict {
        if ok { Verdict::Met } else { Verdict::Missed }
    }

    fn label(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::Missed => "**missed**",
            Verdict::Info => "",
        }
    }
}

/// One line of the table.
#[derive(Debug, Clone)]
pub struct Row {
    /// What was measured.
    pub measure: String,
    /// The figure.
    pub value: String,
    /// The target, if any.
    pub target: String,
    /// Met or not.
    pub verdict: Verdict,
}

/// The table being filled.
#[derive(Debug, Default)]
pub struct Report {
    rows: Vec<Row>,
}

impl Report {
    /// Adds a row and echoes it on stderr, so progress shows during a long run.
    pub fn add(
        &mut self,
        measure: impl Into<String>,
        value: impl Into<String>,
        target: impl Into<String>,
        verdict: Verdict,
    ) {
        let row = Row {
            measure: measure.into(),
            value: value.into(),
            target: target.into(),
            verdict,
        };
        eprintln!("  {} = {}  {}", row.measure, row.value, row.verdict.label());
        self.rows.push(row);
    }

    /// A row without a target.
    pub fn info(&mut self, measure: impl Into<String>, value: impl Into<String>) {
        self.add(measure, value, "", Verdict::Info);
    }

    /// The Markdown table.
    pub fn render(&self) -> String {
        let mut out = String::from("| measure | result | target | verdict |\n|---|---|---|---|\n");
        for row in &self.rows {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                row.measure,
                row.value,
                row.target,
                row.verdict.label()
            );
        }
        out
    }
}

/// Milliseconds with two decimals.
pub fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1000.0)
}

/// A rate with thousands separators, e.g. `12,345/s`.
pub fn rate(per_second: f64) -> String {
    format!("{}/s", thousands(per_second.round()))
}

/// A whole number with thousands separators.
pub fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if value < 0.0 { format!("-{out}") } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_read_well() {
        assert_eq!(thousands(1234567.0), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(rate(12345.4), "12,345/s");
        assert_eq!(ms(Duration::from_micros(1234)), "1.23 ms");
    }

    #[test]
    fn the_table_marks_missed_targets() {
        let mut report = Report::default();
        report.add("a", "1", "≥ 2", Verdict::of(false));
        report.info("b", "3");
        let table = report.render();
        assert!(table.contains("| a | 1 | ≥ 2 | **missed** |"), "{table}");
        assert!(table.contains("| b | 3 |  |  |"), "{table}");
    }
}
