//! Sigma conditions: `and`, `or`, `not`, parentheses, `1 of pattern*`, `all of them`.
//!
//! Precedence, least binding first: `or`, `and`, `not`, `x of`, parentheses (Sigma
//! specification, "Condition"). Besides `1` and `all`, `any of` (= `1 of`) and `N of` (at least
//! N) are accepted. The Sigma 1 aggregation syntax (`| count() by x > 5`) is refused with a
//! pointer to correlation rules.

/// A condition as written: names not yet resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Expr {
    Name(String),
    Not(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
    /// `N of pattern` (`all` is `None`); `them` is the pattern `None`.
    Of(Option<usize>, Option<String>),
}

/// A condition over a detection's search identifiers, by index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Cond {
    Sel(usize),
    Not(Box<Cond>),
    And(Vec<Cond>),
    Or(Vec<Cond>),
    /// At least this many of the selections.
    AtLeast(usize, Vec<usize>),
}

impl Cond {
    /// Evaluates with `sel` telling whether each selection matches.
    pub(crate) fn eval(&self, sel: &mut dyn FnMut(usize) -> bool) -> bool {
        match self {
            Cond::Sel(i) => sel(*i),
            Cond::Not(inner) => !inner.eval(sel),
            Cond::And(items) => items.iter().all(|c| c.eval(sel)),
            Cond::Or(items) => items.iter().any(|c| c.eval(sel)),
            Cond::AtLeast(n, items) => {
                let mut count = 0;
                for &i in items {
                    if sel(i) {
                        count += 1;
                        if count >= *n {
                            return true;
                        }
                    }
                }
                *n == 0
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Word(String),
    Open,
    Close,
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(at, c)) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' => {
                chars.next();
                tokens.push(Token::Open);
            }
            ')' => {
                chars.next();
                tokens.push(Token::Close);
            }
            '|' => {
                return Err(
                    "`|` aggregations (`| count() by ...`) are Sigma 1 syntax that Sigma 2 \
                            replaced; write a correlation rule (type event_count or value_count)"
                        .into(),
                )
            }
            c if c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '*' | '?') => {
                let mut word = String::new();
                while let Some(&(_, c)) = chars.peek() {
                    if c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '*' | '?') {
                        word.push(c);
                        chars.next();
                    } else {
                        break;
                    }
                }
                tokens.push(Token::Word(word));
            }
            c => return Err(format!("unexpected `{c}` at character {}", at + 1)),
        }
    }
    Ok(tokens)
}

fn is_keyword(word: &str, keyword: &str) -> bool {
    word.eq_ignore_ascii_case(keyword)
}

/// Parses a condition.
pub(crate) fn parse(text: &str) -> Result<Expr, String> {
    let tokens = tokenize(text)?;
    if tokens.is_empty() {
        return Err("the condition is empty".into());
    }
    let mut parser = Parser { tokens, at: 0 };
    let expr = parser.or()?;
    match parser.tokens.get(parser.at) {
        None => Ok(expr),
        Some(token) => Err(format!(
            "unexpected {} after a complete condition",
            describe(token)
        )),
    }
}

fn describe(token: &Token) -> String {
    match token {
        Token::Word(w) => format!("`{w}`"),
        Token::Open => "`(`".into(),
        Token::Close => "`)`".into(),
    }
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek_word(&self) -> Option<&str> {
        match self.tokens.get(self.at) {
            Some(Token::Word(w)) => Some(w),
            _ => None,
        }
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut items = vec![self.and()?];
        while self.peek_word().is_some_and(|w| is_keyword(w, "or")) {
            self.at += 1;
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::Or(items)
        })
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut items = vec![self.not()?];
        while self.peek_word().is_some_and(|w| is_keyword(w, "and")) {
            self.at += 1;
            items.push(self.not()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::And(items)
        })
    }

    fn not(&mut self) -> Result<Expr, String> {
        if self.peek_word().is_some_and(|w| is_keyword(w, "not")) {
            self.at += 1;
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, String> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        match token {
            None => Err("the condition ends where an identifier or `(` was expected".into()),
            Some(Token::Open) => {
                let inner = self.or()?;
                match self.tokens.get(self.at) {
                    Some(Token::Close) => {
                        self.at += 1;
                        Ok(inner)
                    }
                    _ => Err("a `(` is not closed".into()),
                }
            }
            Some(Token::Close) => Err("unexpected `)`".into()),
            Some(Token::Word(word)) => {
                let count = if is_keyword(&word, "all") {
                    Some(None)
                } else if is_keyword(&word, "any") {
                    Some(Some(1))
                } else {
                    word.parse::<usize>().ok().map(Some)
                };
                let followed_by_of = self.peek_word().is_some_and(|w| is_keyword(w, "of"));
                match count {
                    Some(count) if followed_by_of => {
                        self.at += 1;
                        match self.tokens.get(self.at) {
                            Some(Token::Word(target)) => {
                                self.at += 1;
                                let pattern = (!is_keyword(target, "them")).then(|| target.clone());
                                Ok(Expr::Of(count, pattern))
                            }
                            _ => Err(format!(
                                "`{word} of` must be followed by a name pattern or `them`"
                            )),
                        }
                    }
                    _ => {
                        if ["and", "or", "of", "them"]
                            .iter()
                            .any(|k| is_keyword(&word, k))
                        {
                            return Err(format!("unexpected `{word}`"));
                        }
                        Ok(Expr::Name(word))
                    }
                }
            }
        }
    }
}

