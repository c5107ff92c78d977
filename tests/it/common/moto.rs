//! A `moto_server` process on loopback: the AWS side of the test world.
//!
//! One server per test process is shared by every test that only needs its own bucket
//! ([`Moto::shared`]); a test that counts requests or needs a clean account starts a private
//! one ([`Moto::start`]). Either way the server must die with the tests: a private server is
//! killed on `Drop`, and every server has a watchdog `sh` that kills it when the test process
//! goes away without running destructors (statics are never dropped; a crash or SIGKILL runs
//! nothing). The watchdog blocks reading a pipe whose only writer is the test process, so it
//! wakes exactly when the process is gone, however it ended — no polling, no pid reuse races on
//! the test process, and no `unsafe` (a `PR_SET_PDEATHSIG` would need `pre_exec`).

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

use super::s3::S3;

/// The oldest moto whose S3 answers aws-sdk-s3 can parse (see [`Moto::check_multipart_answer`]).
const MIN_VERSION: &str = "5.2.2";
/// How to get a good moto, for panic messages.
const INSTALL: &str = "pip install 'moto[server]>=5.2.2'";

/// How long a fresh server may take to answer HTTP. moto imports a lot of Python: ~1 s on an
/// idle machine, much more when many tests start servers at once on a small CI runner.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How often readiness is polled.
const POLL: Duration = Duration::from_millis(50);
/// Attempts at a free port: another process may take the port between our probe bind and moto's.
pub(super) const PORT_ATTEMPTS: usize = 5;

/// A running `moto_server` on `127.0.0.1`, killed when dropped.
pub struct Moto {
    server: Child,
    watchdog: Child,
    port: u16,
    /// moto's stdout and stderr (one request per line), unlinked: nothing to clean up.
    log: File,
}

