//! `FaultProxy`: a counting, fault-injecting HTTP/1.1 proxy between the binary and moto.
//!
//! DESIGN.md asks for behaviour under S3 faults (throttling, 5xx, a body cut mid-stream, a write
//! whose answer is lost) and for proofs by counting ("reads only the tail" = few requests, few
//! bytes). moto can do neither, so tests point `AWS_ENDPOINT_URL` at this proxy instead.
//!
//! The design is deliberately dumb so it is obviously right: one request per client connection.
//! The proxy reads the whole request (head and body, framed by `Content-Length` or chunked
//! encoding, forwarded byte for byte: signatures and `aws-chunked` bodies stay intact), asks the
//! rule what to do, forwards it on a fresh upstream connection with `Connection: close`, reads
//! the whole response, logs the exchange, then answers the client with `Connection: close` and
//! closes. The log entry is written before the client gets its answer, so a test that checks the
//! log after the SDK call returned always sees it. Every socket has a 30 s timeout.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// Read and write timeout of every socket: a stuck peer fails a test, never hangs it.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest request or response head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// What the proxy does with one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Forward it and pass the answer back unchanged.
    Forward,
    /// Answer `(status, body)` without forwarding: the upstream never sees the request.
    Reply(u16, String),
    /// Forward it, then send the whole response head but only the first `n` bytes of the body,
    /// and close: a download cut mid-body, which the SDK reports as a streaming error.
    CutAfter(usize),
    /// Read the request, then close without forwarding or answering.
    DropBeforeForward,
    /// Forward it (the upstream acts on it), then close without answering: a lost answer.
    ForwardThenCut,
    /// Read the request, then hold the connection without answering for this long (or until
    /// the client closes it): an endpoint that has stalled.
    Stall(Duration),
    /// Forward it without the named request header (e.g. `If-None-Match`: a store that does
    /// not check that condition on this request), and pass the answer back.
    ForwardWithout(String),
}

impl Action {
    /// 503 SlowDown, S3's throttling answer (the SDK retries it).
    pub fn slow_down() -> Action {
        Action::error(503, "SlowDown", "Please reduce your request rate.")
    }

    /// 500 InternalError (the SDK retries it).
    pub fn internal_error() -> Action {
        Action::error(
            500,
            "InternalError",
            "We encountered an internal error. Please try again.",
        )
    }

    /// An S3-style XML error answer.
    pub fn error(status: u16, code: &str, message: &str) -> Action {
        Action::Reply(
            status,
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
                 <Message>{message}</Message><RequestId>fault-proxy</RequestId></Error>"
            ),
        )
    }
}

/// The request a rule decides on.
#[derive(Clone, Debug)]
pub struct RequestInfo {
    /// Position among the requests this proxy received since it started or was reset, from 0.
    pub index: usize,
    /// `GET`, `PUT`, ...
    pub method: String,
    /// Path and query, as sent (`/bucket/key?uploadId=...`).
    pub target: String,
    /// Request headers in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// Bytes of request body as sent on the wire (including any chunk framing).
    pub body_len: usize,
}

impl RequestInfo {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The target without its query.
    pub fn path(&self) -> &str {
        self.target
            .split_once('?')
            .map_or(&self.target, |(path, _)| path)
    }

    /// The query string without `?` (empty if none).
    pub fn query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, query)| query)
    }
}

/// One finished exchange, as logged.
#[derive(Clone, Debug)]
pub struct Exchange {
    /// The request, as the rule saw it.
    pub request: RequestInfo,
    /// What the rule decided.
    pub action: Action,
    /// The upstream's status, if the request was forwarded and answered.
    pub upstream_status: Option<u16>,
    /// The status the client received, if it received a response head at all.
    pub status: Option<u16>,
    /// Response body bytes sent to the client.
    pub body_bytes: usize,
    /// Whether the client got a shorter body than the upstream sent: a [`Action::CutAfter`]
    /// beyond the body's end cuts nothing, and is not recorded as a cut.
    pub cut: bool,
}

/// A rule: decides the [`Action`] for each request.
pub type Rule = Arc<dyn Fn(&RequestInfo) -> Action + Send + Sync>;

/// A rule applying `action` to the first `n` requests that match `matches`, forwarding the rest.
pub fn first_n(
    n: usize,
    matches: impl Fn(&RequestInfo) -> bool + Send + Sync + 'static,
    action: Action,
) -> impl Fn(&RequestInfo) -> Action + Send + Sync + 'static {
    let hits = AtomicUsize::new(0);
    move |request| {
        if matches(request) && hits.fetch_add(1, Ordering::SeqCst) < n {
            action.clone()
        } else {
            Action::Forward
        }
    }
}

/// A fault-injecting, counting proxy on `127.0.0.1`; stops accepting when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

