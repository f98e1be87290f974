//! What the transform flags say, checked once at start.
//!
//! `--transforms`, `--censor-words` and `--censor-mode` arrive as strings
//! (and a file the caller has already read); this file turns them into a
//! [`TransformConfig`] and says precisely what is wrong when they are not
//! valid, so that `main` can print the error and exit with status 2 before
//! the server takes a single message. [`Pipeline::from_config`] turns a
//! valid config into the runtime pipeline.
//!
//! [`Pipeline::from_config`]: super::Pipeline::from_config

use std::fmt;

/// The transforms a pipeline can hold, by the names `--transforms` takes.
pub const NAMES: [&str; 4] = ["censor", "autocorrect", "emoji", "code"];

/// The transforms to run and how to set them up: `--transforms`,
/// `--censor-words FILE` and `--censor-mode`.
///
/// # Examples
///
/// ```
/// use smolchat::transform::{CensorMode, TransformConfig};
///
/// let config = TransformConfig::default();
/// assert_eq!(config.names, ["censor", "emoji", "code"]);
/// assert_eq!(config.censor_words, None);
/// assert_eq!(config.censor_mode, CensorMode::Mask);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransformConfig {
    /// Transform names in the order they run, from [`parse_names`].
    pub names: Vec<String>,
    /// The contents of the `--censor-words` file, which replaces the
    /// built-in list: one word per line, `#` comments, blank lines ignored.
    pub censor_words: Option<String>,
    /// What `censor` does with a listed word.
    pub censor_mode: CensorMode,
}

impl Default for TransformConfig {
    /// `censor,emoji,code`, the built-in word list, masking.
    fn default() -> Self {
        TransformConfig {
            names: ["censor", "emoji", "code"].map(String::from).to_vec(),
            censor_words: None,
            censor_mode: CensorMode::Mask,
        }
    }
}

/// What `censor` does with a listed word: `--censor-mode mask|refuse`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum CensorMode {
    /// Replace it with one `*` per character and deliver the message.
    #[default]
    Mask,
    /// Refuse the whole message (`422`), without saying which word matched.
    Refuse,
}

impl CensorMode {
    /// Reads `mask` or `refuse`.
    ///
    /// # Examples
    ///
    /// ```
    /// use smolchat::transform::CensorMode;
    ///
    /// assert_eq!(CensorMode::parse("refuse"), Ok(CensorMode::Refuse));
    /// assert_eq!(
    ///     CensorMode::parse("drop").unwrap_err().to_string(),
    ///     r#"unknown censor mode "drop" (valid: mask, refuse)"#
    /// );
    /// ```
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        match s.trim() {
            "mask" => Ok(CensorMode::Mask),
            "refuse" => Ok(CensorMode::Refuse),
            other => Err(ConfigError::UnknownCensorMode(other.to_owned())),
        }
    }
}

impl fmt::Display for CensorMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CensorMode::Mask => "mask",
            CensorMode::Refuse => "refuse",
        })
    }
}

/// Reads the `--transforms` comma list: names are trimmed, order is kept,
/// and an empty list (`--transforms ''`) means no transforms.
///
/// # Examples
///
/// ```
/// use smolchat::transform::parse_names;
///
/// assert_eq!(parse_names("censor, emoji ,code").unwrap(), ["censor", "emoji", "code"]);
/// assert_eq!(parse_names("").unwrap(), Vec::<String>::new());
/// assert_eq!(
///     parse_names("emoji,emojis").unwrap_err().to_string(),
///     r#"unknown transform "emojis" (valid: censor, autocorrect, emoji, code)"#
/// );
/// assert!(parse_names("emoji,,code").is_err());
/// assert!(parse_names("code,code").is_err());
/// ```
pub fn parse_names(list: &str) -> Result<Vec<String>, ConfigError> {
    if list.trim().is_empty() {
        return Ok(Vec::new());
    }
    let names = list
        .split(',')
        .map(|n| match n.trim() {
            "" => Err(ConfigError::EmptyTransformName),
            n => Ok(n.to_owned()),
        })
        .collect::<Result<Vec<_>, _>>()?;
    check_names(&names)?;
    Ok(names)
}

/// Refuses unknown names and names listed twice.
pub(crate) fn check_names(names: &[String]) -> Result<(), ConfigError> {
    for (i, name) in names.iter().enumerate() {
        if !NAMES.contains(&name.as_str()) {
            return Err(ConfigError::UnknownTransform(name.clone()));
        }
        if names[..i].contains(name) {
            return Err(ConfigError::DuplicateTransform(name.clone()));
        }
    }
    Ok(())
}

/// Why the transform flags were refused; `main` prints it and exits with
/// status 2.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// A name that is not one of [`NAMES`].
    UnknownTransform(String),
    /// A name given twice.
    DuplicateTransform(String),
    /// Two commas in a row, or a comma at either end.
    EmptyTransformName,
    /// A censor mode other than `mask` or `refuse`.
    UnknownCensorMode(String),
    /// A line of the censor word list that is not one word.
    CensorWord {
        /// The line number, from 1.
        line: usize,
        /// The line, without its comment.
        word: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A censor word list with no words in it.
    EmptyWordList,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::UnknownTransform(name) => {
                write!(
                    f,
                    "unknown transform {name:?} (valid: {})",
                    NAMES.join(", ")
                )
            }
            ConfigError::DuplicateTransform(name) => {
                write!(f, "transform {name:?} is listed twice")
            }
            ConfigError::EmptyTransformName => f.write_str("empty name in the transform list"),
            ConfigError::UnknownCensorMode(mode) => {
                write!(f, "unknown censor mode {mode:?} (valid: mask, refuse)")
            }
            ConfigError::CensorWord {
                line,
                word,
                problem,
            } => {
                write!(f, "censor word list, line {line}: {word:?} {problem}")
            }
            ConfigError::EmptyWordList => f.write_str("the censor word list holds no words"),
        }
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_checked_and_kept_in_order() {
        let ok = |s: &str| parse_names(s).unwrap();
        assert_eq!(ok("code,censor"), ["code", "censor"]);
        assert_eq!(ok("  "), Vec::<String>::new());
        assert_eq!(ok(" autocorrect "), ["autocorrect"]);
        let err = |s: &str| parse_names(s).unwrap_err();
        assert_eq!(err("censor,"), ConfigError::EmptyTransformName);
        assert_eq!(err(",censor"), ConfigError::EmptyTransformName);
        assert_eq!(err("Emoji"), ConfigError::UnknownTransform("Emoji".into()));
        assert_eq!(
            err("emoji,code,emoji"),
            ConfigError::DuplicateTransform("emoji".into())
        );
    }

    #[test]
    fn errors_read_as_sentences() {
        assert_eq!(
            ConfigError::DuplicateTransform("emoji".into()).to_string(),
            r#"transform "emoji" is listed twice"#
        );
        assert_eq!(
            ConfigError::UnknownTransform("a\nb".into()).to_string(),
            r#"unknown transform "a\nb" (valid: censor, autocorrect, emoji, code)"#
        );
    }

    #[test]
    fn censor_modes_round_trip() {
        for mode in [CensorMode::Mask, CensorMode::Refuse] {
            assert_eq!(CensorMode::parse(&mode.to_string()), Ok(mode));
        }
        assert!(CensorMode::parse("Mask").is_err());
    }
}
