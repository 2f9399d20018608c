//! Small facts about this machine and its processes.

/// This machine's host name, or `unknown` if it cannot be read.
pub(crate) fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // when the name fits, and we stop at the first NUL or at the end.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".to_string();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Start time of a process in clock ticks since boot (Linux `/proc/<pid>/stat`
/// field 22), or `None` where it cannot be read.
pub(crate) fn process_start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: skip past
    // its last ')'. Field 3 is then the first, so field 22 is the 20th.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the process that started at `start_ticks` with id `pid` still runs.
pub(crate) fn process_alive(pid: u32, start_ticks: Option<u64>) -> bool {
    if let (Some(expected), Some(now)) = (start_ticks, process_start_ticks(pid)) {
        return expected == now;
    }
    if std::path::Path::new("/proc/self/stat").exists() {
        return process_start_ticks(pid).is_some() && start_ticks.is_none();
    }
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive() {
        let me = std::process::id();
        let start = process_start_ticks(me);
        assert!(start.is_some());
        assert!(process_alive(me, start));
        assert!(!process_alive(me, start.map(|s| s + 1)));
    }
}
