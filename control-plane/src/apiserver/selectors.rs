//! Label and field selectors: the `labelSelector` and `fieldSelector` list options, and
//! `metav1.LabelSelector` objects as controllers use them.
//!
//! Label selectors follow Kubernetes' grammar: `a=b`, `a==b`, `a!=b`, `a in (x,y)`,
//! `a notin (x)`, `a`, `!a`, `a>1`, `a<1`, with commas meaning AND. Keys are validated as label
//! keys and values as label values, and errors carry the texts kube-apiserver (Kubernetes 1.33)
//! returns, so kubectl users see familiar messages. Field selectors accept `f=v`, `f==v` and
//! `f!=v` (commas mean AND; `\` escapes `,`, `=` and `\` in values), and
//! [`FieldSelector::validate_for`] knows which fields each resource can be selected on.
//!
//! # Invariants
//! - Parsing is bounded: a selector string longer than [`MAX_SELECTOR_BYTES`] is rejected before
//!   any other work, so a request cannot make the server work in proportion to an unbounded input.
//! - An empty selector matches everything. [`LabelSelector::from_json`] of `null` matches nothing,
//!   as a nil `*metav1.LabelSelector` selects no objects.
//! - Matching never fails and never panics, whatever the shape of the object.
//!
//! # API boundary
//! Selectors do not know about storage or HTTP: callers parse the query parameters, validate the
//! field selector for the resource being listed, and filter objects with `matches`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};

use serde_json::Value;

/// Longest selector string accepted, in bytes. Kubernetes has no such limit; real selectors are
/// a few dozen bytes, and the limit bounds the work a single request can ask for.
pub const MAX_SELECTOR_BYTES: usize = 4096;

/// Why a selector was rejected. The `Display` texts are Kubernetes' wherever Kubernetes has one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// The selector string is longer than [`MAX_SELECTOR_BYTES`].
    #[error("selector is {length} bytes long; at most {limit} bytes are allowed")]
    TooLong { length: usize, limit: usize },
    /// A label selector string breaks the grammar between requirements.
    #[error("{0}")]
    Syntax(String),
    /// One requirement of a label selector string is malformed or invalid.
    #[error("unable to parse requirement: {0}")]
    Requirement(String),
    /// A requirement of a `metav1.LabelSelector` object is invalid (bad key, bad values).
    #[error("{0}")]
    InvalidRequirement(String),
    /// A `matchExpressions` operator other than In, NotIn, Exists and DoesNotExist.
    #[error("{} is not a valid label selector operator", go_quote(.0))]
    InvalidOperator(String),
    /// A `metav1.LabelSelector` object of the wrong JSON shape.
    #[error("malformed label selector: {0}")]
    Malformed(String),
    /// A field selector term without an operator.
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    FieldTerm { selector: String, term: String },
    /// A backslash followed by something other than `\`, `,` or `=` in a field selector value.
    #[error("invalid field selector: invalid escape sequence: {0}")]
    InvalidEscape(String),
    /// An unescaped `,` or `=` in a field selector value. Kubernetes prints the character's code
    /// point ("61" for `=`), and so does this.
    #[error("invalid field selector: unescaped character in value: {}", u32::from(*.0))]
    UnescapedCharacter(char),
    /// A field the resource cannot be selected on, for resources with their own field list.
    #[error("field label not supported: {0}")]
    FieldLabelNotSupported(String),
    /// A field other than `metadata.name` and `metadata.namespace`, for resources without their own
    /// field list.
    #[error("{} is not a known field selector: only \"metadata.name\", \"metadata.namespace\"", go_quote(.0))]
    UnknownField(String),
}

fn check_length(text: &str) -> Result<(), SelectorError> {
    if text.len() > MAX_SELECTOR_BYTES {
        return Err(SelectorError::TooLong { length: text.len(), limit: MAX_SELECTOR_BYTES });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Label selectors
// ---------------------------------------------------------------------------------------------

/// How a [`Requirement`] relates a label to its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `key in (a,b)`: the label is set to one of the values.
    In,
    /// `key notin (a,b)`: the label is unset or set to none of the values.
    NotIn,
    /// `key=value`.
    Equals,
    /// `key==value`, the same as `key=value`.
    DoubleEquals,
    /// `key!=value`: the label is unset or set to another value.
    NotEquals,
    /// `key`: the label is set.
    Exists,
    /// `!key`: the label is unset.
    DoesNotExist,
    /// `key>5`: the label is an integer greater than the value.
    GreaterThan,
    /// `key<5`: the label is an integer less than the value.
    LessThan,
}

/// One condition on one label key. Built only through validation, so it is always well formed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// The label key, validated as a label key except in selectors built by
    /// [`LabelSelector::from_set`].
    key: String,
    /// How the label must relate to `values`.
    operator: Operator,
    /// Exactly one for the exact-match and comparison operators, none for Exists and
    /// DoesNotExist, at least one for In and NotIn.
    values: Vec<String>,
}

impl Requirement {
    /// Validates a requirement as Kubernetes' `labels.NewRequirement` does; the error is
    /// Kubernetes' aggregated message.
    fn new(key: String, operator: Operator, values: Vec<String>) -> Result<Requirement, String> {
        let mut errors = Vec::new();
        if let Some(detail) = label_key_errors(&key) {
            errors.push(invalid("key", &go_quote(&key), &detail));
        }
        errors.extend(operator_errors(operator, &values));
        for (index, value) in values.iter().enumerate() {
            if let Some(detail) = label_value_errors(value) {
                errors.push(invalid(&format!("values[{index}][{key}]"), &go_quote(value), &detail));
            }
        }
        if errors.is_empty() { Ok(Requirement { key, operator, values }) } else { Err(aggregate(errors)) }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn operator(&self) -> Operator {
        self.operator
    }

    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Whether a label with this requirement's key, set to `label` (`None` when unset), passes.
    fn matches(&self, label: Option<&str>) -> bool {
        let listed = |value: &str| self.values.iter().any(|candidate| candidate == value);
        match self.operator {
            Operator::In | Operator::Equals | Operator::DoubleEquals => label.is_some_and(listed),
            Operator::NotIn | Operator::NotEquals => label.is_none_or(|value| !listed(value)),
            Operator::Exists => label.is_some(),
            Operator::DoesNotExist => label.is_none(),
            Operator::GreaterThan | Operator::LessThan => self.compares(label),
        }
    }

    /// Gt and Lt: both the label and the single value must be integers.
    fn compares(&self, label: Option<&str>) -> bool {
        let (Some(label), [bound]) = (label, self.values.as_slice()) else {
            return false;
        };
        let (Ok(actual), Ok(bound)) = (label.parse::<i64>(), bound.parse::<i64>()) else {
            return false;
        };
        if self.operator == Operator::GreaterThan { actual > bound } else { actual < bound }
    }
}

/// The operator-specific checks of `labels.NewRequirement`.
fn operator_errors(operator: Operator, values: &[String]) -> Vec<String> {
    let all_values = || go_string_slice(values);
    let mut errors = Vec::new();
    match operator {
        Operator::In | Operator::NotIn if values.is_empty() => {
            errors.push(invalid("values", &all_values(), "for 'in', 'notin' operators, values set can't be empty"));
        }
        Operator::Equals | Operator::DoubleEquals | Operator::NotEquals if values.len() != 1 => {
            errors.push(invalid("values", &all_values(), "exact-match compatibility requires one single value"));
        }
        Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
            errors.push(invalid("values", &all_values(), "values set must be empty for exists and does not exist"));
        }
        Operator::GreaterThan | Operator::LessThan => {
            if values.len() != 1 {
                errors.push(invalid(
                    "values",
                    &all_values(),
                    "for 'Gt', 'Lt' operators, exactly one value is required",
                ));
            }
            for (index, value) in values.iter().enumerate() {
                if value.parse::<i64>().is_err() {
                    let detail = "for 'Gt', 'Lt' operators, the value must be an integer";
                    errors.push(invalid(&format!("values[{index}]"), &go_quote(value), detail));
                }
            }
        }
        _ => {}
    }
    errors
}

