//! A `redis-server` of the caller's own on a free loopback port (or `PP_TEST_REDIS_URL`'s), for
//! the tests and the token benchmark. Stopped when dropped.

use std::process::{Child, Command, Stdio};

pub struct Redis {
    pub url: String,
    child: Option<Child>,
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn redis() -> Redis {
    if let Ok(url) = std::env::var("PP_TEST_REDIS_URL") {
        return Redis { url, child: None };
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let server = Redis {
        url: format!("redis://127.0.0.1:{port}/"),
        child: Some(
            Command::new("redis-server")
                .args([
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    &port.to_string(),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .stdout(Stdio::null())
                .spawn()
                .expect("redis-server is not installed: `scripts/setup` installs it"),
        ),
    };
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return server;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    drop(server);
    panic!("redis-server did not start on port {port}");
}
