//! Thread scheduling: a thread that must run as soon as it wakes (a cluster member's election,
//! whose heartbeats and lease renewals a saturated core would otherwise delay) asks for the
//! real-time FIFO policy. The one `unsafe` call is here, with the crate's other system calls.

use std::io;

/// Puts the calling thread under `SCHED_FIFO` with `priority` (1..=99). It then preempts
/// every ordinary thread as soon as it is runnable, so it must only do short bursts of work
/// between sleeps. Fails with `PermissionDenied` without `CAP_SYS_NICE` (or an RLIMIT_RTPRIO
/// that allows it).
pub fn realtime_fifo(priority: i32) -> io::Result<()> {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: `sched_setscheduler` reads the `sched_param` we pass by reference, which lives
    // for the duration of the call; pid 0 is the calling thread. No memory is shared.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The calling thread's scheduling policy (`libc::SCHED_*`).
pub fn policy() -> i32 {
    // SAFETY: `sched_getscheduler` takes no pointers; pid 0 is the calling thread.
    unsafe { libc::sched_getscheduler(0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_gets_the_fifo_policy_or_a_clear_refusal() {
        let got = std::thread::spawn(|| (realtime_fifo(1), policy()))
            .join()
            .unwrap();
        match got {
            (Ok(()), p) => assert_eq!(p, libc::SCHED_FIFO),
            (Err(e), p) => {
                assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
                assert_eq!(p, libc::SCHED_OTHER);
            }
        }
        assert!(realtime_fifo(1000).is_err(), "out of range");
    }
}
