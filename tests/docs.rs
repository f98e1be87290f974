//! The documentation as a reader meets it: README.md is a short front page
//! that opens with the two commands to run, and every relative link or image
//! in README.md and docs/*.md points at a file that exists and, with a
//! `#fragment`, at a heading that produces that anchor on GitHub.
//!
//! Plain std: a small scanner for the markdown this project writes (ATX
//! headings, fenced code blocks, inline code, inline and reference links),
//! not a general CommonMark parser.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

const README_MAX_LINES: usize = 250;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every docs/*.md, in a stable order.
fn markdown_files() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = fs::read_dir(root().join("docs"))
        .expect("docs/ exists")
        .map(|e| e.expect("docs/ is readable").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    assert!(!docs.is_empty(), "docs/ holds no .md file");
    files.extend(docs);
    files
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn shown(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// A fence opening or closing line: its character (`` ` `` or `~`), the
/// length of the run, and what follows the run (the info string).
fn fence(line: &str) -> Option<(char, usize, &str)> {
    let trimmed = line.trim_start();
    let c = trimmed.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let run = trimmed.chars().take_while(|x| *x == c).count();
    (run >= 3).then(|| (c, run, &trimmed[run..]))
}

/// The file split into what is outside fenced code blocks and the fenced
/// blocks themselves. Each prose line keeps its 1-based line number.
struct Parsed {
    prose: Vec<(usize, String)>,
    /// (info string, body) of every fenced block, in order.
    blocks: Vec<(String, String)>,
}

fn parse(text: &str) -> Parsed {
    let mut prose = Vec::new();
    let mut blocks = Vec::new();
    let mut open: Option<(char, usize, String, String)> = None;
    for (i, line) in text.lines().enumerate() {
        match open.take() {
            None => match fence(line) {
                Some((c, run, info)) => {
                    open = Some((c, run, info.trim().to_string(), String::new()))
                }
                None => prose.push((i + 1, line.to_string())),
            },
            Some((c, run, info, mut body)) => match fence(line) {
                Some((d, n, rest)) if d == c && n >= run && rest.trim().is_empty() => {
                    blocks.push((info, body));
                }
                _ => {
                    body.push_str(line);
                    body.push('\n');
                    open = Some((c, run, info, body));
                }
            },
        }
    }
    if let Some((_, _, info, body)) = open {
        // An unclosed fence runs to the end of the document.
        blocks.push((info, body));
    }
    Parsed { prose, blocks }
}

/// Removes inline code spans: a run of N backticks closes at the next run
/// of exactly N; a run without a partner is literal text.
fn strip_inline_code(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let run_at = |i: usize| chars[i..].iter().take_while(|c| **c == '`').count();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let n = run_at(i);
        let mut j = i + n;
        let mut close = None;
        while j < chars.len() {
            if chars[j] == '`' {
                let m = run_at(j);
                if m == n {
                    close = Some(j + m);
                    break;
                }
                j += m;
            } else {
                j += 1;
            }
        }
        match close {
            Some(end) => {
                out.push(' ');
                i = end;
            }
            None => {
                out.extend(&chars[i..i + n]);
                i += n;
            }
        }
    }
    out
}

/// Paragraphs of prose (code spans cannot cross a blank line), each with
/// the line number it starts on and its text with inline code removed.
fn paragraphs(parsed: &Parsed) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    let mut current: Option<(usize, usize, String)> = None;
    for (n, line) in &parsed.prose {
        let continues = current
            .as_ref()
            .is_some_and(|(_, last, _)| *last + 1 == *n && !line.trim().is_empty());
        if continues {
            let (start, _, mut text) = current.take().expect("checked above");
            text.push('\n');
            text.push_str(line);
            current = Some((start, *n, text));
        } else {
            if let Some((start, _, text)) = current.take() {
                out.push((start, strip_inline_code(&text)));
            }
            if !line.trim().is_empty() {
                current = Some((*n, *n, line.clone()));
            }
        }
    }
    if let Some((start, _, text)) = current {
        out.push((start, strip_inline_code(&text)));
    }
    out
}

/// The targets of inline links and images (`[text](target "title")`,
/// `![alt](target)`) and of reference definitions (`[name]: target`).
fn link_targets(paragraph: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut rest = paragraph;
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let mut depth = 0usize;
        let mut end = None;
        for (k, c) in after.char_indices() {
            match c {
                '(' => depth += 1,
                ')' if depth == 0 => {
                    end = Some(k);
                    break;
                }
                ')' => depth -= 1,
                _ => {}
            }
        }
        let Some(end) = end else { break };
        let inner = after[..end].trim();
        let target = match inner.strip_prefix('<') {
            Some(bracketed) => bracketed.split('>').next().unwrap_or(""),
            None => inner.split_whitespace().next().unwrap_or(""),
        };
        targets.push(target.to_string());
        rest = &after[end..];
    }
    for line in paragraph.lines() {
        let line = line.trim_start();
        if let Some(label_end) = line.strip_prefix('[').and_then(|l| l.find("]:")) {
            if let Some(target) = line[label_end + 3..].split_whitespace().next() {
                targets.push(target.trim_matches(|c| c == '<' || c == '>').to_string());
            }
        }
    }
    targets
}

/// True for `http:`, `https:`, `mailto:` and any other URL with a scheme.
fn has_scheme(target: &str) -> bool {
    match target.find(':') {
        Some(colon) => {
            let scheme = &target[..colon];
            !scheme.is_empty()
                && scheme
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        }
        None => false,
    }
}

/// The anchor GitHub gives a heading: the rendered text lowercased, every
/// character but letters, digits, `-`, `_` and spaces dropped, spaces
/// turned into `-`.
fn github_anchor(heading: &str) -> String {
    // Rendered text: a link shows its text, code shows its content.
    let mut text = String::new();
    let mut rest = heading;
    while let Some(open) = rest.find('[') {
        let tail = &rest[open + 1..];
        match (tail.find("]("), tail.find(')')) {
            (Some(close), Some(paren)) if close < paren => {
                text.push_str(&rest[..open]);
                text.push_str(&tail[..close]);
                rest = &tail[paren + 1..];
            }
            _ => {
                text.push_str(&rest[..=open]);
                rest = tail;
            }
        }
    }
    text.push_str(rest);
    text.to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Every anchor the headings of a markdown text produce; a repeated one
/// gets `-1`, `-2`, ... as on GitHub.
fn anchors(text: &str) -> Vec<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::new();
    for (_, line) in parse(text).prose {
        let trimmed = line.trim_start();
        if line.len() - trimmed.len() > 3 {
            continue;
        }
        let hashes = trimmed.chars().take_while(|c| *c == '#').count();
        if !(1..=6).contains(&hashes) {
            continue;
        }
        let rest = &trimmed[hashes..];
        if !(rest.is_empty() || rest.starts_with(' ') || rest.starts_with('\t')) {
            continue;
        }
        let title = rest.trim().trim_end_matches('#').trim_end();
        let base = github_anchor(title);
        let count = seen.entry(base.clone()).or_insert(0);
        out.push(if *count == 0 {
            base
        } else {
            format!("{base}-{count}")
        });
        *count += 1;
    }
    out
}

/// One relative link found in a markdown file.
struct Link {
    file: PathBuf,
    line: usize,
    target: String,
}

fn relative_links() -> Vec<Link> {
    let mut links = Vec::new();
    for file in markdown_files() {
        let parsed = parse(&read(&file));
        for (line, paragraph) in paragraphs(&parsed) {
            for target in link_targets(&paragraph) {
                if !target.is_empty() && !has_scheme(&target) {
                    links.push(Link {
                        file: file.clone(),
                        line,
                        target,
                    });
                }
            }
        }
    }
    assert!(!links.is_empty(), "no relative link found at all");
    links
}

/// The file a link points at, and its fragment (without `#`) if any.
fn resolve(link: &Link) -> (PathBuf, Option<&str>) {
    let (path, fragment) = match link.target.split_once('#') {
        Some((path, fragment)) => (path, Some(fragment)),
        None => (link.target.as_str(), None),
    };
    let path = path.split('?').next().unwrap_or("");
    let file = if path.is_empty() {
        link.file.clone()
    } else {
        link.file
            .parent()
            .expect("a file has a directory")
            .join(path)
    };
    (file, fragment)
}

#[test]
fn every_relative_link_in_readme_and_docs_resolves() {
    let mut broken = Vec::new();
    for link in relative_links() {
        let (file, _) = resolve(&link);
        if !file.exists() {
            broken.push(format!(
                "{}:{}: `{}`: {} does not exist",
                shown(&link.file),
                link.line,
                link.target,
                shown(&file)
            ));
        }
    }
    assert!(
        broken.is_empty(),
        "links to missing files:\n{}",
        broken.join("\n")
    );
}

#[test]
fn every_link_fragment_in_readme_and_docs_names_a_heading_of_its_file() {
    let mut cache: HashMap<PathBuf, Vec<String>> = HashMap::new();
    let mut checked = 0;
    let mut broken = Vec::new();
    for link in relative_links() {
        let (file, Some(fragment)) = resolve(&link) else {
            continue;
        };
        if file.extension().is_none_or(|e| e != "md") || !file.exists() {
            continue; // a line in a source file, or reported by the other test
        }
        let known = cache
            .entry(file.clone())
            .or_insert_with(|| anchors(&read(&file)));
        checked += 1;
        if !known.iter().any(|a| a == fragment) {
            broken.push(format!(
                "{}:{}: `{}`: no heading of {} gives #{fragment}; it has: {}",
                shown(&link.file),
                link.line,
                link.target,
                shown(&file),
                known.join(", ")
            ));
        }
    }
    assert!(checked > 0, "no link with a #fragment found");
    assert!(
        broken.is_empty(),
        "links to missing anchors:\n{}",
        broken.join("\n\n")
    );
}

#[test]
fn github_anchor_follows_githubs_rules() {
    assert_eq!(
        github_anchor("History and durability"),
        "history-and-durability"
    );
    assert_eq!(
        github_anchor("What a `201` promises"),
        "what-a-201-promises"
    );
    assert_eq!(
        github_anchor("2. Cross-compile on a PC with Debian's packages"),
        "2-cross-compile-on-a-pc-with-debians-packages"
    );
    assert_eq!(github_anchor("`censor`"), "censor");
    assert_eq!(github_anchor("snake_case & more"), "snake_case--more");
    assert_eq!(github_anchor("Größe über Ärger"), "größe-über-ärger");
    assert_eq!(github_anchor("See [the API](api.md)"), "see-the-api");
    assert_eq!(
        anchors("# A\n\n```sh\n# not a heading\n```\n\n## A\n### A ###\n"),
        ["a", "a-1", "a-2"]
    );
}

#[test]
fn links_in_fenced_code_and_inline_code_are_ignored() {
    let parsed = parse(
        "see [a](a.md) and `[b](b.md)`\n\n```md\n[c](c.md)\n```\n\n``[d](d.md) ` x``\n[e]: e.md\n",
    );
    let targets: Vec<String> = paragraphs(&parsed)
        .iter()
        .flat_map(|(_, p)| link_targets(p))
        .collect();
    assert_eq!(targets, ["a.md", "e.md"]);
    assert!(has_scheme("https://example.org/x"));
    assert!(has_scheme("mailto:someone@example.org"));
    assert!(!has_scheme("docs/api.md#posting"));
    assert!(!has_scheme("#flags"));
}

#[test]
fn readme_is_at_most_250_lines() {
    let lines = read(&root().join("README.md")).lines().count();
    assert!(
        lines <= README_MAX_LINES,
        "README.md has {lines} lines; keep it a front page of at most \
         {README_MAX_LINES} and move detail into docs/"
    );
}

#[test]
fn readme_first_sh_block_runs_the_server_and_the_tests() {
    let parsed = parse(&read(&root().join("README.md")));
    let (_, first) = parsed
        .blocks
        .iter()
        .find(|(info, _)| info.split_whitespace().next() == Some("sh"))
        .expect("README.md has an sh code block");
    for command in ["cargo run --release", "scripts/test.sh"] {
        assert!(
            first.contains(command),
            "README.md's first sh block lacks `{command}`:\n{first}"
        );
    }
}
