//! `streams::uring` against the kernel: what a thread that parks in `io_uring_enter` relies on.
//! Skipped, with the reason, where io_uring is not available (old kernel, seccomp, sysctl).

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use streams::uring::{Completion, Uring, UringConfig};

fn uring() -> Option<Uring> {
    uring_with(false)
}

fn uring_with(defer_taskrun: bool) -> Option<Uring> {
    match Uring::new(UringConfig {
        entries: 8,
        buffers: 8,
        buffer_size: 4096,
        defer_taskrun,
    }) {
        Ok(uring) => Some(uring),
        Err(e) => {
            eprintln!("skipped: io_uring is not available here ({e})");
            None
        }
    }
}

/// A connected pair on loopback, the server side's multishot receive queued (not submitted)
/// under `tag`: (client, server).
fn receiving(uring: &mut Uring, tag: u64) -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    uring.recv_multishot(server.as_fd(), tag).unwrap();
    (client, server)
}

#[test]
fn submit_and_wait_submits_the_receive_and_returns_once_bytes_arrived() {
    let Some(mut uring) = uring() else { return };
    let (client, _server) = receiving(&mut uring, 7);
    // The bytes come after the submit: only a wait sees them.
    let writer = std::thread::spawn(move || {
        let mut client = client;
        std::thread::sleep(Duration::from_millis(50));
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        client
    });
    uring.submit_and_wait(1).unwrap();
    let mut completions = Vec::new();
    uring.completions(&mut completions);
    let client = writer.join().unwrap();
    let Some(Completion::Received { tag, result, more }) = completions.pop() else {
        panic!("expected one receive completion, got {completions:?}");
    };
    assert_eq!(tag, 7);
    assert!(
        more,
        "a multishot receive goes on after its first completion"
    );
    let buffer = result.unwrap().expect("bytes, not the peer's FIN");
    assert_eq!(uring.data(&buffer), b"GET / HTTP/1.1\r\n\r\n");
    uring.recycle(buffer);

    // The peer closes: the wait returns with the receive's last completion.
    drop(client);
    uring.submit_and_wait(1).unwrap();
    uring.completions(&mut completions);
    match completions.as_slice() {
        [Completion::Received {
            tag: 7,
            result: Ok(None),
            more: false,
        }] => {}
        other => panic!("expected the receive to end at the peer's FIN, got {other:?}"),
    }
}

#[test]
fn bytes_that_arrive_while_the_thread_makes_no_system_call_show_and_the_next_submit_posts_them() {
    let Some(uring) = uring() else { return };
    held_back_receive_shows_and_the_next_submit_posts_it(uring);
}

#[test]
fn with_deferred_task_work_too_a_held_back_receive_shows_and_the_next_submit_posts_it() {
    let Some(uring) = uring_with(true) else {
        return;
    };
    held_back_receive_shows_and_the_next_submit_posts_it(uring);
}

fn held_back_receive_shows_and_the_next_submit_posts_it(mut uring: Uring) {
    let (client, _server) = receiving(&mut uring, 9);
    uring.submit().unwrap();
    assert!(!uring.has_completions(), "nothing was sent yet");
    let written = Arc::new(AtomicBool::new(false));
    let writer = std::thread::spawn({
        let written = Arc::clone(&written);
        move || {
            let mut client = client;
            client.write_all(b"PING").unwrap();
            written.store(true, Ordering::Release);
            client
        }
    });
    // Spin without a system call (a busy core's loop): the kernel may hold the completion
    // back until this thread enters it, but `has_completions` must see that it waits.
    let spin_until = Instant::now() + Duration::from_secs(5);
    while !(written.load(Ordering::Acquire) && uring.has_completions()) {
        assert!(
            Instant::now() < spin_until,
            "the receive's completion never showed while the thread spun"
        );
        std::hint::spin_loop();
    }
    uring.submit().unwrap();
    let mut completions = Vec::new();
    uring.completions(&mut completions);
    let client = writer.join().unwrap();
    let Some(Completion::Received {
        tag: 9,
        result: Ok(Some(buffer)),
        more: true,
    }) = completions.pop()
    else {
        panic!("expected the receive's bytes after the submit, got {completions:?}");
    };
    assert_eq!(uring.data(&buffer), b"PING");
    uring.recycle(buffer);
    drop(client);
}