struct Shared {
    upstream: SocketAddr,
    rule: Mutex<Rule>,
    state: Mutex<State>,
    stopping: AtomicBool,
}

#[derive(Default)]
struct State {
    next_index: usize,
    log: Vec<Exchange>,
}

impl FaultProxy {
    /// Starts a proxy in front of `upstream`, an `http://127.x.x.x:PORT` endpoint. It forwards
    /// everything until a rule says otherwise.
    pub fn new(upstream: &str) -> FaultProxy {
        let authority = upstream
            .strip_prefix("http://")
            .unwrap_or_else(|| panic!("the proxy's upstream must be http://, not `{upstream}`"));
        let upstream = authority
            .trim_end_matches('/')
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
            .unwrap_or_else(|| panic!("cannot resolve the proxy's upstream `{authority}`"));
        assert!(
            upstream.ip().is_loopback(),
            "the proxy only forwards to loopback"
        );
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind the fault proxy");
        let addr = listener.local_addr().expect("the fault proxy's address");
        let forward_all: Rule = Arc::new(|_: &RequestInfo| Action::Forward);
        let shared = Arc::new(Shared {
            upstream,
            rule: Mutex::new(forward_all),
            state: Mutex::new(State::default()),
            stopping: AtomicBool::new(false),
        });
        let acceptor = {
            let shared = Arc::clone(&shared);
            thread::spawn(move || accept_loop(&listener, &shared))
        };
        FaultProxy {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// `http://127.0.0.1:PORT`: use it as the binary's `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replaces the rule; it sees every later request.
    pub fn set_rule(&self, rule: impl Fn(&RequestInfo) -> Action + Send + Sync + 'static) {
        *lock(&self.shared.rule) = Arc::new(rule);
    }

    /// Forwards everything from now on.
    pub fn clear_rule(&self) {
        self.set_rule(|_| Action::Forward);
    }

    /// The finished exchanges since start or the last reset, in the order they finished.
    pub fn log(&self) -> Vec<Exchange> {
        lock(&self.shared.state).log.clone()
    }

    /// How many requests finished.
    pub fn count(&self) -> usize {
        lock(&self.shared.state).log.len()
    }

    /// How many requests with this method finished.
    pub fn count_method(&self, method: &str) -> usize {
        let state = lock(&self.shared.state);
        state
            .log
            .iter()
            .filter(|e| e.request.method.eq_ignore_ascii_case(method))
            .count()
    }

    /// Response body bytes sent down to clients.
    pub fn bytes_down(&self) -> usize {
        lock(&self.shared.state)
            .log
            .iter()
            .map(|e| e.body_bytes)
            .sum()
    }

    /// A handle on the log that a rule can keep (a rule cannot hold the proxy): e.g. to wait
    /// until another request has been answered by the upstream.
    pub fn log_handle(&self) -> LogHandle {
        LogHandle(Arc::downgrade(&self.shared))
    }

    /// Clears the log and restarts request indexes at 0 (the rule stays).
    pub fn reset(&self) {
        *lock(&self.shared.state) = State::default();
    }
}

/// See [`FaultProxy::log_handle`]. Weak, so a rule holding it does not keep the proxy alive.
#[derive(Clone)]
pub struct LogHandle(std::sync::Weak<Shared>);

impl LogHandle {
    /// The finished exchanges, as [`FaultProxy::log`] (empty once the proxy is gone). An
    /// exchange is logged once the upstream answered, before the client gets the answer.
    pub fn log(&self) -> Vec<Exchange> {
        self.0
            .upgrade()
            .map(|shared| lock(&shared.state).log.clone())
            .unwrap_or_default()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wake the blocking accept; connections in flight finish on their own threads.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Locks, ignoring poisoning: a panicking rule must not hide the log from the test.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let shared = Arc::clone(shared);
        thread::spawn(move || {
            // An I/O error here is the client's or upstream's doing; the test sees its effect.
            let _ = serve(stream, &shared);
        });
    }
}

/// Serves the one request of one client connection.
fn serve(client: TcpStream, shared: &Shared) -> io::Result<()> {
    set_timeouts(&client)?;
    let mut reader = BufReader::new(client.try_clone()?);
    let mut client = client;
    let Some(head) = read_head(&mut reader)? else {
        return Ok(());
    };
    if header(&head.headers, "expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
        // Answer the expectation ourselves; the upstream gets the request without it.
        client.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let body = read_body(&mut reader, &head.headers, BodyKind::Request)?;
    let (method, target) = request_line(&head.start)?;
    let request = {
        let mut state = lock(&shared.state);
        let index = state.next_index;
        state.next_index += 1;
        RequestInfo {
            index,
            method,
            target,
            headers: head.headers.clone(),
            body_len: body.len(),
        }
    };
    let rule = Arc::clone(&lock(&shared.rule));
    let action = rule(&request);
    let is_head = request.method.eq_ignore_ascii_case("HEAD");

    let mut exchange = Exchange {
        request,
        action: action.clone(),
        upstream_status: None,
        status: None,
        body_bytes: 0,
        cut: false,
    };
    let reply = match &action {
        Action::Reply(status, text) => {
            let body = if is_head {
                Vec::new()
            } else {
                text.as_bytes().to_vec()
            };
            let head = format!(
                "HTTP/1.1 {status} {}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n",
                reason(*status),
                text.len()
            );
            exchange.status = Some(*status);
            Some((head.into_bytes(), body))
        }
        Action::DropBeforeForward | Action::Stall(_) => None,
        Action::Forward
        | Action::CutAfter(_)
        | Action::ForwardThenCut
        | Action::ForwardWithout(_) => {
            let drop = match &action {
                Action::ForwardWithout(name) => name.to_ascii_lowercase(),
                _ => String::new(),
            };
            match forward(shared.upstream, &head, &body, is_head, &drop) {
                Ok((status, response_head, response_body)) => {
                    exchange.upstream_status = Some(status);
                    match action {
                        Action::ForwardThenCut => None,
                        Action::CutAfter(n) => {
                            exchange.status = Some(status);
                            exchange.cut = n < response_body.len();
                            let cut = response_body[..n.min(response_body.len())].to_vec();
                            Some((response_head, cut))
                        }
                        _ => {
                            exchange.status = Some(status);
                            Some((response_head, response_body))
                        }
                    }
                }
                Err(error) => {
                    let text = format!("fault proxy: upstream {}: {error}", shared.upstream);
                    exchange.status = Some(502);
                    let head = format!(
                        "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n",
                        text.len()
                    );
                    Some((
                        head.into_bytes(),
                        if is_head {
                            Vec::new()
                        } else {
                            text.into_bytes()
                        },
                    ))
                }
            }
        }
    };
    exchange.body_bytes = reply.as_ref().map_or(0, |(_, body)| body.len());
    lock(&shared.state).log.push(exchange);

    if let Action::Stall(limit) = action {
        // Until the client gives up (its read returns 0 or fails) or the limit passes.
        client.set_read_timeout(Some(limit))?;
        let _ = reader.read(&mut [0; 1]);
    }
    if let Some((head, body)) = reply {
        client.write_all(&head)?;
        client.write_all(&body)?;
        client.flush()?;
    }
    // The whole request was read, so closing sends FIN (not RST) and the client reads all we sent.
    client.shutdown(Shutdown::Both)
}

/// Sends the request upstream with `Connection: close` and without the header `drop` (a
/// lowercase name, or empty); returns the status, the head to send the client (with
/// `Connection: close`) and the raw body.
fn forward(
    upstream: SocketAddr,
    request: &Head,
    body: &[u8],
    is_head: bool,
    drop: &str,
) -> io::Result<(u16, Vec<u8>, Vec<u8>)> {
    let mut stream = TcpStream::connect_timeout(&upstream, Duration::from_secs(5))?;
    set_timeouts(&stream)?;
    stream.write_all(&serialize(
        &request.start,
        &request.headers,
        &["expect", drop],
    ))?;
    stream.write_all(body)?;
    stream.flush()?;
    let mut reader = BufReader::new(stream);
    loop {
        let head = read_head(&mut reader)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "no response"))?;
        let status = status_code(&head.start)?;
        if (100..200).contains(&status) {
            continue; // An interim answer: the final one follows.
        }
        let kind = if is_head || status == 204 || status == 304 {
            BodyKind::None
        } else {
            BodyKind::Response
        };
        let body = read_body(&mut reader, &head.headers, kind)?;
        return Ok((status, serialize(&head.start, &head.headers, &[]), body));
    }
}

struct Head {
    start: String,
    headers: Vec<(String, String)>,
}

/// Reads a request or response head; `None` if the peer closed before sending anything.
fn read_head(reader: &mut impl BufRead) -> io::Result<Option<Head>> {
    let mut lines = Vec::new();
    let mut total = 0;
    loop {
        let mut line = Vec::new();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            if lines.is_empty() {
                return Ok(None);
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "head cut short",
            ));
        }
        total += n;
        if total > MAX_HEAD {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "head too long"));
        }
        let line = String::from_utf8_lossy(&line)
            .trim_end_matches(['\r', '\n'])
            .to_owned();
        if line.is_empty() {
            break;
        }
        lines.push(line);
    }
    let start = lines.remove(0);
    let headers = lines
        .into_iter()
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            Some((name.trim().to_owned(), value.trim().to_owned()))
        })
        .collect();
    Ok(Some(Head { start, headers }))
}

