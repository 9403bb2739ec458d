//! `landwatch review serve` stops gracefully on SIGTERM (systemd stop) and on Ctrl-C
//! (SIGINT): it stops accepting connections, lets requests in flight finish, closes the
//! database and exits 0.

mod review_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use review_support::*;

/// The server binary running on an ephemeral port, with its stderr lines.
struct Server {
    child: Child,
    addr: SocketAddr,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl Server {
    fn start(fx: &Fixture) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_landwatch"))
            .args(["review", "serve", "--bind", "127.0.0.1:0", "--db"])
            .arg(&fx.db)
            .arg("--data")
            .arg(&fx.data)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn landwatch review serve");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = Server {
            child,
            addr: "127.0.0.1:1".parse().unwrap(),
            lines,
            log: Vec::new(),
        };
        let line = server.wait_for_line("serving http://");
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .expect("address in the serving line");
        server.addr = addr.parse().expect("socket address");
        server
    }

    /// Waits (at most 20 s) for a stderr line containing `needle`.
    fn wait_for_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(l) = self.log.iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.log.push(line),
                Err(_) => panic!("no line containing {needle:?}; stderr so far: {:#?}", self.log),
            }
        }
    }

    fn signal(&self, sig: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid");
        // SAFETY: kill(2) with our own child's pid and a valid signal number.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Waits (at most 30 s) for the process to exit; returns its exit code.
    fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(500)) {
                    self.log.push(line);
                }
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("server still running 30 s after the signal; stderr: {:#?}", self.log);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn stops_gracefully_on(sig: libc::c_int, name: &str) {
    let fx = Fixture::new();
    let mut server = Server::start(&fx);

    // A login whose body is only half sent is a request in flight.
    let body = format!("name=rev&password={}", form_encode(PASSWORD));
    let (head_and_half, rest) = {
        let head = format!(
            "POST /login HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://{addr}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
            body.len(),
            addr = server.addr
        );
        let (a, b) = body.split_at(body.len() / 2);
        (format!("{head}{a}"), b.to_string())
    };
    let mut in_flight = TcpStream::connect(server.addr).expect("connect");
    in_flight.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    in_flight.write_all(head_and_half.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(200));

    server.signal(sig);
    server.wait_for_line("no longer accepting connections");
    assert!(
        TcpStream::connect_timeout(&server.addr, Duration::from_secs(2)).is_err(),
        "a new connection is refused after {name}"
    );

    // The request in flight still gets its answer.
    in_flight.write_all(rest.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = in_flight.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 303"),
        "in-flight login answered after {name}: {answer:?}"
    );
    assert!(
        answer.to_ascii_lowercase().contains("set-cookie: lw_session="),
        "{answer}"
    );

    assert_eq!(
        server.wait_exit(),
        Some(0),
        "exit code after {name}; stderr: {:#?}",
        server.log
    );
    let log = server.log.join("\n");
    assert!(log.contains(&format!("{name} received")), "{log}");
    assert!(log.contains("stopped; database closed"), "{log}");
    // The database is closed cleanly: no WAL left to replay.
    let wal = fx.db.with_extension("sqlite-wal");
    assert!(
        std::fs::metadata(&wal).map_or(true, |m| m.len() == 0),
        "WAL checkpointed on close"
    );
}

#[test]
fn sigterm_stops_the_server_gracefully() {
    stops_gracefully_on(libc::SIGTERM, "SIGTERM");
}

#[test]
fn ctrl_c_stops_the_server_gracefully() {
    stops_gracefully_on(libc::SIGINT, "SIGINT");
}
