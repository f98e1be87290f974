//! QR codes of an invite URL, so a phone joins by pointing its camera: an
//! SVG for the page's "Invite a phone", text for the terminal (`--qr`).
//!
//! The `qrcode` crate does the encoding (no default features: no image
//! crate, and its renderers are not needed for two small drawings made
//! here). Pure functions of the URL.

use qrcode::{Color, EcLevel, QrCode};

/// Modules of light margin around a code (the standard asks for 4).
const QUIET: usize = 4;

/// The QR code of `text`, as rows of dark (`true`) and light modules,
/// without the quiet zone; `None` if it does not fit a QR code (over
/// ~2 KB at level M).
fn modules(text: &str) -> Option<Vec<Vec<bool>>> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M).ok()?;
    let width = code.width();
    let colors = code.to_colors();
    Some(
        colors
            .chunks(width)
            .map(|row| row.iter().map(|c| *c == Color::Dark).collect())
            .collect(),
    )
}

/// An SVG of the QR code of `text`: one path of unit squares on a white
/// square, scaled by the page. No script, no style element: it passes the
/// page's CSP and is safe to open on its own.
///
/// # Examples
///
/// ```
/// let svg = smolchat::invite::svg("http://192.168.1.23:8080/#kitchen").unwrap();
/// assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
/// assert!(svg.contains("<path"));
/// ```
pub fn svg(text: &str) -> Option<String> {
    let rows = modules(text)?;
    let size = rows.len() + 2 * QUIET;
    let mut path = String::with_capacity(rows.len() * rows.len() * 4);
    for (y, row) in rows.iter().enumerate() {
        let mut x = 0;
        while x < row.len() {
            if !row[x] {
                x += 1;
                continue;
            }
            // A run of dark modules is one rectangle.
            let start = x;
            while x < row.len() && row[x] {
                x += 1;
            }
            path.push_str(&format!(
                "M{} {}h{}v1h-{}z",
                start + QUIET,
                y + QUIET,
                x - start,
                x - start
            ));
        }
    }
    Some(format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {size} {size}\" \
         shape-rendering=\"crispEdges\" role=\"img\" aria-label=\"QR code\">\
         <rect width=\"{size}\" height=\"{size}\" fill=\"#fff\"/>\
         <path fill=\"#000\" d=\"{path}\"/></svg>\n"
    ))
}

/// The QR code of `text` for a terminal: two module rows per text line
/// in half blocks, dark ink on a white background set with ANSI colours
/// (so it scans on dark and light terminal themes alike), with a quiet
/// zone of 2 (terminal cells are tall; 4 would waste the screen).
///
/// # Examples
///
/// ```
/// let text = smolchat::invite::terminal("http://192.168.1.23:8080").unwrap();
/// assert!(text.lines().count() > 10);
/// ```
pub fn terminal(text: &str) -> Option<String> {
    const MARGIN: usize = 2;
    let rows = modules(text)?;
    let width = rows.len() + 2 * MARGIN;
    let dark = |y: usize, x: usize| -> bool {
        y >= MARGIN
            && x >= MARGIN
            && rows
                .get(y - MARGIN)
                .and_then(|r| r.get(x - MARGIN))
                .copied()
                .unwrap_or(false)
    };
    let mut out = String::new();
    for y in (0..width).step_by(2) {
        out.push_str("\x1b[30;107m");
        for x in 0..width {
            out.push(match (dark(y, x), dark(y + 1, x)) {
                (true, true) => '█',
                (true, false) => '▀',
                (false, true) => '▄',
                (false, false) => ' ',
            });
        }
        out.push_str("\x1b[0m\n");
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_svg_draws_every_dark_module_once() {
        let url = "http://192.168.1.23:8080/#kitchen";
        let rows = modules(url).unwrap();
        let svg = svg(url).unwrap();
        let d = svg
            .split(" d=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let mut drawn = 0;
        for rect in d.split('z').filter(|r| !r.is_empty()) {
            let h: usize = rect
                .split('h')
                .nth(1)
                .unwrap()
                .split('v')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            drawn += h;
        }
        let dark = rows.iter().flatten().filter(|d| **d).count();
        assert_eq!(drawn, dark);
        // Finder patterns in three corners: the first row starts dark.
        assert!(rows[0][..7].iter().all(|d| *d));
        assert!(!svg.contains("<script") && !svg.contains("style"));
    }

    #[test]
    fn the_terminal_code_keeps_two_rows_per_line() {
        let url = "http://[2001:db8::23]:8080";
        let rows = modules(url).unwrap();
        let text = terminal(url).unwrap();
        assert_eq!(text.lines().count(), (rows.len() + 4).div_ceil(2));
        let first = text.lines().nth(1).unwrap();
        // Row 2 (first of the code) over row 3: the finder pattern's top.
        assert!(first.contains("▀▀▀▀▀▀▀") || first.contains("█"), "{first}");
    }

    #[test]
    fn text_too_long_for_a_qr_code_is_none() {
        assert!(svg(&"x".repeat(5000)).is_none());
        assert!(terminal(&"x".repeat(5000)).is_none());
    }
}
