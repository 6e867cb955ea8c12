//! The doctor's output: a table a person can scan (colours only on a terminal) or JSON.

use std::io::IsTerminal;

use anyhow::Result;
use comfy_table::{presets, Cell, Color, ContentArrangement, Table};

use super::checks::{Check, Verdict};
use super::facts::Facts;
use crate::cli::OutputFormat;
use crate::commands::list::print_out;

/// Prints the report on stdout.
pub fn print(facts: &Facts, rows: &[Check], output: OutputFormat) -> Result<()> {
    match output {
        OutputFormat::Json => print_out(&serde_json::to_string_pretty(&json(facts, rows))?)?,
        OutputFormat::Table => {
            let failed = rows.iter().filter(|r| r.verdict == Verdict::Fail).count();
            let summary = if failed == 0 {
                format!("{}: no problems found", facts.target)
            } else {
                format!("{}: {failed} check(s) failed", facts.target)
            };
            let table = table(rows, std::io::stdout().is_terminal());
            print_out(&format!("{table}\n{summary}"))?;
        }
    }
    Ok(())
}

/// The JSON document: target, region, and the rows.
pub fn json(facts: &Facts, rows: &[Check]) -> serde_json::Value {
    serde_json::json!({
        "target": facts.target,
        "region": facts.region,
        "checks": rows,
    })
}

/// The table; `colour` on a terminal only.
pub fn table(rows: &[Check], colour: bool) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(vec!["CHECK", "VERDICT", "EVIDENCE", "FIX"]);
    if !colour {
        t.force_no_tty();
        // Not a terminal: no width to wrap to unless COLUMNS gives one.
        if let Some(width) = std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.parse::<u16>().ok())
        {
            t.set_width(width);
        }
    }
    for r in rows {
        let mut verdict = Cell::new(r.verdict.as_str());
        if colour {
            verdict = verdict.fg(match r.verdict {
                Verdict::Ok => Color::Green,
                Verdict::Warn => Color::Yellow,
                Verdict::Fail => Color::Red,
                Verdict::Unknown => Color::DarkGrey,
            });
        }
        t.add_row(vec![
            Cell::new(&r.check),
            verdict,
            Cell::new(&r.evidence),
            Cell::new(&r.fix),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_table_has_no_escape_codes() {
        let rows = vec![
            Check::ok("instance", "i-1 running"),
            Check::new("route", Verdict::Fail, "no route", "add one"),
        ];
        let text = table(&rows, false).to_string();
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(text.contains("FAIL") && text.contains("add one"), "{text}");
    }
}