#[derive(Clone, Copy)]
enum BodyKind {
    /// No body whatever the headers say (HEAD answers, 204, 304).
    None,
    /// A request: no framing header means no body.
    Request,
    /// A response: no framing header means "until the connection closes".
    Response,
}

/// Reads a body byte for byte as sent, chunk framing included.
fn read_body(
    reader: &mut impl BufRead,
    headers: &[(String, String)],
    kind: BodyKind,
) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    if matches!(kind, BodyKind::None) {
        return Ok(body);
    }
    let chunked = header(headers, "transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        read_chunked(reader, &mut body)?;
    } else if let Some(length) = header(headers, "content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad Content-Length"))?;
        body.resize(length, 0);
        reader.read_exact(&mut body)?;
    } else if matches!(kind, BodyKind::Response) {
        reader.read_to_end(&mut body)?;
    }
    Ok(body)
}

/// Copies a chunked body (sizes, data, trailers) into `out` unchanged.
fn read_chunked(reader: &mut impl BufRead, out: &mut Vec<u8>) -> io::Result<()> {
    loop {
        let start = out.len();
        if reader.read_until(b'\n', out)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "chunked body cut short",
            ));
        }
        let line = String::from_utf8_lossy(&out[start..]).into_owned();
        let size_hex = line.trim().split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
        if size == 0 {
            // Trailers, then the empty line that ends the body.
            loop {
                let line_start = out.len();
                if reader.read_until(b'\n', out)? == 0 || out[line_start..].trim_ascii().is_empty()
                {
                    return Ok(());
                }
            }
        }
        let data_start = out.len();
        out.resize(data_start + size, 0);
        reader.read_exact(&mut out[data_start..])?;
        let mut crlf = Vec::new();
        reader.read_until(b'\n', &mut crlf)?;
        out.extend_from_slice(&crlf);
    }
}

