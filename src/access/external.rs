//! External authentication (ingress-nginx `auth-url`, the oauth2-proxy pattern): the settings.
//! The subrequest itself is made by the proxy (`proxy::auth_request`), with tether's own
//! upstream client.

use http::header::HeaderName;
use http::Method;

/// A URL template: nginx variables the auth annotations commonly use are filled per request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template(pub Box<str>);

/// The variables a template may use; anything else is an error at compile time.
pub const VARIABLES: &[&str] =
    &["$scheme", "$host", "$http_host", "$request_uri", "$escaped_request_uri", "$uri", "$args", "$best_http_host"];

/// The length of the `$name` that `tail` starts with.
fn variable_len(tail: &str) -> usize {
    tail[1..].find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).map_or(tail.len(), |n| n + 1)
}

/// Why an auth URL template is refused (at compile time, so the route fails closed).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("the variable {0} is not supported (only {list})", list = VARIABLES.join(", "))]
    UnsupportedVariable(String),
}

impl Template {
    pub fn parse(value: &str) -> Result<Template, TemplateError> {
        let mut rest = value;
        while let Some(i) = rest.find('$') {
            let tail = &rest[i..];
            let name_len = variable_len(tail);
            let name = &tail[..name_len];
            if !VARIABLES.contains(&name) {
                return Err(TemplateError::UnsupportedVariable(name.to_owned()));
            }
            rest = &tail[name_len..];
        }
        Ok(Template(value.into()))
    }

    /// The template with its variables filled in.
    pub fn render(&self, vars: &Vars<'_>) -> String {
        let mut out = String::with_capacity(self.0.len() + 64);
        let mut rest = &*self.0;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let tail = &rest[i..];
            let name_len = variable_len(tail);
            match &tail[..name_len] {
                "$scheme" => out.push_str(vars.scheme),
                "$host" | "$http_host" | "$best_http_host" => out.push_str(vars.host),
                "$request_uri" => out.push_str(vars.request_uri),
                "$escaped_request_uri" => escape_into(&mut out, vars.request_uri),
                "$uri" => out.push_str(vars.request_uri.split('?').next().unwrap_or("")),
                "$args" => out.push_str(vars.request_uri.split_once('?').map_or("", |(_, q)| q)),
                other => out.push_str(other),
            }
            rest = &tail[name_len..];
        }
        out.push_str(rest);
        out
    }
}

/// Percent-encodes all but the unreserved characters (RFC 3986), as `set_escape_uri` does for
/// ingress-nginx's `$escaped_request_uri`.
pub fn escape_into(out: &mut String, value: &str) {
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// What a template can refer to.
pub struct Vars<'a> {
    pub scheme: &'a str,
    pub host: &'a str,
    /// Path and query, as the client sent them.
    pub request_uri: &'a str,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalAuth {
    /// `auth-url` (http or https).
    pub url: Template,
    /// `auth-method` (GET by default).
    pub method: Method,
    /// `auth-signin`: a 401 becomes a 302 to it, with `rd=` the original URL unless it sets one.
    pub signin: Option<Template>,
    /// `auth-signin-redirect-param` (default `rd`).
    pub signin_param: Box<str>,
    /// `auth-response-headers`: copied from the auth response onto the request to the pod.
    pub response_headers: Vec<HeaderName>,
    /// `auth-request-redirect`: the `X-Auth-Request-Redirect` value (default the request URI).
    pub request_redirect: Option<Template>,
    /// `auth-proxy-set-headers` is not read (it names a ConfigMap); `auth-always-set-cookie`
    /// copies the auth response's `Set-Cookie` onto the client's response.
    pub always_set_cookie: bool,
}

impl ExternalAuth {
    pub fn describe(&self) -> String {
        let signin = match &self.signin {
            Some(s) => format!("; a 401 redirects (302) to {}", s.0),
            None => String::new(),
        };
        format!(
            "each request is first sent ({} without its body) to {}: 2xx lets it through, 401/403 are returned to the \
             client, anything else or no answer is 500{signin}",
            self.method, self.url.0
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_the_variables_oauth2_proxy_setups_use() {
        let t = Template::parse("https://$host/oauth2/start?rd=$escaped_request_uri").unwrap();
        let vars = Vars { scheme: "https", host: "app.example", request_uri: "/a b?x=1&y=2" };
        assert_eq!(t.render(&vars), "https://app.example/oauth2/start?rd=%2Fa%20b%3Fx%3D1%26y%3D2");
        assert_eq!(Template::parse("http://auth/$uri?$args").unwrap().render(&vars), "http://auth//a b?x=1&y=2");
        assert!(Template::parse("http://auth/$remote_user").unwrap_err().to_string().contains("$remote_user"));
        assert_eq!(Template::parse("http://auth:9000/check").unwrap().render(&vars), "http://auth:9000/check");
    }
}
