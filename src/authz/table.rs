//! The route table: finds the first route, in file order, matching a request's host,
//! normalised path and method, without scanning every route.

use http::Method;

use crate::config::PathCase;

use super::RequestParts;
use super::routes::Route;

/// Routes in file order; the first match handles a request.
///
/// Lookup does not scan every route: routes are indexed by the first segment of their prefix,
/// so a request only checks the routes under its own first segment plus the catch-all (`/`)
/// routes, merged back into file order.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
    /// First prefix segment (e.g. `payments` for `/payments/v1`) → route indices, ascending.
    by_first_segment: std::collections::HashMap<String, Vec<usize>>,
    /// Routes whose prefix is `/`, ascending.
    catch_all: Vec<usize>,
    /// `listener.path_case = "insensitive"`: prefixes are kept lower-case and a request's path
    /// is matched lower-cased (for upstreams that serve `/ADMIN` as `/admin`).
    case_insensitive: bool,
}

/// `payments` for `/payments/1`, `` for `/`.
fn first_segment(path: &str) -> &str {
    let rest = path.strip_prefix('/').unwrap_or(path);
    rest.split('/').next().unwrap_or("")
}

impl RouteTable {
    /// Why no route matches `req`, for `explain`: the nearest route (the first in file order
    /// whose path prefix covers the path) and what it does not accept, or that no prefix covers
    /// the path at all.
    pub fn why_no_route(&self, req: &RequestParts<'_>) -> String {
        let covering = || self.routes.iter().filter(|r| r.path_matches(req));
        let nearest = covering()
            .find(|r| r.host_matches(req) || r.method_matches(req))
            .or_else(|| covering().next());
        let Some(r) = nearest else {
            let prefixes: Vec<&str> = self.routes.iter().map(|r| r.path_prefix.as_str()).collect();
            return format!(
                "no route's path_prefix covers {} (prefixes: {})",
                req.path,
                if prefixes.is_empty() {
                    "none".to_string()
                } else {
                    prefixes.join(", ")
                }
            );
        };
        let methods = || {
            r.methods
                .as_deref()
                .unwrap_or_default()
                .iter()
                .map(Method::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let host = r.host.as_deref().unwrap_or("");
        let wrong = match (r.host_matches(req), r.method_matches(req)) {
            (true, false) => format!("allows only {}", methods()),
            (false, true) => format!("is only for host {host}"),
            _ => format!("is only for host {host} and allows only {}", methods()),
        };
        format!(
            "nearest: routes[{}] {:?} covers the path but {wrong}",
            r.index, r.name
        )
    }

    pub fn new(routes: Vec<Route>) -> Self {
        Self::with_case(routes, PathCase::Sensitive)
    }

    /// Routes matched by path as `case` says.
    pub fn with_case(mut routes: Vec<Route>, case: PathCase) -> Self {
        let case_insensitive = case == PathCase::Insensitive;
        if case_insensitive {
            for r in &mut routes {
                r.path_prefix.make_ascii_lowercase();
            }
        }
        let mut by_first_segment: std::collections::HashMap<String, Vec<usize>> =
            std::collections::HashMap::new();
        let mut catch_all = Vec::new();
        for (i, r) in routes.iter().enumerate() {
            if r.path_prefix == "/" {
                catch_all.push(i);
            } else {
                by_first_segment
                    .entry(first_segment(&r.path_prefix).to_string())
                    .or_default()
                    .push(i);
            }
        }
        Self {
            routes,
            by_first_segment,
            catch_all,
            case_insensitive,
        }
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The first route, in file order, that matches host, path and method.
    pub fn find(&self, req: &RequestParts<'_>) -> Option<&Route> {
        if self.case_insensitive && req.path.bytes().any(|b| b.is_ascii_uppercase()) {
            let lower = req.path.to_ascii_lowercase();
            return self.find_exact(&RequestParts {
                path: &lower,
                ..*req
            });
        }
        self.find_exact(req)
    }

    fn find_exact(&self, req: &RequestParts<'_>) -> Option<&Route> {
        let segment = self
            .by_first_segment
            .get(first_segment(req.path))
            .map_or(&[][..], Vec::as_slice);
        let (mut a, mut b) = (segment.iter().peekable(), self.catch_all.iter().peekable());
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(&&x), Some(&&y)) if x < y => a.next(),
                (Some(_), Some(_)) => b.next(),
                (Some(_), None) => a.next(),
                (None, Some(_)) => b.next(),
                (None, None) => return None,
            };
            if let Some(r) = next.and_then(|&i| self.routes.get(i))
                && r.matches_request(req)
            {
                return Some(r);
            }
        }
    }
}
