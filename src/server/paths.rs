//! Mount-path patterns for `--path`: literal paths, `{name}` placeholders matching one
//! segment, and a trailing `*` matching the rest.

/// One `--path` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct PathPattern {
    segments: Vec<Segment>,
    /// Trailing `/*`: the path may continue with anything after the segments.
    open_ended: bool,
    /// Trailing `*` glued to a segment (`/cable*`): plain prefix match on the raw text.
    raw_prefix: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Literal(String),
    Placeholder,
}

impl PathPattern {
    pub fn new(pattern: &str) -> PathPattern {
        if let Some(prefix) = pattern.strip_suffix("/*") {
            return PathPattern {
                segments: parse_segments(prefix),
                open_ended: true,
                raw_prefix: None,
            };
        }
        if let Some(prefix) = pattern.strip_suffix('*') {
            return PathPattern {
                segments: Vec::new(),
                open_ended: false,
                raw_prefix: Some(prefix.into()),
            };
        }
        PathPattern {
            segments: parse_segments(pattern),
            open_ended: false,
            raw_prefix: None,
        }
    }

    pub fn matches(&self, path: &str) -> bool {
        if let Some(prefix) = &self.raw_prefix {
            return path.starts_with(prefix.as_str());
        }
        let parts: Vec<&str> = path.split('/').collect();
        let fits = if self.open_ended {
            parts.len() > self.segments.len()
        } else {
            parts.len() == self.segments.len()
        };
        fits && self
            .segments
            .iter()
            .zip(&parts)
            .all(|(segment, part)| match segment {
                Segment::Literal(text) => text == part,
                Segment::Placeholder => !part.is_empty(),
            })
    }
}

fn parse_segments(pattern: &str) -> Vec<Segment> {
    pattern
        .split('/')
        .map(|part| {
            if part.starts_with('{') && part.ends_with('}') && part.len() > 2 {
                Segment::Placeholder
            } else {
                Segment::Literal(part.to_string())
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_paths_match_exactly() {
        let p = PathPattern::new("/cable");
        assert!(p.matches("/cable"));
        assert!(!p.matches("/cable/"));
        assert!(!p.matches("/cables"));
        assert!(!p.matches("/"));
    }

    #[test]
    fn trailing_wildcards() {
        let p = PathPattern::new("/ws/*");
        assert!(p.matches("/ws/"));
        assert!(p.matches("/ws/a/b"));
        assert!(!p.matches("/ws"));
        assert!(!p.matches("/other/a"));
        let glued = PathPattern::new("/cable*");
        assert!(glued.matches("/cable"));
        assert!(glued.matches("/cable-2"));
    }

    #[test]
    fn placeholders_match_one_segment() {
        let p = PathPattern::new("/accounts/{id}/cable");
        assert!(p.matches("/accounts/42/cable"));
        assert!(!p.matches("/accounts//cable"));
        assert!(!p.matches("/accounts/4/2/cable"));
    }
}