/// A head with `Connection: close` in place of any connection-management headers and of the
/// headers named in `drop`.
fn serialize(start: &str, headers: &[(String, String)], drop: &[&str]) -> Vec<u8> {
    let hop_by_hop = ["connection", "keep-alive", "proxy-connection"];
    let mut out = format!("{start}\r\n");
    for (name, value) in headers {
        let lower = name.to_ascii_lowercase();
        if !hop_by_hop.contains(&lower.as_str()) && !drop.contains(&lower.as_str()) {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    out.into_bytes()
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn request_line(line: &str) -> io::Result<(String, String)> {
    let mut parts = line.split_whitespace();
    match (parts.next(), parts.next()) {
        (Some(method), Some(target)) => Ok((method.to_owned(), target.to_owned())),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bad request line",
        )),
    }
}

fn status_code(line: &str) -> io::Result<u16> {
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad status line"))
}

fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        412 => "Precondition Failed",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Fault",
    }
}

fn set_timeouts(stream: &TcpStream) -> io::Result<()> {
    stream.set_read_timeout(Some(SOCKET_TIMEOUT))?;
    stream.set_write_timeout(Some(SOCKET_TIMEOUT))
}

/// The AWS service a request is signed for (`s3`, `ec2`, `autoscaling`, ...), read from the
/// credential scope of its SigV4 `Authorization` header (`Credential=AK/DATE/REGION/SERVICE/…`).
/// moto serves every service on one port, so this is how a rule tells them apart.
pub fn signed_service(request: &RequestInfo) -> Option<&str> {
    let authorization = request.header("authorization")?;
    let scope = authorization.split("Credential=").nth(1)?;
    scope.split([',', ' ']).next()?.split('/').nth(3)
}

/// A rule forwarding the first `n` requests that match `matches` and applying `action` to every
/// later one (and forwarding those that do not match): a fault that starts mid-run.
pub fn after_n(
    n: usize,
    matches: impl Fn(&RequestInfo) -> bool + Send + Sync + 'static,
    action: Action,
) -> impl Fn(&RequestInfo) -> Action + Send + Sync + 'static {
    let hits = AtomicUsize::new(0);
    move |request| {
        if matches(request) && hits.fetch_add(1, Ordering::SeqCst) >= n {
            action.clone()
        } else {
            Action::Forward
        }
    }
}

/// An error answer in the AWS query protocol's shape (Auto Scaling, IAM, STS …), e.g.
/// `query_error(400, "Throttling", "Rate exceeded")`, which the SDK retries as throttling.
pub fn query_error(status: u16, code: &str, message: &str) -> Action {
    Action::Reply(
        status,
        format!(
            "<ErrorResponse xmlns=\"https://autoscaling.amazonaws.com/doc/2011-01-01/\"><Error>\
             <Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>\
             <RequestId>fault-proxy</RequestId></ErrorResponse>"
        ),
    )
}