/// Whether a search identifier matches a `x of` pattern (`*` any run, `?` one character).
fn name_matches(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Resolves names against the detection's search identifiers.
pub(crate) fn resolve(expr: &Expr, names: &[&str]) -> Result<Cond, String> {
    Ok(match expr {
        Expr::Name(name) => match names.iter().position(|n| n == name) {
            Some(i) => Cond::Sel(i),
            None => {
                return Err(format!(
                    "the condition names `{name}`, which is not a search identifier of this detection (it has: {})",
                    names.join(", ")
                ))
            }
        },
        Expr::Not(inner) => Cond::Not(Box::new(resolve(inner, names)?)),
        Expr::And(items) => Cond::And(
            items
                .iter()
                .map(|e| resolve(e, names))
                .collect::<Result<_, _>>()?,
        ),
        Expr::Or(items) => Cond::Or(
            items
                .iter()
                .map(|e| resolve(e, names))
                .collect::<Result<_, _>>()?,
        ),
        Expr::Of(count, pattern) => {
            let selected: Vec<usize> = names
                .iter()
                .enumerate()
                .filter(|(_, n)| match pattern {
                    Some(p) => name_matches(p, n),
                    None => !n.starts_with('_'),
                })
                .map(|(i, _)| i)
                .collect();
            if selected.is_empty() {
                return Err(format!(
                    "`of {}` matches no search identifier of this detection (it has: {})",
                    pattern.as_deref().unwrap_or("them"),
                    names.join(", ")
                ));
            }
            let n = count.unwrap_or(selected.len());
            Cond::AtLeast(n, selected)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(text: &str, names: &[&str]) -> Cond {
        resolve(&parse(text).unwrap(), names).unwrap()
    }

    #[test]
    fn precedence_follows_the_specification() {
        // not binds tighter than and, and tighter than or.
        assert_eq!(
            cond("a or b and not c", &["a", "b", "c"]),
            Cond::Or(vec![
                Cond::Sel(0),
                Cond::And(vec![Cond::Sel(1), Cond::Not(Box::new(Cond::Sel(2)))])
            ])
        );
        assert_eq!(
            cond("(a or b) and c", &["a", "b", "c"]),
            Cond::And(vec![
                Cond::Or(vec![Cond::Sel(0), Cond::Sel(1)]),
                Cond::Sel(2)
            ])
        );
    }

    #[test]
    fn quantifiers() {
        let names = ["selection_a", "selection_b", "filter", "_private"];
        assert_eq!(
            cond("1 of selection_*", &names),
            Cond::AtLeast(1, vec![0, 1])
        );
        assert_eq!(
            cond("all of selection* and not 1 of filter*", &names),
            Cond::And(vec![
                Cond::AtLeast(2, vec![0, 1]),
                Cond::Not(Box::new(Cond::AtLeast(1, vec![2])))
            ])
        );
        assert_eq!(cond("all of them", &names), Cond::AtLeast(3, vec![0, 1, 2]));
        assert_eq!(cond("any of them", &names), Cond::AtLeast(1, vec![0, 1, 2]));
        assert_eq!(cond("2 of sel*", &names), Cond::AtLeast(2, vec![0, 1]));
        let mut truth = |i: usize| i == 1;
        assert!(cond("1 of selection*", &names).eval(&mut truth));
        assert!(!cond("all of selection*", &names).eval(&mut truth));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert!(parse("").is_err());
        assert!(parse("a and").unwrap_err().contains("ends"));
        assert!(parse("(a or b").unwrap_err().contains("not closed"));
        assert!(parse("a b").unwrap_err().contains("`b`"));
        assert!(parse("sel | count() by x > 4")
            .unwrap_err()
            .contains("correlation"));
        assert!(resolve(&parse("sel and nope").unwrap(), &["sel"])
            .unwrap_err()
            .contains("`nope`"));
        assert!(resolve(&parse("1 of x*").unwrap(), &["sel"])
            .unwrap_err()
            .contains("matches no"));
    }

    #[test]
    fn name_patterns() {
        assert!(name_matches("sel*", "selection"));
        assert!(name_matches("*_a", "selection_a"));
        assert!(name_matches("s*n*", "selection"));
        assert!(!name_matches("sel*x", "selection"));
        assert!(name_matches("sel?", "sel1"));
    }
}
