//! Rule errors: every one names the file, and the line and column when the YAML position is
//! known.

use std::fmt;

/// Something wrong with a rule file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleError {
    /// The file, as given.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// What is wrong, in words a person can act on.
    pub message: String,
}

impl RuleError {
    /// An error about a file as a whole, or at a known line.
    pub fn new(file: &str, line: Option<usize>, message: impl Into<String>) -> Self {
        RuleError {
            file: file.to_owned(),
            line,
            column: None,
            message: message.into(),
        }
    }

    /// An error from serde_norway, with its position moved into the fields.
    pub(crate) fn yaml(file: &str, error: &serde_norway::Error, context: &str) -> Self {
        let location = error.location();
        let mut message = error.to_string();
        if let Some(at) = &location {
            let suffix = format!(" at line {} column {}", at.line(), at.column());
            if let Some(stripped) = message.strip_suffix(&suffix) {
                message = stripped.to_owned();
            }
        }
        RuleError {
            file: file.to_owned(),
            line: location.as_ref().map(|at| at.line()),
            column: location.as_ref().map(|at| at.column()),
            message: format!("{context}{message}"),
        }
    }
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => {
                write!(f, "{}:{line}:{column}: {}", self.file, self.message)
            }
            (Some(line), None) => write!(f, "{}:{line}: {}", self.file, self.message),
            _ => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for RuleError {}

/// Every error found while loading rules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadErrors(pub Vec<RuleError>);

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadErrors {}
