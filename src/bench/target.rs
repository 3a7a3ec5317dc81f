//! Where the load goes: `--url` parsed into a transport, a host, a port and (for
//! WebSocket) a path. A comma-separated list spreads the connections over several
//! nodes of one cluster (`Targets`).

use std::fmt;

/// The three client transports the bench speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `/ws/v2`: length-prefixed envelopes in WebSocket binary messages.
    WebSocket,
    /// `openiap.FlowService/SetupStream` over h2c.
    Grpc,
    /// Raw TCP: length-prefixed envelopes.
    Tcp,
}

impl Transport {
    pub fn as_str(&self) -> &'static str {
        match self {
            Transport::WebSocket => "ws",
            Transport::Grpc => "grpc",
            Transport::Tcp => "tcp",
        }
    }

    /// The server's default port for this transport.
    pub fn default_port(&self) -> u16 {
        match self {
            Transport::WebSocket => 3000,
            Transport::Grpc => 50051,
            Transport::Tcp => 8080,
        }
    }

    /// Envelopes on this transport must carry `seq` 0,1,2,… (gRPC ignores it).
    pub fn is_sequenced(&self) -> bool {
        !matches!(self, Transport::Grpc)
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The WebSocket path used when the URL has none.
pub const DEFAULT_WS_PATH: &str = "/ws/v2";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub transport: Transport,
    /// Host name or address, without IPv6 brackets.
    pub host: String,
    pub port: u16,
    /// Path (and query) for WebSocket; empty for the other transports.
    pub path: String,
}

impl Target {
    /// Parses `ws://host[:port][/path]`, `grpc://host[:port]` or `tcp://host[:port]`.
    /// `http://` is taken as gRPC (h2c), the scheme tonic itself uses.
    pub fn parse(url: &str) -> Result<Target, String> {
        let url = url.trim();
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            format!("invalid url '{url}': expected ws://, grpc:// or tcp://host:port")
        })?;
        let transport = match scheme.to_ascii_lowercase().as_str() {
            "ws" => Transport::WebSocket,
            "grpc" | "http" => Transport::Grpc,
            "tcp" => Transport::Tcp,
            "wss" | "grpcs" | "https" => {
                return Err(format!(
                    "invalid url '{url}': TLS ({scheme}://) is not supported by the bench"
                ))
            }
            other => {
                return Err(format!(
                    "invalid url '{url}': unknown scheme '{other}' (use ws, grpc or tcp)"
                ))
            }
        };
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.contains('@') {
            return Err(format!(
                "invalid url '{url}': credentials in the url are not supported (use --username/--password)"
            ));
        }
        let (host, port) = split_host_port(authority)
            .map_err(|reason| format!("invalid url '{url}': {reason}"))?;
        let port = port.unwrap_or_else(|| transport.default_port());
        let path = match transport {
            Transport::WebSocket if path.is_empty() || path == "/" => DEFAULT_WS_PATH.to_string(),
            Transport::WebSocket if path.starts_with('?') => format!("{DEFAULT_WS_PATH}{path}"),
            Transport::WebSocket => path.to_string(),
            _ if path.is_empty() || path == "/" => String::new(),
            _ => {
                return Err(format!(
                    "invalid url '{url}': a {transport} url takes no path"
                ))
            }
        };
        Ok(Target {
            transport,
            host,
            port,
            path,
        })
    }

    /// `host:port`, with brackets around an IPv6 address.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The URL the WebSocket handshake requests.
    pub fn ws_url(&self) -> String {
        format!("ws://{}{}", self.authority(), self.path)
    }

    /// The h2c endpoint tonic connects to.
    pub fn grpc_endpoint(&self) -> String {
        format!("http://{}", self.authority())
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.transport {
            Transport::WebSocket => f.write_str(&self.ws_url()),
            other => write!(f, "{other}://{}", self.authority()),
        }
    }
}

/// One or more servers (`--url a,b`): connection `i` goes to server `i % n`, so a
/// ring workload (queuemessage) crosses nodes on every hop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Targets(Vec<Target>);

impl Targets {
    /// Parses a comma-separated list of URLs, all of one transport.
    pub fn parse(urls: &str) -> Result<Targets, String> {
        let targets = urls
            .split(',')
            .filter(|url| !url.trim().is_empty())
            .map(Target::parse)
            .collect::<Result<Vec<_>, _>>()?;
        let Some(first) = targets.first() else {
            return Err("--url is empty".into());
        };
        if targets.iter().any(|t| t.transport != first.transport) {
            return Err(format!("every url in '{urls}' must use the same transport"));
        }
        Ok(Targets(targets))
    }

    pub fn for_connection(&self, index: usize) -> &Target {
        &self.0[index % self.0.len()]
    }

    pub fn first(&self) -> &Target {
        &self.0[0]
    }

    pub fn all(&self) -> &[Target] {
        &self.0
    }

    pub fn transport(&self) -> Transport {
        self.first().transport
    }
}

impl fmt::Display for Targets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, target) in self.0.iter().enumerate() {
            if n > 0 {
                f.write_str(",")?;
            }
            write!(f, "{target}")?;
        }
        Ok(())
    }
}

fn split_host_port(authority: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("unclosed '[' in the host")?;
        match after {
            "" => (host, None),
            _ => (
                host,
                Some(after.strip_prefix(':').ok_or("expected ':' after ']'")?),
            ),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, _)) if host.contains(':') => {
                return Err("IPv6 addresses need brackets: [::1]:port".into())
            }
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("missing host".into());
    }
    let port = match port {
        None => None,
        Some(text) => match text.parse::<u16>() {
            Ok(0) | Err(_) => return Err(format!("invalid port '{text}'")),
            Ok(port) => Some(port),
        },
    };
    Ok((host.to_string(), port))
}
