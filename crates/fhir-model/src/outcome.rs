//! OperationOutcome issues: the one way every layer reports what went wrong.

use serde_json::{Map, Value, json};

/// `OperationOutcome.issue.severity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Fatal,
    Error,
    Warning,
    Information,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Fatal => "fatal",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Information => "information",
        }
    }
}

/// `OperationOutcome.issue.code` (value set `issue-type`), the subset we raise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueType {
    Invalid,
    Structure,
    Required,
    Value,
    Invariant,
    Security,
    Forbidden,
    Processing,
    NotSupported,
    Duplicate,
    MultipleMatches,
    NotFound,
    Deleted,
    TooLong,
    CodeInvalid,
    Conflict,
    Exception,
    Informational,
    Transient,
}

impl IssueType {
    pub fn as_str(self) -> &'static str {
        match self {
            IssueType::Invalid => "invalid",
            IssueType::Structure => "structure",
            IssueType::Required => "required",
            IssueType::Value => "value",
            IssueType::Invariant => "invariant",
            IssueType::Security => "security",
            IssueType::Forbidden => "forbidden",
            IssueType::Processing => "processing",
            IssueType::NotSupported => "not-supported",
            IssueType::Duplicate => "duplicate",
            IssueType::MultipleMatches => "multiple-matches",
            IssueType::NotFound => "not-found",
            IssueType::Deleted => "deleted",
            IssueType::TooLong => "too-long",
            IssueType::CodeInvalid => "code-invalid",
            IssueType::Conflict => "conflict",
            IssueType::Exception => "exception",
            IssueType::Informational => "informational",
            IssueType::Transient => "transient",
        }
    }
}

/// One issue: what, how bad, and where (FHIRPath expressions of the offending elements).
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    pub severity: Severity,
    pub code: IssueType,
    pub diagnostics: String,
    pub expression: Vec<String>,
}

impl Issue {
    /// An error-severity issue.
    pub fn error(code: IssueType, diagnostics: impl Into<String>) -> Self {
        Issue { severity: Severity::Error, code, diagnostics: diagnostics.into(), expression: Vec::new() }
    }

    /// A warning-severity issue.
    pub fn warning(code: IssueType, diagnostics: impl Into<String>) -> Self {
        Issue { severity: Severity::Warning, code, diagnostics: diagnostics.into(), expression: Vec::new() }
    }

    /// An informational issue.
    pub fn information(diagnostics: impl Into<String>) -> Self {
        Issue {
            severity: Severity::Information,
            code: IssueType::Informational,
            diagnostics: diagnostics.into(),
            expression: Vec::new(),
        }
    }

    /// Point the issue at an element (a FHIRPath expression such as `Patient.name[0].given`).
    pub fn at(mut self, expression: impl Into<String>) -> Self {
        self.expression.push(expression.into());
        self
    }

    pub fn is_error(&self) -> bool {
        matches!(self.severity, Severity::Error | Severity::Fatal)
    }

    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("severity".into(), json!(self.severity.as_str()));
        m.insert("code".into(), json!(self.code.as_str()));
        m.insert("diagnostics".into(), json!(self.diagnostics));
        if !self.expression.is_empty() {
            m.insert("expression".into(), json!(self.expression));
        }
        Value::Object(m)
    }
}

/// A list of issues, rendered as an R4 OperationOutcome resource.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OperationOutcome {
    pub issues: Vec<Issue>,
}

impl OperationOutcome {
    pub fn new(issues: Vec<Issue>) -> Self {
        OperationOutcome { issues }
    }

    pub fn has_errors(&self) -> bool {
        self.issues.iter().any(Issue::is_error)
    }

    pub fn to_json(&self) -> Value {
        let issues: Vec<Value> = if self.issues.is_empty() {
            vec![Issue::information("All OK").to_json()]
        } else {
            self.issues.iter().map(Issue::to_json).collect()
        };
        json!({ "resourceType": "OperationOutcome", "issue": issues })
    }
}

impl From<Issue> for OperationOutcome {
    fn from(issue: Issue) -> Self {
        OperationOutcome { issues: vec![issue] }
    }
}