/// Kubernetes' text form: `!key`, `key`, `key=v`, `key==v`, `key!=v`, `key in (a,b)`,
/// `key notin (a,b)`, `key>1`, `key<1`, with set values sorted.
impl fmt::Display for Requirement {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.operator == Operator::DoesNotExist {
            formatter.write_char('!')?;
        }
        formatter.write_str(&self.key)?;
        let symbol = match self.operator {
            Operator::Exists | Operator::DoesNotExist => return Ok(()),
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => " in ",
            Operator::NotIn => " notin ",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
        };
        formatter.write_str(symbol)?;
        let set = matches!(self.operator, Operator::In | Operator::NotIn);
        if set {
            formatter.write_char('(')?;
        }
        let mut sorted: Vec<&str> = self.values.iter().map(String::as_str).collect();
        sorted.sort_unstable();
        formatter.write_str(&sorted.join(","))?;
        if set {
            formatter.write_char(')')?;
        }
        Ok(())
    }
}

/// A conjunction of label requirements.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    /// Sorted by key, as Kubernetes keeps them, so the text form is deterministic.
    requirements: Vec<Requirement>,
    /// Set only for the selector of a nil `metav1.LabelSelector`, which selects nothing.
    matches_nothing: bool,
}

impl LabelSelector {
    /// The selector that matches every object.
    pub fn everything() -> LabelSelector {
        LabelSelector::default()
    }

    /// The selector that matches no object.
    pub fn nothing() -> LabelSelector {
        LabelSelector { requirements: Vec::new(), matches_nothing: true }
    }

    /// Parses the `labelSelector` query parameter syntax; "" matches everything.
    ///
    /// # Errors
    /// [`SelectorError::TooLong`] past [`MAX_SELECTOR_BYTES`], [`SelectorError::Syntax`] and
    /// [`SelectorError::Requirement`] for malformed text or invalid keys and values.
    pub fn parse(text: &str) -> Result<LabelSelector, SelectorError> {
        check_length(text)?;
        let requirements = Parser::new(text).requirements()?;
        Ok(LabelSelector::sorted(requirements))
    }

    /// Converts a `metav1.LabelSelector` object (`matchLabels` and `matchExpressions` with In,
    /// NotIn, Exists and DoesNotExist), as Kubernetes' `LabelSelectorAsSelector` does: `null`
    /// selects nothing, an object without requirements selects everything.
    ///
    /// # Errors
    /// [`SelectorError::InvalidOperator`] and [`SelectorError::InvalidRequirement`] as Kubernetes
    /// reports them, [`SelectorError::Malformed`] for JSON that is not a `metav1.LabelSelector`.
    pub fn from_json(selector: &Value) -> Result<LabelSelector, SelectorError> {
        let object = match selector {
            Value::Null => return Ok(LabelSelector::nothing()),
            Value::Object(object) => object,
            _ => return Err(SelectorError::Malformed("a label selector must be an object".to_owned())),
        };
        let match_labels = match object.get("matchLabels") {
            None | Some(Value::Null) => None,
            Some(Value::Object(labels)) => Some(labels),
            Some(_) => return Err(SelectorError::Malformed("matchLabels must be an object".to_owned())),
        };
        let expressions: &[Value] = match object.get("matchExpressions") {
            None | Some(Value::Null) => &[],
            Some(Value::Array(expressions)) => expressions,
            Some(_) => return Err(SelectorError::Malformed("matchExpressions must be an array".to_owned())),
        };
        let mut requirements = Vec::new();
        // Sorted keys, so that with several invalid labels the same one is always reported.
        let labels: BTreeMap<&String, &Value> = match_labels.into_iter().flatten().collect();
        for (key, value) in labels {
            let Some(value) = value.as_str() else {
                return Err(SelectorError::Malformed(format!("matchLabels[{key}] must be a string")));
            };
            let requirement = Requirement::new(key.clone(), Operator::Equals, vec![value.to_owned()]);
            requirements.push(requirement.map_err(SelectorError::InvalidRequirement)?);
        }
        for expression in expressions {
            requirements.push(expression_requirement(expression)?);
        }
        Ok(LabelSelector::sorted(requirements))
    }

    /// The selector requiring every label of `labels` (Kubernetes' `SelectorFromSet`, as used for
    /// a service's `spec.selector`). Keys and values are not validated.
    pub fn from_set(labels: &BTreeMap<String, String>) -> LabelSelector {
        let requirements = labels
            .iter()
            .map(|(key, value)| Requirement {
                key: key.clone(),
                operator: Operator::Equals,
                values: vec![value.clone()],
            })
            .collect();
        LabelSelector::sorted(requirements)
    }

    fn sorted(mut requirements: Vec<Requirement>) -> LabelSelector {
        requirements.sort_by(|left, right| left.key.cmp(&right.key));
        LabelSelector { requirements, matches_nothing: false }
    }

    /// True when the selector does not restrict anything (it matches every object).
    pub fn is_empty(&self) -> bool {
        !self.matches_nothing && self.requirements.is_empty()
    }

    /// True for [`LabelSelector::nothing`].
    pub fn matches_nothing(&self) -> bool {
        self.matches_nothing
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether an object with these labels is selected.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_with(|key| labels.get(key).map(String::as_str))
    }

    /// Whether an object whose `metadata.labels` is `labels` is selected. `null` or a missing
    /// object means no labels; non-string values count as unset.
    pub fn matches_json(&self, labels: &Value) -> bool {
        let labels = labels.as_object();
        self.matches_with(|key| labels?.get(key)?.as_str())
    }

    fn matches_with<'a>(&self, lookup: impl Fn(&str) -> Option<&'a str>) -> bool {
        !self.matches_nothing
            && self.requirements.iter().all(|requirement| requirement.matches(lookup(&requirement.key)))
    }
}

/// The requirements in Kubernetes' text form, comma separated; "" for everything and nothing.
impl fmt::Display for LabelSelector {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, requirement) in self.requirements.iter().enumerate() {
            if index > 0 {
                formatter.write_char(',')?;
            }
            write!(formatter, "{requirement}")?;
        }
        Ok(())
    }
}

/// One `matchExpressions` entry as a requirement.
fn expression_requirement(expression: &Value) -> Result<Requirement, SelectorError> {
    let malformed = |what: &str| SelectorError::Malformed(format!("matchExpressions entries need {what}"));
    let Some(expression) = expression.as_object() else {
        return Err(malformed("to be objects"));
    };
    let text_field = |name: &str| match expression.get(name) {
        None | Some(Value::Null) => Ok(""),
        Some(Value::String(text)) => Ok(text.as_str()),
        Some(_) => Err(malformed(&format!("a string {name}"))),
    };
    let key = text_field("key")?;
    let operator = match text_field("operator")? {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        other => return Err(SelectorError::InvalidOperator(other.to_owned())),
    };
    let values = match expression.get("values") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(values)) => values
            .iter()
            .map(|value| value.as_str().map(str::to_owned))
            .collect::<Option<Vec<String>>>()
            .ok_or_else(|| malformed("string values"))?,
        Some(_) => return Err(malformed("an array of values")),
    };
    Requirement::new(key.to_owned(), operator, values).map_err(SelectorError::InvalidRequirement)
}

// --- Lexer -------------------------------------------------------------------------------------

/// Lexical tokens of the label selector syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    End,
    OpenParen,
    CloseParen,
    Comma,
    Bang,
    Equals,
    DoubleEquals,
    NotEquals,
    Greater,
    Less,
    In,
    NotIn,
    Identifier,
}

