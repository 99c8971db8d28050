//! Output of the benchmarks: Markdown tables on stdout (so a run pastes straight into
//! `RESULTS.md`) and the few statistics they need (min, median, max). Progress goes to stderr
//! through [`progress`], keeping stdout to the tables.

/// A Markdown table whose columns are padded to their widest cell.
pub struct Table {
    /// Column titles, also fixing the number of columns.
    header: Vec<String>,
    /// Cells, one `Vec` per row; short rows are padded with empty cells.
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table { header: header.iter().map(|h| h.to_string()).collect(), rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Renders the table, one line per row, each ending in a newline.
    pub fn render(&self) -> String {
        let cell = |row: &[String], i: usize| row.get(i).cloned().unwrap_or_default();
        let widths: Vec<usize> = (0..self.header.len())
            .map(|i| self.rows.iter().map(|r| cell(r, i).chars().count()).chain([self.header[i].chars().count(), 3]).max().unwrap_or(3))
            .collect();
        let line = |cells: Vec<String>| {
            let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
            format!("| {} |\n", padded.join(" | "))
        };
        let mut out = line(self.header.clone());
        out.push_str(&line(widths.iter().map(|w| "-".repeat(*w)).collect()));
        for row in &self.rows {
            out.push_str(&line((0..self.header.len()).map(|i| cell(row, i)).collect()));
        }
        out
    }

    /// Prints `## title`, a blank line, the table and a blank line on stdout.
    pub fn print(&self, title: &str) {
        println!("## {title}\n\n{}", self.render());
    }
}

/// A progress line on stderr.
pub fn progress(msg: &str) {
    eprintln!("[stolon-bench] {msg}");
}

/// Min, median and max of `values`; `None` when empty. The median of an even count is the mean
/// of the two middle values.
pub fn min_median_max(values: &[f64]) -> Option<(f64, f64, f64)> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let (first, last) = (*v.first()?, *v.last()?);
    // The two middle elements, the same one when the count is odd.
    let median = (v[(v.len() - 1) / 2] + v[v.len() / 2]) / 2.0;
    Some((first, median, last))
}

/// The median of `values`, NaN when empty (printed as "NaN", never hidden).
pub fn median(values: &[f64]) -> f64 {
    min_median_max(values).map_or(f64::NAN, |(_, m, _)| m)
}

/// How much `a` differs from `b`, in percent of `b`: -12.3 means `a` is 12.3% below `b`.
pub fn change_pct(a: f64, b: f64) -> f64 {
    (a / b - 1.0) * 100.0
}

/// A signed percentage such as "+4.2%".
pub fn fmt_pct(pct: f64) -> String {
    format!("{pct:+.1}%")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(min_median_max(&[3.0, 1.0, 2.0]), Some((1.0, 2.0, 3.0)));
        assert_eq!(min_median_max(&[4.0, 1.0, 2.0, 3.0]), Some((1.0, 2.5, 4.0)));
        assert_eq!(min_median_max(&[]), None);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn percent_is_signed() {
        assert_eq!(fmt_pct(change_pct(90.0, 100.0)), "-10.0%");
        assert_eq!(fmt_pct(change_pct(110.0, 100.0)), "+10.0%");
    }

    #[test]
    fn table_pads_columns_and_short_rows() {
        let mut t = Table::new(&["a", "bbbb"]);
        t.row(vec!["xxxxx".into()]);
        assert_eq!(t.render(), "| a     | bbbb |\n| ----- | ---- |\n| xxxxx |      |\n");
    }
}
