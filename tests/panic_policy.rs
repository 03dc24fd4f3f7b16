//! The fail-fast panic policy: a panic on any thread logs and ends the whole
//! process with status 70 (`ferrocache::PANIC_EXIT_CODE`).
//!
//! Nothing a client sends can make the server panic, by design, so this runs
//! the policy in a child process: this same test binary, re-run with an
//! environment variable that makes the test body panic instead.

use std::process::Command;

const CHILD: &str = "FERROCACHE_PANIC_POLICY_CHILD";

/// Re-runs this binary for one test, as the child; returns its exit code.
fn run_child(test: &str, mode: &str) -> Option<i32> {
    let output = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--test-threads=1", "--nocapture"])
        .env(CHILD, mode)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run child");
    output.status.code()
}

#[test]
fn panic_on_a_spawned_thread_exits_70() {
    if std::env::var(CHILD).as_deref() == Ok("thread") {
        ferrocache::install_panic_policy();
        let _ = std::thread::Builder::new()
            .name("core-1".into())
            .spawn(|| panic!("deliberate panic on a worker thread"))
            .unwrap()
            .join();
        // The hook should have ended the process before the join returned.
        std::process::exit(0);
    }
    assert_eq!(
        run_child("panic_on_a_spawned_thread_exits_70", "thread"),
        Some(ferrocache::PANIC_EXIT_CODE)
    );
}

#[test]
fn panic_on_the_calling_thread_exits_70() {
    if std::env::var(CHILD).as_deref() == Ok("main") {
        ferrocache::install_panic_policy();
        panic!("deliberate panic on the thread that installed the policy");
    }
    assert_eq!(
        run_child("panic_on_the_calling_thread_exits_70", "main"),
        Some(ferrocache::PANIC_EXIT_CODE)
    );
}

#[test]
fn without_the_policy_a_thread_panic_is_not_fatal() {
    // The control: the exit code above comes from the policy, not from libtest.
    if std::env::var(CHILD).as_deref() == Ok("control") {
        let _ = std::thread::spawn(|| panic!("deliberate")).join();
        std::process::exit(0);
    }
    assert_eq!(
        run_child("without_the_policy_a_thread_panic_is_not_fatal", "control"),
        Some(0)
    );
}