/// A token with the text it was read from ("" for the end of input).
#[derive(Debug, Clone, Copy)]
struct Lexeme<'a> {
    token: Token,
    /// The source text, quoted in error messages as Kubernetes quotes it.
    text: &'a str,
}

fn is_whitespace(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\r' | b'\n')
}

/// Characters that end an identifier and start an operator.
fn is_special(byte: u8) -> bool {
    matches!(byte, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

/// Splits `input` into lexemes, ending with exactly one [`Token::End`]. Works on bytes, like
/// Kubernetes: identifiers are any other bytes, and a NUL byte ends the input where a token would
/// start (inside an identifier it only ends the identifier).
fn lex(input: &str) -> Vec<Lexeme<'_>> {
    let bytes = input.as_bytes();
    let mut lexemes = Vec::new();
    let mut position = 0;
    loop {
        while bytes.get(position).copied().is_some_and(is_whitespace) {
            position += 1;
        }
        let Some(&first) = bytes.get(position).filter(|&&byte| byte != 0) else {
            lexemes.push(Lexeme { token: Token::End, text: "" });
            return lexemes;
        };
        let start = position;
        let token = if is_special(first) {
            let (token, length) = symbol(&bytes[start..]);
            position += length;
            token
        } else {
            while bytes.get(position).is_some_and(|&byte| byte != 0 && !is_special(byte) && !is_whitespace(byte)) {
                position += 1;
            }
            match &input[start..position] {
                "in" => Token::In,
                "notin" => Token::NotIn,
                _ => Token::Identifier,
            }
        };
        // Every delimiter is ASCII, so `start..position` falls on character boundaries.
        lexemes.push(Lexeme { token, text: &input[start..position] });
        if bytes.get(position) == Some(&0) {
            position += 1;
        }
    }
}

/// The operator at the start of `bytes` (which starts with a special character) and its length:
/// the two-character operators `!=` and `==`, else a single character.
fn symbol(bytes: &[u8]) -> (Token, usize) {
    match bytes {
        [b'!', b'=', ..] => (Token::NotEquals, 2),
        [b'=', b'=', ..] => (Token::DoubleEquals, 2),
        [b'!', ..] => (Token::Bang, 1),
        [b'=', ..] => (Token::Equals, 1),
        [b'(', ..] => (Token::OpenParen, 1),
        [b')', ..] => (Token::CloseParen, 1),
        [b',', ..] => (Token::Comma, 1),
        [b'>', ..] => (Token::Greater, 1),
        _ => (Token::Less, 1),
    }
}

// --- Parser ------------------------------------------------------------------------------------

/// Where the parser is: `in` and `notin` are operators after a key, but plain words (keys or
/// values) everywhere else.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

/// Recursive-descent parser over the lexemes, mirroring Kubernetes' so that errors match.
struct Parser<'a> {
    /// Every lexeme of the input, ending with exactly one End.
    lexemes: Vec<Lexeme<'a>>,
    /// Index of the next lexeme; never past the final End.
    position: usize,
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Parser<'a> {
        Parser { lexemes: lex(input), position: 0 }
    }

    fn peek(&self, context: Context) -> Lexeme<'a> {
        let lexeme = self.lexemes.get(self.position).or(self.lexemes.last()).copied();
        let lexeme = lexeme.unwrap_or(Lexeme { token: Token::End, text: "" });
        let token = match lexeme.token {
            Token::In | Token::NotIn if context == Context::Values => Token::Identifier,
            token => token,
        };
        Lexeme { token, ..lexeme }
    }

    /// Returns the current lexeme and moves past it; the final End is never moved past.
    fn next(&mut self, context: Context) -> Lexeme<'a> {
        let lexeme = self.peek(context);
        if self.position + 1 < self.lexemes.len() {
            self.position += 1;
        }
        lexeme
    }

    /// The whole selector: requirements separated by commas.
    fn requirements(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut requirements = Vec::new();
        loop {
            let lookahead = self.peek(Context::Values);
            match lookahead.token {
                Token::Identifier | Token::Bang => {}
                Token::End => return Ok(requirements),
                _ => {
                    let message = format!("found '{}', expected: !, identifier, or 'end of string'", lookahead.text);
                    return Err(SelectorError::Syntax(message));
                }
            }
            requirements.push(self.requirement().map_err(SelectorError::Requirement)?);
            let after = self.next(Context::Values);
            match after.token {
                Token::End => return Ok(requirements),
                Token::Comma => {
                    let following = self.peek(Context::Values);
                    if !matches!(following.token, Token::Identifier | Token::Bang) {
                        let message = format!("found '{}', expected: identifier after ','", following.text);
                        return Err(SelectorError::Syntax(message));
                    }
                }
                _ => {
                    let message = format!("found '{}', expected: ',' or 'end of string'", after.text);
                    return Err(SelectorError::Syntax(message));
                }
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        let (key, unary) = self.key_and_unary_operator()?;
        if let Some(operator) = unary {
            return Requirement::new(key, operator, Vec::new());
        }
        let operator = self.binary_operator()?;
        let values = match operator {
            Operator::In | Operator::NotIn => self.value_set()?,
            _ => self.exact_value()?,
        };
        Requirement::new(key, operator, values)
    }

    /// The key, with `!` before it (DoesNotExist) or nothing after it (Exists) as its operator.
    fn key_and_unary_operator(&mut self) -> Result<(String, Option<Operator>), String> {
        let mut operator = None;
        let mut lexeme = self.next(Context::Values);
        if lexeme.token == Token::Bang {
            operator = Some(Operator::DoesNotExist);
            lexeme = self.next(Context::Values);
        }
        if lexeme.token != Token::Identifier {
            return Err(format!("found '{}', expected: identifier", lexeme.text));
        }
        if let Some(detail) = label_key_errors(lexeme.text) {
            // Kubernetes validates the key here with an empty field path, hence ": Invalid value".
            return Err(invalid("", &go_quote(lexeme.text), &detail));
        }
        let following = self.peek(Context::Values).token;
        if operator.is_none() && matches!(following, Token::End | Token::Comma) {
            operator = Some(Operator::Exists);
        }
        Ok((lexeme.text.to_owned(), operator))
    }

    fn binary_operator(&mut self) -> Result<Operator, String> {
        let lexeme = self.next(Context::KeyAndOperator);
        match lexeme.token {
            Token::In => Ok(Operator::In),
            Token::NotIn => Ok(Operator::NotIn),
            Token::Equals => Ok(Operator::Equals),
            Token::DoubleEquals => Ok(Operator::DoubleEquals),
            Token::NotEquals => Ok(Operator::NotEquals),
            Token::Greater => Ok(Operator::GreaterThan),
            Token::Less => Ok(Operator::LessThan),
            _ => Err(format!("found '{}', expected: in, notin, =, ==, !=, gt, lt", lexeme.text)),
        }
    }

    /// `(a,b,c)`, sorted and without duplicates; `()` is the set holding the empty value.
    fn value_set(&mut self) -> Result<Vec<String>, String> {
        let open = self.next(Context::Values);
        if open.token != Token::OpenParen {
            return Err(format!("found '{}' expected: '('", open.text));
        }
        let first = self.peek(Context::Values);
        match first.token {
            Token::Identifier | Token::Comma => {
                let values = self.value_list()?;
                if self.next(Context::Values).token != Token::CloseParen {
                    return Err(format!("found '{}', expected: ')'", first.text));
                }
                Ok(values.into_iter().collect())
            }
            Token::CloseParen => {
                self.next(Context::Values);
                Ok(vec![String::new()])
            }
            _ => Err(format!("found '{}', expected: ',', ')' or identifier", first.text)),
        }
    }

    /// Comma-separated, possibly empty values up to (not including) the closing parenthesis.
    fn value_list(&mut self) -> Result<BTreeSet<String>, String> {
        let mut values = BTreeSet::new();
        loop {
            let lexeme = self.next(Context::Values);
            match lexeme.token {
                Token::Identifier => {
                    values.insert(lexeme.text.to_owned());
                    let following = self.peek(Context::Values);
                    match following.token {
                        Token::Comma => {}
                        Token::CloseParen => return Ok(values),
                        _ => return Err(format!("found '{}', expected: ',' or ')'", following.text)),
                    }
                }
                Token::Comma => {
                    // "(,", ",)" and ",," all hold the empty value.
                    if values.is_empty() {
                        values.insert(String::new());
                    }
                    match self.peek(Context::Values).token {
                        Token::CloseParen => {
                            values.insert(String::new());
                            return Ok(values);
                        }
                        Token::Comma => {
                            self.next(Context::Values);
                            values.insert(String::new());
                        }
                        _ => {}
                    }
                }
                _ => return Err(format!("found '{}', expected: ',', or identifier", lexeme.text)),
            }
        }
    }

    /// The value after `=`, `==`, `!=`, `>` or `<`; nothing before a comma or the end is "".
    fn exact_value(&mut self) -> Result<Vec<String>, String> {
        if matches!(self.peek(Context::Values).token, Token::End | Token::Comma) {
            return Ok(vec![String::new()]);
        }
        let lexeme = self.next(Context::Values);
        if lexeme.token == Token::Identifier {
            Ok(vec![lexeme.text.to_owned()])
        } else {
            Err(format!("found '{}', expected: identifier", lexeme.text))
        }
    }
}

// --- Label key and value validation ---------------------------------------------------------

/// Longest name part of a label key, and longest label value.
const LABEL_NAME_MAX: usize = 63;
/// Longest DNS subdomain, the optional prefix of a label key.
const DNS_SUBDOMAIN_MAX: usize = 253;
const QUALIFIED_NAME_MESSAGE: &str =
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const QUALIFIED_NAME_REGEX: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_EXAMPLES: &[&str] = &["MyName", "my.name", "123-abc"];
const LABEL_VALUE_MESSAGE: &str = concat!(
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', ",
    "and must start and end with an alphanumeric character"
);
const LABEL_VALUE_REGEX: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_EXAMPLES: &[&str] = &["MyValue", "my_value", "12345"];
const DNS_SUBDOMAIN_MESSAGE: &str = concat!(
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', ",
    "and must start and end with an alphanumeric character"
);
const DNS_SUBDOMAIN_REGEX: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";

/// Why `key` is not a label key (`[prefix/]name`), problems joined by "; "; `None` when valid.
fn label_key_errors(key: &str) -> Option<String> {
    let parts: Vec<&str> = key.split('/').collect();
    let mut errors = Vec::new();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errors.push("prefix part must be non-empty".to_owned());
            } else {
                errors.extend(dns_subdomain_errors(prefix).into_iter().map(|error| format!("prefix part {error}")));
            }
            *name
        }
        _ => {
            let format = regex_error(QUALIFIED_NAME_MESSAGE, QUALIFIED_NAME_REGEX, QUALIFIED_NAME_EXAMPLES);
            return Some(format!(
                "a qualified name {format} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            ));
        }
    };
    if name.is_empty() {
        errors.push("name part must be non-empty".to_owned());
    } else if name.len() > LABEL_NAME_MAX {
        errors.push(format!("name part must be no more than {LABEL_NAME_MAX} characters"));
    }
    if !is_qualified_name(name) {
        errors.push(format!(
            "name part {}",
            regex_error(QUALIFIED_NAME_MESSAGE, QUALIFIED_NAME_REGEX, QUALIFIED_NAME_EXAMPLES)
        ));
    }
    (!errors.is_empty()).then(|| errors.join("; "))
}

