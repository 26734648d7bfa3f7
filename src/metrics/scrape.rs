//! Reading `/metrics` back: a blocking HTTP/1.0 GET with a time-out and a size bound, and a
//! parser of the text exposition format into samples. For `shardkv status` and the tests;
//! never used on a node's request path.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Largest `/metrics` body read.
pub const BODY_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// Why a scrape failed.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    #[error("{addr}: cannot resolve")]
    Resolve { addr: String },
    #[error("{addr}: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
    #[error("{addr}: unexpected answer: {status}")]
    Status { addr: String, status: String },
}

/// One sample: `name{labels} value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }
}

/// `GET http://addr/metrics`, the body as text.
pub fn fetch(addr: &str, timeout: Duration) -> Result<String, ScrapeError> {
    let io = |source| ScrapeError::Io {
        addr: addr.to_string(),
        source,
    };
    let sock: SocketAddr = addr
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| ScrapeError::Resolve {
            addr: addr.to_string(),
        })?;
    let mut stream = TcpStream::connect_timeout(&sock, timeout).map_err(io)?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let request = format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut raw = Vec::new();
    stream
        .take(BODY_BYTES_MAX)
        .read_to_end(&mut raw)
        .map_err(io)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or("").to_string();
    if !status.contains(" 200 ") {
        return Err(ScrapeError::Status {
            addr: addr.to_string(),
            status,
        });
    }
    Ok(body.to_string())
}

/// Parses the text format; lines it does not understand are skipped.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let (series, value) = line.rsplit_once(' ')?;
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    let (name, labels) = match series.split_once('{') {
        None => (series.to_string(), BTreeMap::new()),
        Some((name, rest)) => (name.to_string(), parse_labels(rest.strip_suffix('}')?)?),
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// `a="x",b="y"` (values as the prometheus crate writes them: `\"`, `\\`, `\n` escaped).
fn parse_labels(text: &str) -> Option<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break i,
                c => value.push(c),
            }
        };
        labels.insert(name.trim_start_matches(',').to_string(), value);
        rest = after[end + 1..].trim_start_matches(',');
    }
    Some(labels)
}

/// The value of the first sample named `name` whose labels include `want`.
pub fn value(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.name == name && want.iter().all(|(k, v)| s.label(k) == Some(v)))
        .map(|s| s.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_labels_with_escapes_and_plain_samples() {
        let text = "# HELP x y\nx{a=\"1\",b=\"q\\\"z\"} 3\ny 4.5\nh_bucket{le=\"+Inf\"} 7\n";
        let s = parse(text);
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].label("b"), Some("q\"z"));
        assert_eq!(value(&s, "y", &[]), Some(4.5));
        assert_eq!(value(&s, "h_bucket", &[("le", "+Inf")]), Some(7.0));
    }
}
