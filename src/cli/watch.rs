//! `status --watch`: the status redrawn every second until q or Ctrl-C.
//!
//! On a terminal each frame overwrites the last in place (cursor home, every line followed
//! by clear-to-end-of-line, then clear below) on the alternate screen: nothing is cleared
//! before it is redrawn, so nothing flickers. Keys are read unbuffered (no echo, no line
//! editing, Ctrl-C as a key) so `q` needs no Enter, and the terminal is restored however the
//! loop ends. Not on a terminal (a pipe, a log): each status printed whole, a second apart,
//! with a separator, no escape codes.

use std::io::{IsTerminal, Write};
use std::os::fd::AsFd;
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::termios::{self, LocalFlags, SetArg, Termios};

use rdask::error::Result;

/// A frame that replaces the previous one in place.
pub fn frame(text: &str) -> String {
    let mut out = String::from("\x1b[H");
    for line in text.lines() {
        out.push_str(line);
        out.push_str("\x1b[K\r\n");
    }
    out.push_str("\x1b[J");
    out
}

/// What a key read while watching means.
#[derive(Debug, PartialEq, Eq)]
pub enum Key {
    Quit,
    Other,
}

pub fn key(byte: u8) -> Key {
    match byte {
        b'q' | b'Q' | 0x03 | 0x04 => Key::Quit, // q, Ctrl-C, Ctrl-D
        _ => Key::Other,
    }
}

/// The terminal as it was, put back when dropped.
struct Raw(Termios);

impl Raw {
    fn enter() -> Option<Raw> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        raw.local_flags
            .remove(LocalFlags::ICANON | LocalFlags::ECHO | LocalFlags::ISIG);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).ok()?;
        // The alternate screen, cursor hidden.
        print!("\x1b[?1049h\x1b[?25l");
        Some(Raw(saved))
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        print!("\x1b[?25h\x1b[?1049l");
        let _ = std::io::stdout().flush();
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.0);
    }
}

/// Waits up to `timeout` for a key; true when it says quit.
fn quit_pressed(timeout: Duration) -> bool {
    let stdin = std::io::stdin();
    let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
    let ms = PollTimeout::try_from(timeout.as_millis() as i32).unwrap_or(PollTimeout::MAX);
    if !matches!(poll(&mut fds, ms), Ok(n) if n > 0) {
        return false;
    }
    let mut buf = [0u8; 64];
    let n = nix::unistd::read(&stdin, &mut buf).unwrap_or(0);
    // End of input (a closed terminal) ends the watch too.
    n == 0 || buf[..n].iter().any(|b| key(*b) == Key::Quit)
}

/// Runs `render` every second until q or Ctrl-C (terminal) or forever (not a terminal; Ctrl-C
/// ends it as any program). An error from `render` ends the watch with it.
pub fn watch(mut render: impl FnMut() -> Result<String>) -> Result<i32> {
    let terminal = std::io::stdout().is_terminal() && std::io::stdin().is_terminal();
    let raw = if terminal { Raw::enter() } else { None };
    let mut out = std::io::stdout();
    loop {
        let text = match render() {
            Ok(t) => t,
            Err(e) => {
                drop(raw);
                return Err(e);
            }
        };
        if raw.is_some() {
            let _ = write!(
                out,
                "{}",
                frame(&format!("{text}\n(every second; q or Ctrl-C quits)"))
            );
            let _ = out.flush();
            if quit_pressed(Duration::from_secs(1)) {
                return Ok(0);
            }
        } else {
            if writeln!(out, "{text}\n----")
                .and_then(|_| out.flush())
                .is_err()
            {
                return Ok(0); // the reader went away (`| head`)
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_overwrites_in_place_without_clearing_first() {
        let f = frame("a\nbb");
        assert_eq!(f, "\x1b[Ha\x1b[K\r\nbb\x1b[K\r\n\x1b[J");
        assert!(!f.contains("\x1b[2J"), "a full clear flickers");
    }

    #[test]
    fn q_and_ctrl_c_quit() {
        assert_eq!(key(b'q'), Key::Quit);
        assert_eq!(key(3), Key::Quit);
        assert_eq!(key(b'x'), Key::Other);
    }
}