/// Why `value` is not a label value; `None` when valid.
fn label_value_errors(value: &str) -> Option<String> {
    let mut errors = Vec::new();
    if value.len() > LABEL_NAME_MAX {
        errors.push(format!("must be no more than {LABEL_NAME_MAX} characters"));
    }
    if !value.is_empty() && !is_qualified_name(value) {
        errors.push(regex_error(LABEL_VALUE_MESSAGE, LABEL_VALUE_REGEX, LABEL_VALUE_EXAMPLES));
    }
    (!errors.is_empty()).then(|| errors.join("; "))
}

fn dns_subdomain_errors(prefix: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if prefix.len() > DNS_SUBDOMAIN_MAX {
        errors.push(format!("must be no more than {DNS_SUBDOMAIN_MAX} characters"));
    }
    let label_ok = |label: &str| {
        let bytes = label.as_bytes();
        let alphanumeric = |byte: &u8| byte.is_ascii_lowercase() || byte.is_ascii_digit();
        bytes.first().is_some_and(alphanumeric)
            && bytes.last().is_some_and(alphanumeric)
            && bytes.iter().all(|byte| alphanumeric(byte) || *byte == b'-')
    };
    if !prefix.split('.').all(label_ok) {
        errors.push(regex_error(DNS_SUBDOMAIN_MESSAGE, DNS_SUBDOMAIN_REGEX, &["example.com"]));
    }
    errors
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`: alphanumeric at both ends, `-_.` allowed inside.
fn is_qualified_name(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.iter().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'))
}

/// Kubernetes' explanation of a failed pattern, with examples.
fn regex_error(message: &str, regex: &str, examples: &[&str]) -> String {
    let examples: Vec<String> = examples.iter().map(|example| format!("'{example}', ")).collect();
    format!("{message} (e.g. {}regex used for validation is '{regex}')", examples.join("or "))
}

/// A `field.Invalid` error's text: `path: Invalid value: value: detail`.
fn invalid(path: &str, value: &str, detail: &str) -> String {
    format!("{path}: Invalid value: {value}: {detail}")
}

/// Several errors as Kubernetes aggregates them: one alone, several as `[a, b]`, duplicates
/// dropped.
fn aggregate(errors: Vec<String>) -> String {
    let mut unique: Vec<String> = Vec::with_capacity(errors.len());
    for error in errors {
        if !unique.contains(&error) {
            unique.push(error);
        }
    }
    match unique.as_slice() {
        [single] => single.clone(),
        _ => format!("[{}]", unique.join(", ")),
    }
}

/// Go's `%q`: a double-quoted string with escapes.
fn go_quote(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for character in text.chars() {
        match character {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            '\u{7}' => quoted.push_str("\\a"),
            '\u{8}' => quoted.push_str("\\b"),
            '\u{b}' => quoted.push_str("\\v"),
            '\u{c}' => quoted.push_str("\\f"),
            control if u32::from(control) < 0x20 || control == '\u{7f}' => {
                let _ = write!(quoted, "\\x{:02x}", u32::from(control));
            }
            control if control.is_control() => {
                let _ = write!(quoted, "\\u{:04x}", u32::from(control));
            }
            other => quoted.push(other),
        }
    }
    quoted.push('"');
    quoted
}

/// Go's `%#v` of a `[]string`, as Kubernetes prints a rejected value list.
fn go_string_slice(values: &[String]) -> String {
    if values.is_empty() {
        return "[]string(nil)".to_owned();
    }
    let quoted: Vec<String> = values.iter().map(|value| go_quote(value)).collect();
    format!("[]string{{{}}}", quoted.join(", "))
}

// ---------------------------------------------------------------------------------------------
// Field selectors
// ---------------------------------------------------------------------------------------------

/// How a field requirement compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldOperator {
    /// `f=v` or `f==v`.
    Equals,
    /// `f!=v`.
    NotEquals,
}

/// One `field op value` term; the value is unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    /// The field path as written, e.g. `spec.nodeName`; checked only by `validate_for`.
    field: String,
    /// Whether the field must equal or differ from `value`.
    operator: FieldOperator,
    /// The literal value, with the `\\`, `\,` and `\=` escapes undone.
    value: String,
}

impl FieldRequirement {
    pub fn field(&self) -> &str {
        &self.field
    }

