//! HTTP replies (part of the end-to-end harness; see the module docs of `common`).

use super::*;

/// A reply from otpd, fully read: status, headers, raw text and the body parsed as JSON
/// (`Value::Null` when empty or not JSON).
#[derive(Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub body: Value,
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "HTTP {} ({}) {}",
            self.status,
            self.content_type(),
            self.text
        )
    }
}

impl Reply {
    /// Reads a whole response.
    pub async fn read(response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("read the reply body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Self {
            status,
            headers,
            text,
            body,
        }
    }

    /// A header's value, if present and valid text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `Content-Type` header (empty when absent).
    pub fn content_type(&self) -> &str {
        self.header("content-type").unwrap_or("")
    }

    /// A top-level string field of the JSON body; panics (showing the reply) if missing.
    pub fn str(&self, field: &str) -> &str {
        self.body[field]
            .as_str()
            .unwrap_or_else(|| panic!("reply has no string field {field:?}: {self:?}"))
    }

    /// The `id` field.
    pub fn id(&self) -> String {
        self.str("id").to_owned()
    }

    /// The problem `code` field, if any.
    pub fn problem_code(&self) -> Option<&str> {
        self.body.get("code").and_then(Value::as_str)
    }

    /// Asserts the status, showing `context` and the whole reply on failure.
    #[track_caller]
    pub fn assert_status(&self, status: u16, context: &str) -> &Self {
        assert_eq!(
            self.status, status,
            "{context}: unexpected status; reply: {self:?}"
        );
        self
    }

    /// Asserts a 2xx status.
    #[track_caller]
    pub fn assert_success(&self, context: &str) -> &Self {
        assert!(
            (200..300).contains(&self.status),
            "{context}: expected a 2xx reply, got {self:?}"
        );
        self
    }

    /// Asserts the reply is an `application/problem+json` error (never a 5xx) carrying the
    /// RFC 9457 members and one of the `codes`.
    #[track_caller]
    pub fn assert_problem_in(&self, status: u16, codes: &[&str], context: &str) -> &Self {
        assert!(
            self.status < 500,
            "{context}: server error on bad input: {self:?}"
        );
        self.assert_status(status, context);
        assert!(
            self.content_type().starts_with("application/problem+json"),
            "{context}: expected application/problem+json, got {self:?}"
        );
        for member in ["type", "title", "detail", "code"] {
            assert!(
                self.body.get(member).is_some_and(Value::is_string),
                "{context}: problem without string member {member:?}: {self:?}"
            );
        }
        assert_eq!(
            self.body.get("status").and_then(Value::as_u64),
            Some(u64::from(status)),
            "{context}: problem `status` member differs from the HTTP status: {self:?}"
        );
        let code = self.problem_code().unwrap_or_default();
        assert!(
            codes.contains(&code),
            "{context}: expected problem code in {codes:?}, got {code:?}: {self:?}"
        );
        assert_eq!(
            self.body.get("type").and_then(Value::as_str),
            Some(format!("/docs/errors#{code}").as_str()),
            "{context}: the problem's type is its entry in the error reference: {self:?}"
        );
        self
    }

    /// [`Reply::assert_problem_in`] with a single expected code.
    #[track_caller]
    pub fn assert_problem(&self, status: u16, code: &str, context: &str) -> &Self {
        self.assert_problem_in(status, &[code], context)
    }
}

/// Sends a request and reads the whole [`Reply`]: `builder.reply().await`.
pub trait SendReply {
    /// Sends the request; panics if otpd cannot be reached at all.
    fn reply(self) -> impl Future<Output = Reply> + Send;
}

impl SendReply for reqwest::RequestBuilder {
    async fn reply(self) -> Reply {
        let response = self.send().await.expect("send the HTTP request to otpd");
        Reply::read(response).await
    }
}
