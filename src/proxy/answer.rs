//! What tether answers itself instead of a pod: refusals, redirects, errors and CORS
//! preflights. A short text, a status and, rarely, a few headers (the only allocation, and
//! only on the paths that need them). The HTTP/1 and HTTP/2 servers turn it into their own
//! framing; `into_response` is hyper's.

use http::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_TYPE, LOCATION};
use http::{Response, StatusCode};

use crate::proxy::body::ProxyBody;

#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub text: &'static str,
    headers: Option<Box<HeaderMap>>,
    /// `Content-Type: text/plain` (every answer but a preflight's).
    plain: bool,
    /// The client connection closes after it (the request's body may be unread).
    pub close: bool,
}

impl Answer {
    /// A plain-text answer.
    pub fn text(status: StatusCode, text: &'static str) -> Self {
        Answer { status, text, headers: None, plain: true, close: false }
    }

    /// An empty answer with these headers and no content type (a CORS preflight's 204).
    pub fn bare(status: StatusCode, headers: HeaderMap) -> Self {
        Answer { status, text: "", headers: Some(Box::new(headers)), plain: false, close: false }
    }

    /// A 302 to `location` (`auth-signin`, `auth-tls-error-page`).
    pub fn redirect(location: HeaderValue) -> Self {
        Answer::text(StatusCode::FOUND, "").with(LOCATION, location)
    }

    pub fn too_large() -> Self {
        Answer::text(StatusCode::PAYLOAD_TOO_LARGE, "413 Request Entity Too Large\n")
    }

    pub fn unavailable() -> Self {
        Answer::text(StatusCode::SERVICE_UNAVAILABLE, "503 Service Temporarily Unavailable\n")
    }

    pub fn bad_gateway() -> Self {
        Answer::text(StatusCode::BAD_GATEWAY, "502 Bad Gateway\n")
    }

    pub fn gateway_timeout() -> Self {
        Answer::text(StatusCode::GATEWAY_TIMEOUT, "504 Gateway Timeout\n")
    }

    /// The connection is closed after the answer.
    pub fn closing(mut self) -> Self {
        self.close = true;
        self
    }

    /// With `name: value`, replacing any value `name` had.
    pub fn with(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.get_or_insert_default().insert(name, value);
        self
    }

    /// With one more `name: value` line.
    pub fn append(&mut self, name: HeaderName, value: HeaderValue) {
        self.headers.get_or_insert_default().append(name, value);
    }

    #[cfg(test)]
    pub fn headers(&self) -> Option<&HeaderMap> {
        self.headers.as_deref()
    }

    pub fn into_response(self) -> Response<ProxyBody> {
        let body = if self.text.is_empty() { ProxyBody::empty() } else { ProxyBody::local(self.text) };
        let mut response = Response::new(body);
        *response.status_mut() = self.status;
        if let Some(headers) = self.headers {
            *response.headers_mut() = *headers;
        }
        if self.plain {
            response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        }
        if self.close {
            response.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_answer_is_plain_text_with_its_headers() {
        let mut answer = Answer::text(StatusCode::UNAUTHORIZED, "401 Authorization Required\n")
            .with(http::header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"x\""));
        answer.append(http::header::SET_COOKIE, HeaderValue::from_static("a=1"));
        answer.append(http::header::SET_COOKIE, HeaderValue::from_static("b=2"));
        let response = answer.closing().into_response();
        assert_eq!(response.status(), 401);
        let headers = response.headers();
        assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
        assert_eq!(headers["connection"], "close");
        assert_eq!(headers["www-authenticate"], "Basic realm=\"x\"");
        assert_eq!(headers.get_all("set-cookie").iter().count(), 2);
    }

    #[test]
    fn a_preflight_answer_has_no_content_type() {
        let mut cors = HeaderMap::new();
        cors.insert("access-control-allow-origin", HeaderValue::from_static("https://a.example"));
        let response = Answer::bare(StatusCode::NO_CONTENT, cors).into_response();
        assert_eq!(response.status(), 204);
        assert!(response.headers().get("content-type").is_none());
        assert_eq!(response.headers()["access-control-allow-origin"], "https://a.example");
        assert!(http_body::Body::is_end_stream(response.body()));
    }
}