    pub fn operator(&self) -> FieldOperator {
        self.operator
    }

    pub fn value(&self) -> &str {
        &self.value
    }
}

/// A conjunction of field requirements.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    /// In the order Kubernetes evaluates them: sorted by their original text.
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// The selector that matches every object.
    pub fn everything() -> FieldSelector {
        FieldSelector::default()
    }

    /// Parses the `fieldSelector` query parameter syntax; "" matches everything. Fields are not
    /// checked here: see [`FieldSelector::validate_for`].
    ///
    /// # Errors
    /// [`SelectorError::TooLong`] past [`MAX_SELECTOR_BYTES`]; [`SelectorError::FieldTerm`],
    /// [`SelectorError::InvalidEscape`] and [`SelectorError::UnescapedCharacter`] for bad terms.
    pub fn parse(text: &str) -> Result<FieldSelector, SelectorError> {
        check_length(text)?;
        let mut terms = split_terms(text);
        terms.sort_unstable();
        let mut requirements = Vec::with_capacity(terms.len());
        for term in terms.into_iter().filter(|term| !term.is_empty()) {
            let Some((field, operator, raw_value)) = split_term(term) else {
                return Err(SelectorError::FieldTerm { selector: text.to_owned(), term: term.to_owned() });
            };
            let value = unescape_value(raw_value)?;
            requirements.push(FieldRequirement { field: field.to_owned(), operator, value });
        }
        Ok(FieldSelector { requirements })
    }

    /// True when the selector does not restrict anything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// The value `field` must equal, when the selector pins it (`spec.nodeName=node-1`): lets a
    /// caller narrow a scan before filtering.
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|requirement| requirement.field == field && requirement.operator == FieldOperator::Equals)
            .map(|requirement| requirement.value.as_str())
    }

    /// Checks that `resource` (a plural such as "pods") can be selected on every field, with
    /// Kubernetes' error for the first field that cannot.
    ///
    /// # Errors
    /// [`SelectorError::FieldLabelNotSupported`] for resources with their own field list,
    /// [`SelectorError::UnknownField`] for the others.
    pub fn validate_for(&self, resource: &str) -> Result<(), SelectorError> {
        let supported = supported_fields(resource);
        for requirement in &self.requirements {
            let field = requirement.field.as_str();
            match supported {
                Some(fields) if !fields.contains(&field) => {
                    return Err(SelectorError::FieldLabelNotSupported(field.to_owned()));
                }
                None if !METADATA_FIELDS.contains(&field) => {
                    return Err(SelectorError::UnknownField(field.to_owned()));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Whether `object`, of kind `resource`, is selected. A field the object does not set (or that
    /// the resource does not expose) compares as "", as in Kubernetes.
    pub fn matches(&self, resource: &str, object: &Value) -> bool {
        self.requirements.iter().all(|requirement| {
            let actual = field_value(resource, object, &requirement.field);
            match requirement.operator {
                FieldOperator::Equals => actual == requirement.value,
                FieldOperator::NotEquals => actual != requirement.value,
            }
        })
    }
}

/// Kubernetes' text form, values escaped: `spec.nodeName=n1,status.phase!=Running`.
impl fmt::Display for FieldSelector {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, requirement) in self.requirements.iter().enumerate() {
            if index > 0 {
                formatter.write_char(',')?;
            }
            let operator = match requirement.operator {
                FieldOperator::Equals => "=",
                FieldOperator::NotEquals => "!=",
            };
            let escaped = requirement.value.replace('\\', "\\\\").replace(',', "\\,").replace('=', "\\=");
            write!(formatter, "{}{operator}{escaped}", requirement.field)?;
        }
        Ok(())
    }
}

/// Splits on commas not escaped by a backslash; escapes stay in the terms.
fn split_terms(text: &str) -> Vec<&str> {
    if text.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (index, character) in text.char_indices() {
        match character {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            ',' => {
                terms.push(&text[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    terms.push(&text[start..]);
    terms
}

/// Splits a term at the first operator (`!=`, then `==`, then `=` at each position).
fn split_term(term: &str) -> Option<(&str, FieldOperator, &str)> {
    const OPERATORS: [(&str, FieldOperator); 3] =
        [("!=", FieldOperator::NotEquals), ("==", FieldOperator::Equals), ("=", FieldOperator::Equals)];
    for (index, _) in term.char_indices() {
        let rest = &term[index..];
        if let Some((symbol, operator)) = OPERATORS.iter().find(|(symbol, _)| rest.starts_with(symbol)) {
            return Some((&term[..index], *operator, &rest[symbol.len()..]));
        }
    }
    None
}

/// Undoes `\\`, `\,` and `\=`; any other escape, or a bare `,` or `=`, is an error.
fn unescape_value(raw: &str) -> Result<String, SelectorError> {
    let mut value = String::with_capacity(raw.len());
    let mut escaped = false;
    for character in raw.chars() {
        if escaped {
            if !matches!(character, '\\' | ',' | '=') {
                return Err(SelectorError::InvalidEscape(format!("\\{character}")));
            }
            value.push(character);
            escaped = false;
            continue;
        }
        match character {
            '\\' => escaped = true,
            ',' | '=' => return Err(SelectorError::UnescapedCharacter(character)),
            other => value.push(other),
        }
    }
    if escaped {
        return Err(SelectorError::InvalidEscape("\\".to_owned()));
    }
    Ok(value)
}

/// The fields every resource without its own list supports.
const METADATA_FIELDS: &[&str] = &["metadata.name", "metadata.namespace"];

/// The fields Kubernetes lets each of these resources be selected on; `None` for resources that
/// support only [`METADATA_FIELDS`] (and reject others with a different message).
fn supported_fields(resource: &str) -> Option<&'static [&'static str]> {
    let fields: &'static [&'static str] = match resource {
        "pods" => &[
            "metadata.name",
            "metadata.namespace",
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
            // Accepted for old clients; means spec.nodeName.
            "spec.host",
        ],
        "events" => &[
            "metadata.name",
            "metadata.namespace",
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        "secrets" => &["metadata.name", "metadata.namespace", "type"],
        "namespaces" => &["metadata.name", "status.phase"],
        "nodes" => &["metadata.name", "spec.unschedulable"],
        "services" => &["metadata.name", "metadata.namespace", "spec.clusterIP", "spec.type"],
        "replicationcontrollers" => &["metadata.name", "metadata.namespace", "status.replicas"],
        _ => return None,
    };
    Some(fields)
}

/// The value Kubernetes indexes `field` under for `object`; "" for anything it does not index.
/// Fields the API server defaults on write read as their default when unset.
fn field_value(resource: &str, object: &Value, field: &str) -> String {
    let text = |path: &[&str]| text_at(object, path).to_owned();
    let defaulted = |path: &[&str], default: &str| match text_at(object, path) {
        "" => default.to_owned(),
        value => value.to_owned(),
    };
    let flag = |path: &[&str]| at(object, path).and_then(Value::as_bool).unwrap_or(false).to_string();
    match (resource, field) {
        (_, "metadata.name") => text(&["metadata", "name"]),
        (_, "metadata.namespace") => text(&["metadata", "namespace"]),
        ("pods", "spec.nodeName" | "spec.host") => text(&["spec", "nodeName"]),
        ("pods", "spec.restartPolicy") => defaulted(&["spec", "restartPolicy"], "Always"),
        ("pods", "spec.schedulerName") => defaulted(&["spec", "schedulerName"], "default-scheduler"),
        ("pods", "spec.serviceAccountName") => text(&["spec", "serviceAccountName"]),
        ("pods", "spec.hostNetwork") => flag(&["spec", "hostNetwork"]),
        ("pods", "status.phase") => text(&["status", "phase"]),
        ("pods", "status.podIP") => pod_ip(object).to_owned(),
        ("pods", "status.nominatedNodeName") => text(&["status", "nominatedNodeName"]),
        ("events", "source") => match text_at(object, &["source", "component"]) {
            "" => text(&["reportingComponent"]),
            component => component.to_owned(),
        },
        ("events", "reason" | "reportingComponent" | "type") => text(&[field]),
        ("events", _) => match field.strip_prefix("involvedObject.") {
            Some(reference_field) => text(&["involvedObject", reference_field]),
            None => String::new(),
        },
        ("secrets", "type") => defaulted(&["type"], "Opaque"),
        ("namespaces", "status.phase") => defaulted(&["status", "phase"], "Active"),
        ("nodes", "spec.unschedulable") => flag(&["spec", "unschedulable"]),
        ("services", "spec.clusterIP") => text(&["spec", "clusterIP"]),
        ("services", "spec.type") => defaulted(&["spec", "type"], "ClusterIP"),
        ("replicationcontrollers", "status.replicas") => {
            at(object, &["status", "replicas"]).and_then(Value::as_i64).unwrap_or(0).to_string()
        }
        _ => String::new(),
    }
}

/// The first pod IP: `status.podIPs[0].ip`, or `status.podIP` when only that is written.
fn pod_ip(pod: &Value) -> &str {
    match at(pod, &["status", "podIPs"]).and_then(Value::as_array).and_then(|ips| ips.first()) {
        Some(first) => text_at(first, &["ip"]),
        None => text_at(pod, &["status", "podIP"]),
    }
}

/// The value at `path`, `None` when a step is missing or holds `null`.
fn at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut current = value;
    for key in path {
        current = current.as_object()?.get(*key)?;
    }
    (!current.is_null()).then_some(current)
}

/// The string at `path`, "" when unset or not a string.
fn text_at<'a>(value: &'a Value, path: &[&str]) -> &'a str {
    at(value, path).and_then(Value::as_str).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const NAME_PART_FORMAT: &str = concat!(
        "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an ",
        "alphanumeric character (e.g. 'MyName', or 'my.name', or '123-abc', regex used for validation is ",
        "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
    );
    const LABEL_VALUE_FORMAT: &str = concat!(
        "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must ",
        "start and end with an alphanumeric character (e.g. 'MyValue', or 'my_value', or '12345', regex used for ",
        "validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
    );

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(key, value)| ((*key).to_owned(), (*value).to_owned())).collect()
    }

    fn parse_error(text: &str) -> String {
        match LabelSelector::parse(text) {
            Ok(selector) => panic!("{text:?} parsed as {selector}"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn label_selectors_parse_to_their_canonical_form() {
        let table: &[(&str, &str)] = &[
            ("", ""),
            ("   ", ""),
            ("a=b", "a=b"),
            ("a==b", "a==b"),
            ("a!=b", "a!=b"),
            ("a in (x,y)", "a in (x,y)"),
            ("a in (y,x,x)", "a in (x,y)"),
            ("a notin (x)", "a notin (x)"),
            ("a", "a"),
            ("!a", "!a"),
            (" c=d ,\t!b , a ", "a,!b,c=d"),
            ("z=1,a=2", "a=2,z=1"),
            ("x>1,y<20", "x>1,y<20"),
            ("a=", "a="),
            ("a=,b", "a=,b"),
            ("env in ()", "env in ()"),
            ("env in (,prod)", "env in (,prod)"),
            ("env in (a,,b)", "env in (,a,b)"),
            ("env notin (a,)", "env notin (,a)"),
            ("in=notin", "in=notin"),
            ("a=in", "a=in"),
            ("a in (in,notin)", "a in (in,notin)"),
            ("example.com/tier=front", "example.com/tier=front"),
            ("a!=b,!c", "a!=b,!c"),
        ];
        for &(text, canonical) in table {
            let selector = LabelSelector::parse(text).unwrap_or_else(|error| panic!("{text:?}: {error}"));
            assert_eq!(selector.to_string(), canonical, "{text:?}");
        }
        let selector = LabelSelector::parse("tier in (b,a),app=web").expect("valid selector");
        let keys: Vec<&str> = selector.requirements().iter().map(Requirement::key).collect();
        assert_eq!(keys, ["app", "tier"]);
        assert_eq!(selector.requirements()[1].operator(), Operator::In);
        assert_eq!(selector.requirements()[1].values(), ["a", "b"]);
        assert!(LabelSelector::parse("").expect("empty selector").is_empty());
        assert!(!selector.is_empty());
    }

    #[test]
    fn label_selector_syntax_errors_use_kubernetes_texts() {
        let table: &[(&str, &str)] = &[
            (",a", "found ',', expected: !, identifier, or 'end of string'"),
            ("a,", "found '', expected: identifier after ','"),
            ("a,,b", "found ',', expected: identifier after ','"),
            ("a=b c", "found 'c', expected: ',' or 'end of string'"),
            ("!a=b", "found '=', expected: ',' or 'end of string'"),
            ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
            ("a in", "unable to parse requirement: found '' expected: '('"),
            ("a in x", "unable to parse requirement: found 'x' expected: '('"),
            ("a in (x", "unable to parse requirement: found '', expected: ',' or ')'"),
            ("a in (x y)", "unable to parse requirement: found 'y', expected: ',' or ')'"),
            ("a in (=)", "unable to parse requirement: found '=', expected: ',', ')' or identifier"),
            ("a in (,=)", "unable to parse requirement: found '=', expected: ',', or identifier"),
            ("!", "unable to parse requirement: found '', expected: identifier"),
            ("!!a", "unable to parse requirement: found '!', expected: identifier"),
            ("a=(", "unable to parse requirement: found '(', expected: identifier"),
        ];
        for &(text, expected) in table {
            assert_eq!(parse_error(text), expected, "{text:?}");
        }
    }

    #[test]
    fn label_selector_validation_errors_use_kubernetes_texts() {
        assert_eq!(
            parse_error("-a=b"),
            format!("unable to parse requirement: : Invalid value: \"-a\": {NAME_PART_FORMAT}")
        );
        assert_eq!(
            parse_error("a=-b"),
            format!("unable to parse requirement: values[0][a]: Invalid value: \"-b\": {LABEL_VALUE_FORMAT}")
        );
        assert_eq!(
            parse_error("a in (ok,-bad)"),
            format!("unable to parse requirement: values[0][a]: Invalid value: \"-bad\": {LABEL_VALUE_FORMAT}"),
            "values are sorted before they are validated"
        );
        assert_eq!(
            parse_error("a>b"),
            "unable to parse requirement: values[0]: Invalid value: \"b\": for 'Gt', 'Lt' operators, the value must be an integer"
        );
        assert_eq!(
            parse_error("a<x_"),
            format!(
                "unable to parse requirement: [values[0]: Invalid value: \"x_\": for 'Gt', 'Lt' operators, the value must be an integer, \
                 values[0][a]: Invalid value: \"x_\": {LABEL_VALUE_FORMAT}]"
            )
        );
        assert_eq!(
            parse_error("/a"),
            "unable to parse requirement: : Invalid value: \"/a\": prefix part must be non-empty"
        );
        assert_eq!(
            parse_error("Example.com/a"),
            "unable to parse requirement: : Invalid value: \"Example.com/a\": prefix part a lowercase RFC 1123 subdomain must \
             consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character \
             (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        );
        assert_eq!(
            parse_error("a/"),
            format!(
                "unable to parse requirement: : Invalid value: \"a/\": name part must be non-empty; {NAME_PART_FORMAT}"
            )
        );
        assert_eq!(
            parse_error("a/b/c"),
            "unable to parse requirement: : Invalid value: \"a/b/c\": a qualified name must consist of alphanumeric characters, \
             '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName', or 'my.name', or '123-abc', \
             regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix \
             and '/' (e.g. 'example.com/MyName')"
        );
        let long_key = "k".repeat(64);
        assert_eq!(
            parse_error(&long_key),
            format!(
                "unable to parse requirement: : Invalid value: \"{long_key}\": name part must be no more than 63 characters"
            )
        );
        let long_value = format!("a={}", "v".repeat(64));
        assert!(
            parse_error(&long_value).ends_with("must be no more than 63 characters"),
            "{}",
            parse_error(&long_value)
        );
        assert_eq!(
            parse_error("a=\"q\""),
            format!("unable to parse requirement: values[0][a]: Invalid value: \"\\\"q\\\"\": {LABEL_VALUE_FORMAT}")
        );
    }

    #[test]
    fn over_long_selectors_are_rejected() {
        let text = format!("a in ({})", "x,".repeat(MAX_SELECTOR_BYTES));
        assert_eq!(
            LabelSelector::parse(&text),
            Err(SelectorError::TooLong { length: text.len(), limit: MAX_SELECTOR_BYTES })
        );
        assert!(matches!(FieldSelector::parse(&text), Err(SelectorError::TooLong { .. })));
        let at_limit = format!("a={}", "b".repeat(MAX_SELECTOR_BYTES - 2));
        assert!(matches!(LabelSelector::parse(&at_limit), Err(SelectorError::Requirement(_))), "length alone passes");
    }

    #[test]
    fn odd_bytes_do_not_break_the_lexer() {
        assert_eq!(LabelSelector::parse("a\0=b").expect("NUL ends the identifier").to_string(), "a=b");
        assert_eq!(
            LabelSelector::parse("a, \0 junk").map_err(|error| error.to_string()),
            Err("found '', expected: identifier after ','".to_owned())
        );
        let error = parse_error("ключ=v");
        assert!(error.starts_with("unable to parse requirement: : Invalid value: \"ключ\""), "{error}");
        assert_eq!(
            parse_error("a=\u{1}"),
            format!("unable to parse requirement: values[0][a]: Invalid value: \"\\x01\": {LABEL_VALUE_FORMAT}")
        );
    }

    #[test]
    fn label_selectors_match_like_kubernetes() {
        let set = labels(&[("app", "web"), ("tier", "front"), ("replicas", "3")]);
        let table: &[(&str, bool)] = &[
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app=db", false),
            ("app!=db", true),
            ("app!=web", false),
            ("missing!=x", true),
            ("missing=", false),
            ("app in (web,db)", true),
            ("app in (db)", false),
            ("app notin (web)", false),
            ("missing notin (x)", true),
            ("app", true),
            ("missing", false),
            ("!app", false),
            ("!missing", true),
            ("replicas>2", true),
            ("replicas>3", false),
            ("replicas<4", true),
            ("replicas<3", false),
            ("app>1", false),
            ("missing<1", false),
            ("app=web,tier=front", true),
            ("app=web,tier=back", false),
        ];
        for &(text, expected) in table {
            let selector = LabelSelector::parse(text).unwrap_or_else(|error| panic!("{text:?}: {error}"));
            assert_eq!(selector.matches(&set), expected, "{text:?}");
            let json_labels = json!({"app": "web", "tier": "front", "replicas": "3"});
            assert_eq!(selector.matches_json(&json_labels), expected, "{text:?} over JSON");
        }
        let exists = LabelSelector::parse("app").expect("valid selector");
        assert!(!exists.matches_json(&json!(null)));
        assert!(!exists.matches_json(&json!({"app": 1})), "non-string label values count as unset");
        assert!(LabelSelector::parse("!app").expect("valid selector").matches_json(&json!(null)));
    }

    #[test]
    fn label_selector_objects_convert_like_kubernetes() {
        let selector = LabelSelector::from_json(&json!({
            "matchLabels": {"app": "web", "component": "api"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["front", "edge"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "env", "operator": "NotIn", "values": ["dev"]},
                {"key": "release", "operator": "Exists", "values": null},
            ],
        }))
        .expect("valid selector");
        assert_eq!(selector.to_string(), "app=web,!canary,component=api,env notin (dev),release,tier in (edge,front)");
        assert!(selector.matches(&labels(&[("app", "web"), ("component", "api"), ("tier", "edge"), ("release", "1")])));
        assert!(!selector.matches(&labels(&[("app", "web"), ("component", "api"), ("tier", "edge")])));
        assert!(!selector.matches(&labels(&[
            ("app", "web"),
            ("component", "api"),
            ("tier", "edge"),
            ("release", "1"),
            ("canary", "")
        ])));

        let everything =
            LabelSelector::from_json(&json!({"matchLabels": {}, "matchExpressions": []})).expect("empty selector");
        assert!(everything.is_empty());
        assert!(everything.matches(&BTreeMap::new()));

        let nothing = LabelSelector::from_json(&json!(null)).expect("null selector");
        assert!(!nothing.is_empty());
        assert!(nothing.matches_nothing());
        assert!(!nothing.matches(&BTreeMap::new()));
        assert!(!nothing.matches(&labels(&[("app", "web")])));
        assert_eq!(nothing.to_string(), "");
    }

    #[test]
    fn invalid_label_selector_objects() {
        let error = |selector: Value| LabelSelector::from_json(&selector).expect_err("invalid selector").to_string();
        assert_eq!(
            error(json!({"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["x"]}]})),
            "\"Equals\" is not a valid label selector operator"
        );
        assert_eq!(error(json!({"matchExpressions": [{"key": "a"}]})), "\"\" is not a valid label selector operator");
        assert_eq!(
            error(json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]})),
            "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty"
        );
        assert_eq!(
            error(json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x", "y"]}]})),
            "values: Invalid value: []string{\"x\", \"y\"}: values set must be empty for exists and does not exist"
        );
        assert_eq!(
            error(json!({"matchLabels": {"-k": "v"}})),
            format!("key: Invalid value: \"-k\": {NAME_PART_FORMAT}")
        );
        assert_eq!(
            error(json!({"matchLabels": {"k": "v!"}})),
            format!("values[0][k]: Invalid value: \"v!\": {LABEL_VALUE_FORMAT}")
        );
        assert_eq!(
            error(json!({"matchLabels": {"k": 1}})),
            "malformed label selector: matchLabels[k] must be a string"
        );
        assert_eq!(error(json!({"matchLabels": []})), "malformed label selector: matchLabels must be an object");
        assert_eq!(error(json!("app=web")), "malformed label selector: a label selector must be an object");
        assert!(matches!(
            LabelSelector::from_json(&json!({"matchExpressions": [{"key": "a", "operator": "In", "values": [1]}]})),
            Err(SelectorError::Malformed(_))
        ));
    }

    #[test]
    fn selectors_from_sets_are_not_validated() {
        let selector = LabelSelector::from_set(&labels(&[("b", "2"), ("a", "1")]));
        assert_eq!(selector.to_string(), "a=1,b=2");
        assert!(selector.matches(&labels(&[("a", "1"), ("b", "2"), ("c", "3")])));
        assert!(!selector.matches(&labels(&[("a", "1")])));
        assert!(LabelSelector::from_set(&BTreeMap::new()).is_empty());
        assert!(LabelSelector::everything().matches(&BTreeMap::new()));
    }

    fn field_error(text: &str) -> String {
        FieldSelector::parse(text).expect_err("invalid field selector").to_string()
    }

    #[test]
    fn field_selectors_parse() {
        let table: &[(&str, &str)] = &[
            ("", ""),
            ("spec.nodeName=node-1", "spec.nodeName=node-1"),
            ("spec.nodeName==node-1", "spec.nodeName=node-1"),
            ("status.phase!=Running,spec.nodeName==n1", "spec.nodeName=n1,status.phase!=Running"),
            ("metadata.name=a\\,b\\=c\\\\d", "metadata.name=a\\,b\\=c\\\\d"),
            ("a=1,,b=2,", "a=1,b=2"),
            ("spec.nodeName=", "spec.nodeName="),
            ("a=!b", "a=!b"),
            ("a!=b\\,", "a!=b\\,"),
        ];
        for &(text, canonical) in table {
            let selector = FieldSelector::parse(text).unwrap_or_else(|error| panic!("{text:?}: {error}"));
            assert_eq!(selector.to_string(), canonical, "{text:?}");
        }
        let selector = FieldSelector::parse("metadata.name=a\\,b").expect("valid selector");
        assert_eq!(selector.requirements()[0].value(), "a,b");
        assert_eq!(selector.requirements()[0].field(), "metadata.name");
        assert_eq!(selector.requirements()[0].operator(), FieldOperator::Equals);
        assert!(FieldSelector::parse("").expect("empty selector").is_empty());
    }

    #[test]
    fn field_selector_syntax_errors_use_kubernetes_texts() {
        assert_eq!(field_error("nonsense"), "invalid selector: 'nonsense'; can't understand 'nonsense'");
        assert_eq!(field_error("b=1,zzz"), "invalid selector: 'b=1,zzz'; can't understand 'zzz'");
        assert_eq!(field_error("a=b=c"), "invalid field selector: unescaped character in value: 61");
        assert_eq!(field_error("a=b\\x"), "invalid field selector: invalid escape sequence: \\x");
        assert_eq!(field_error("a=b\\"), "invalid field selector: invalid escape sequence: \\");
    }

    #[test]
    fn field_selectors_are_validated_per_resource() {
        let validate = |resource: &str, text: &str| {
            FieldSelector::parse(text).expect("valid syntax").validate_for(resource).map_err(|error| error.to_string())
        };
        assert_eq!(validate("pods", "spec.nodeName=n1,status.phase=Running,metadata.namespace=default"), Ok(()));
        assert_eq!(validate("pods", "spec.host=n1,status.podIPs=x,spec.hostNetwork=true"), Ok(()));
        assert_eq!(validate("pods", "spec.containers=x"), Err("field label not supported: spec.containers".to_owned()));
        assert_eq!(validate("nodes", "spec.unschedulable=true,metadata.name=n1"), Ok(()));
        assert_eq!(
            validate("nodes", "metadata.namespace=x"),
            Err("field label not supported: metadata.namespace".to_owned())
        );
        assert_eq!(validate("namespaces", "status.phase=Active"), Ok(()));
        assert_eq!(validate("events", "involvedObject.name=web-0,reason=BackOff,type=Warning,source=kubelet"), Ok(()));
        assert_eq!(validate("secrets", "type=kubernetes.io/tls"), Ok(()));
        assert_eq!(validate("services", "spec.type=NodePort,spec.clusterIP=None"), Ok(()));
        assert_eq!(validate("deployments", "metadata.name=web,metadata.namespace=default"), Ok(()));
        assert_eq!(
            validate("replicasets", "status.replicas=1"),
            Err("\"status.replicas\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
                .to_owned())
        );
        assert_eq!(validate("replicationcontrollers", "status.replicas=1"), Ok(()));
        assert_eq!(
            validate("pods", "spec.nodeName=a,b.c=d"),
            Err("field label not supported: b.c".to_owned()),
            "the first unsupported field in sorted order is reported"
        );
        assert_eq!(validate("widgets", "metadata.name=w"), Ok(()));
    }

    #[test]
    fn field_selectors_match_objects() {
        let pod = json!({
            "metadata": {"name": "web-0", "namespace": "default"},
            "spec": {"nodeName": "node-1", "serviceAccountName": "web"},
            "status": {"phase": "Running", "podIPs": [{"ip": "10.244.1.7"}]},
        });
        let unscheduled =
            json!({"metadata": {"name": "web-1", "namespace": "default"}, "status": {"phase": "Pending"}});
        let table: &[(&str, bool, bool)] = &[
            ("", true, true),
            ("spec.nodeName=node-1", true, false),
            ("spec.nodeName=", false, true),
            ("spec.nodeName!=", true, false),
            ("spec.host=node-1", true, false),
            ("status.phase!=Succeeded,status.phase!=Failed", true, true),
            ("status.phase=Pending", false, true),
            ("metadata.namespace=default,metadata.name=web-0", true, false),
            ("status.podIP=10.244.1.7", true, false),
            ("spec.hostNetwork=false", true, true),
            ("spec.restartPolicy=Always,spec.schedulerName=default-scheduler", true, true),
            ("spec.serviceAccountName=web", true, false),
            ("status.podIPs=", true, true),
        ];
        for &(text, matches_pod, matches_unscheduled) in table {
            let selector = FieldSelector::parse(text).unwrap_or_else(|error| panic!("{text:?}: {error}"));
            assert_eq!(selector.matches("pods", &pod), matches_pod, "{text:?} on the scheduled pod");
            assert_eq!(selector.matches("pods", &unscheduled), matches_unscheduled, "{text:?} on the pending pod");
        }
        assert!(!FieldSelector::parse("spec.nodeName=node-1").expect("valid").matches("pods", &json!(null)));
    }

    #[test]
    fn field_selectors_match_other_resources() {
        let matches = |resource: &str, text: &str, object: &Value| {
            FieldSelector::parse(text).expect("valid").matches(resource, object)
        };
        let event = json!({
            "metadata": {"name": "web-0.1", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web-0", "namespace": "default", "uid": "u-1", "fieldPath": "spec.containers{app}"},
            "reason": "BackOff", "type": "Warning", "reportingComponent": "kubelet",
        });
        assert!(matches("events", "involvedObject.kind=Pod,involvedObject.name=web-0,involvedObject.uid=u-1", &event));
        assert!(matches("events", "source=kubelet,reportingComponent=kubelet,type=Warning,reason=BackOff", &event));
        assert!(matches("events", "involvedObject.fieldPath=spec.containers{app}", &event));
        assert!(!matches("events", "involvedObject.kind=Node", &event));
        let cordoned = json!({"metadata": {"name": "n1"}, "spec": {"unschedulable": true}});
        assert!(matches("nodes", "spec.unschedulable=true", &cordoned));
        assert!(matches("nodes", "spec.unschedulable=false", &json!({"metadata": {"name": "n2"}})));
        assert!(matches("secrets", "type=Opaque", &json!({"metadata": {"name": "s"}})));
        assert!(matches("secrets", "type=kubernetes.io/tls", &json!({"type": "kubernetes.io/tls"})));
        assert!(matches("namespaces", "status.phase=Terminating", &json!({"status": {"phase": "Terminating"}})));
        assert!(matches(
            "services",
            "spec.type=ClusterIP,spec.clusterIP=None",
            &json!({"spec": {"clusterIP": "None"}})
        ));
        assert!(matches("replicationcontrollers", "status.replicas=3", &json!({"status": {"replicas": 3}})));
        assert!(matches("deployments", "metadata.name=web", &json!({"metadata": {"name": "web"}})));
    }

    #[test]
    fn exact_matches_can_narrow_a_scan() {
        let selector = FieldSelector::parse("status.phase!=Failed,spec.nodeName=node-1").expect("valid");
        assert_eq!(selector.requires_exact_match("spec.nodeName"), Some("node-1"));
        assert_eq!(selector.requires_exact_match("status.phase"), None);
        assert_eq!(selector.requires_exact_match("metadata.name"), None);
    }

    #[test]
    fn go_quoting() {
        assert_eq!(go_quote("plain"), "\"plain\"");
        assert_eq!(go_quote("a\"b\\c\n\t\u{1}\u{7f}"), "\"a\\\"b\\\\c\\n\\t\\x01\\x7f\"");
        assert_eq!(go_quote("ключ"), "\"ключ\"");
        assert_eq!(go_string_slice(&[]), "[]string(nil)");
        assert_eq!(go_string_slice(&["a".to_owned(), "b".to_owned()]), "[]string{\"a\", \"b\"}");
    }
}