impl Moto {
    /// The server shared by all tests of this process, started on first use.
    ///
    /// Tests on it must not assume an empty account: each uses its own bucket
    /// ([`super::unique_bucket`]). It is killed by its watchdog when the process exits.
    pub fn shared() -> &'static Moto {
        static SHARED: OnceLock<Moto> = OnceLock::new();
        SHARED.get_or_init(Moto::start)
    }

    /// Starts a private server on a free port and waits until it answers HTTP.
    ///
    /// Panics, with the fix in the message, if `moto_server` is missing or never answers.
    pub fn start() -> Moto {
        on_a_free_port(Moto::try_start).unwrap_or_else(|last_log| {
            panic!(
                "moto_server exited before answering, {PORT_ATTEMPTS} times; its last output:\n\
                 {last_log}"
            )
        })
    }

    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL` and the test S3 client.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Everything the server wrote so far (werkzeug logs one line per request): for failure
    /// messages.
    pub fn log(&self) -> String {
        read_all_at(&self.log)
    }

    /// Spawns moto on `port`; `Err(output)` if it exits before it is ready.
    fn try_start(port: u16) -> Result<Moto, String> {
        let log = tempfile::tempfile().expect("create a temporary file for moto's output");
        let program = std::env::var_os("MOTO_SERVER").unwrap_or_else(|| "moto_server".into());
        let server = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone moto's log file"))
            .stderr(log.try_clone().expect("clone moto's log file"))
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot run `{}` ({error}): the tests need moto's server; install it: \
                     {INSTALL} (or set MOTO_SERVER to its path)",
                    program.to_string_lossy()
                )
            });
        let watchdog = spawn_watchdog(server.id());
        let mut moto = Moto {
            server,
            watchdog,
            port,
            log,
        };
        moto.wait_ready()?;
        moto.check_multipart_answer();
        Ok(moto)
    }

    /// Panics if this moto answers CompleteMultipartUpload in a form aws-sdk-s3 rejects.
    ///
    /// moto before 5.2.2 wraps that answer in `<CompleteMultipartUploadResponse>` instead of
    /// `<CompleteMultipartUploadResult>` (getmoto/moto#10055): the SDK then fails every
    /// multipart upload with "invalid XML root", which would look like a bug in the binary.
    /// The probe bucket is deleted again, so a private server starts with an empty account.
    fn check_multipart_answer(&self) {
        let s3 = S3::new(&self.endpoint());
        let (bucket, key) = ("moto-harness-probe", "probe");
        s3.create_bucket(bucket);
        let client = s3.client();
        let completed = s3.block_on(async {
            fn error(e: impl std::error::Error) -> String {
                format!("{}", DisplayErrorContext(e))
            }
            let upload = client.create_multipart_upload().bucket(bucket).key(key);
            let upload = upload.send().await.map_err(error)?;
            let id = upload.upload_id().unwrap_or_default();
            let part = client.upload_part().bucket(bucket).key(key).upload_id(id);
            let body = ByteStream::from_static(b"probe");
            let part = part.part_number(1).body(body).send().await.map_err(error)?;
            let done = CompletedPart::builder().part_number(1);
            let done = done.set_e_tag(part.e_tag().map(str::to_owned)).build();
            let parts = CompletedMultipartUpload::builder().parts(done).build();
            let complete = client.complete_multipart_upload().bucket(bucket).key(key);
            let complete = complete.upload_id(id).multipart_upload(parts);
            complete.send().await.map_err(error)
        });
        if let Err(error) = completed {
            panic!(
                "moto_server at {} cannot complete a multipart upload for aws-sdk-s3; moto \
                 before {MIN_VERSION} answers in a form the SDK rejects (getmoto/moto#10055). \
                 Upgrade it: {INSTALL}\n{error}",
                self.endpoint()
            );
        }
        s3.delete(bucket, key);
        s3.block_on(client.delete_bucket().bucket(bucket).send())
            .expect("delete moto's probe bucket");
    }

    /// Polls until our own child listens on the port and answers an HTTP request.
    ///
    /// The ownership check matters: if another server took the port first, it would answer
    /// while our moto dies of "address in use", and the tests would talk to a stranger.
    fn wait_ready(&mut self) -> Result<(), String> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.server.try_wait().expect("wait for moto_server") {
                return Err(format!("({status})\n{}", self.log()));
            }
            if listens_on(self.server.id(), self.port) && answers_http(self.port) {
                return Ok(());
            }
            if started.elapsed() > READY_TIMEOUT {
                panic!(
                    "moto_server on port {} did not answer within {READY_TIMEOUT:?}; its output:\n{}",
                    self.port,
                    self.log()
                );
            }
            thread::sleep(POLL);
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        // The watchdog first, so it cannot signal a recycled pid after moto is reaped.
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// A port that was free a moment ago (the kernel's pick for port 0).
pub(super) fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .expect("bind 127.0.0.1:0 to find a free port")
        .port()
}

/// Starts `sh` that kills `pid` once its stdin reaches end of file.
///
/// The write end of that pipe lives in the returned `Child`, so it closes when the test process
/// drops it or exits in any way; std opens pipes close-on-exec, so no other child holds it open.
pub(super) fn spawn_watchdog(pid: u32) -> Child {
    Command::new("sh")
        .args([
            "-c",
            "read -r line; kill \"$1\" 2>/dev/null",
            "moto-watchdog",
        ])
        .arg(pid.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the moto watchdog (sh)")
}

/// Whether process `pid` holds a socket listening on `127.0.0.1:port` (Linux `/proc`).
pub(super) fn listens_on(pid: u32, port: u16) -> bool {
    let Ok(table) = fs_err::read_to_string("/proc/net/tcp") else {
        return false;
    };
    let port_hex = format!(":{port:04X}");
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        // Fields: sl, local_address, rem_address, st (0A = LISTEN), ..., inode (10th).
        .filter(|f| f.len() > 9 && f[1].ends_with(&port_hex) && f[3] == "0A")
        .map(|f| format!("socket:[{}]", f[9]))
        .collect();
    let Ok(fds) = fs_err::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        fs_err::read_link(fd.path()).is_ok_and(|target| {
            inodes
                .iter()
                .any(|inode| target.as_os_str() == inode.as_str())
        })
    })
}

/// Whether something on `127.0.0.1:port` answers a plain HTTP request.
pub(super) fn answers_http(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 8];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.")
}

/// Reads a file from its start without moving the offset it shares with the writer.
pub(super) fn read_all_at(file: &File) -> String {
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut buf = vec![0u8; usize::try_from(len).unwrap_or(0)];
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], filled as u64) {
            Ok(0) | Err(_) => break,
            Ok(n) => filled += n,
        }
    }
    buf.truncate(filled);
    String::from_utf8_lossy(&buf).into_owned()
}

/// `start(port)` on a free port, another one each time it fails (another process may take the
/// port between our probe bind and the server's, or the server died early), at most
/// [`PORT_ATTEMPTS`] times; `Err` holds the last attempt's output.
pub(super) fn on_a_free_port<T>(start: impl Fn(u16) -> Result<T, String>) -> Result<T, String> {
    let mut last_log = String::new();
    for _ in 0..PORT_ATTEMPTS {
        match start(free_port()) {
            Ok(server) => return Ok(server),
            Err(log) => last_log = log,
        }
    }
    Err(last_log)
}
