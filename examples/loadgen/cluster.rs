//! `cluster`: smolchat on Redis (`--redis`), against one instance without
//! it, on the same loads in one run. Starts its own `redis-server` on a
//! unix socket in a temporary folder (no persistence: what is measured is
//! smolchat's side), then:
//!
//! - fan-out: `--subscribers` (1,000 by default) on one room, `--messages`
//!   from `--clients` posters that wait for each answer: on one instance
//!   without Redis (`--db :memory:`), on one instance on Redis, and on two
//!   instances on Redis with the subscribers and posters split between
//!   them. Every subscriber's record is checked (missing, duplicate, out of
//!   order), as in `fanout`.
//! - posts: keep-alive posters, no subscribers, for `--seconds`: posts/s on
//!   one instance on Redis and without it.
//!
//! Server CPU is the instances' (Redis's own is reported beside it).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::client::{message_text, BlockingConn};
use crate::fanout::{measure_on, round, summary, Load};
use crate::server::{proc_cpu, Server};
use crate::Args;

/// A `redis-server` of the loadgen's own, killed on drop.
struct Redis {
    child: Child,
    dir: PathBuf,
}

impl Redis {
    fn start() -> Redis {
        let dir =
            std::env::temp_dir().join(format!("smolchat-loadgen-redis-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let sock = dir.join("redis.sock");
        let child = Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(&sock)
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(&dir)
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}): apt install redis-server")
            });
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(&sock).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        Redis { child, dir }
    }

    fn url(&self) -> String {
        format!("redis+unix://{}", self.dir.join("redis.sock").display())
    }

    fn flush(&self) {
        let _ = Command::new("redis-cli")
            .arg("-s")
            .arg(self.dir.join("redis.sock"))
            .arg("FLUSHALL")
            .stdout(Stdio::null())
            .status();
    }

    fn cpu(&self) -> Duration {
        proc_cpu(&format!("/proc/{}/stat", self.child.id()))
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Posts/s and server CPU per post with `clients` keep-alive posters.
fn posts(server: &Server, clients: usize, seconds: f64) -> serde_json::Value {
    let addr = server.addr;
    let cpu0 = server.cpu_precise();
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let done: u64 = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..clients)
            .map(|c| {
                scope.spawn(move || {
                    let Ok(mut conn) = BlockingConn::open(addr) else {
                        return 0;
                    };
                    let mut n = 0u64;
                    let mut k = c as u64;
                    while Instant::now() < deadline {
                        if conn.post("posts", &message_text(k, 64)) == 201 {
                            n += 1;
                        }
                        k += clients as u64;
                    }
                    n
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap_or(0)).sum()
    });
    let secs = started.elapsed().as_secs_f64();
    let cpu = server.cpu_precise().saturating_sub(cpu0).as_secs_f64();
    serde_json::json!({
        "posts": done,
        "posts_per_s": round(done as f64 / secs, 0),
        "server_cpu_us_per_post": round(cpu * 1e6 / done.max(1) as f64, 1),
    })
}

pub(crate) fn run(args: &Args) {
    let load = Load {
        subscribers: args.subscribers.first().copied().unwrap_or(1000),
        posters: if args.clients == 0 { 2 } else { args.clients },
        messages: if args.messages == 0 {
            1000
        } else {
            args.messages
        },
        rate: args.rate,
        size: args.size_or(64),
    };
    let seconds = if args.seconds > 0.0 {
        args.seconds
    } else {
        3.0
    };
    let redis = Redis::start();
    let url = redis.url();
    let cap = (load.subscribers + load.posters + 64).to_string();
    let flags = |with_redis: bool| {
        let mut f = vec!["--max-connections".to_string(), cap.clone()];
        if with_redis {
            f.extend(["--redis".to_string(), url.clone()]);
        }
        f
    };
    // Ready once /healthz says Redis answered.
    let wait_ready = |s: &Server| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let status = smol::block_on(async {
                crate::client::Conn::open(s.addr)
                    .await
                    .request(b"GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
                    .await
                    .0
            });
            if status == 200 {
                break;
            }
            assert!(Instant::now() < deadline, "instance never reached Redis");
            std::thread::sleep(Duration::from_millis(20));
        }
    };

    let alone = Server::start(args, &flags(false));
    let fan_alone = measure_on(&[&alone], "bench", &load);
    let posts_alone = posts(&alone, 8, seconds);
    drop(alone);

    let one = Server::start(args, &flags(true));
    wait_ready(&one);
    let r0 = redis.cpu();
    let fan_one = measure_on(&[&one], "bench", &load);
    let redis_one = redis.cpu().saturating_sub(r0);
    let posts_redis = posts(&one, 8, seconds);
    drop(one);
    redis.flush();

    let a = Server::start(args, &flags(true));
    let b = Server::start(args, &flags(true));
    wait_ready(&a);
    wait_ready(&b);
    let r0 = redis.cpu();
    let fan_two = measure_on(&[&a, &b], "bench", &load);
    let redis_two = redis.cpu().saturating_sub(r0);
    drop((a, b));

    for (what, j) in [
        ("one instance, no Redis", &fan_alone),
        ("one instance on Redis", &fan_one),
        ("two instances on Redis", &fan_two),
    ] {
        eprintln!("cluster: {what}: {}", summary(j));
    }
    eprintln!(
        "cluster: posts, 8 clients: {} /s without Redis ({} µs server CPU each), {} /s on Redis ({} µs); \
         Redis CPU during fan-out: {:.2} s (one instance), {:.2} s (two)",
        posts_alone["posts_per_s"],
        posts_alone["server_cpu_us_per_post"],
        posts_redis["posts_per_s"],
        posts_redis["server_cpu_us_per_post"],
        redis_one.as_secs_f64(),
        redis_two.as_secs_f64(),
    );
    println!(
        "{}",
        serde_json::json!({
            "scenario": "cluster",
            "fanout_alone": fan_alone,
            "fanout_one": fan_one,
            "fanout_two": fan_two,
            "redis_cpu_s_one": round(redis_one.as_secs_f64(), 2),
            "redis_cpu_s_two": round(redis_two.as_secs_f64(), 2),
            "posts_alone": posts_alone,
            "posts_redis": posts_redis,
        })
    );
}
