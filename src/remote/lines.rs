//! Splits a remote command's output into lines as it arrives. A lone '\r' ends a
//! line too: rsync and pg tools redraw progress with it, and each redraw is news.

use tokio::io::{AsyncRead, AsyncReadExt};

const MAX_LINE: usize = 64 * 1024;

pub struct LineSplitter<R> {
    reader: Option<R>,
    buf: Vec<u8>,
    pos: usize,
    filled: usize,
    line: Vec<u8>,
    after_cr: bool,
}

impl<R: AsyncRead + Unpin> LineSplitter<R> {
    pub fn new(reader: Option<R>) -> Self {
        LineSplitter {
            reader,
            buf: vec![0; 16 * 1024],
            pos: 0,
            filled: 0,
            line: Vec::new(),
            after_cr: false,
        }
    }

    fn take_line(&mut self) -> String {
        let l = String::from_utf8_lossy(&self.line).into_owned();
        self.line.clear();
        l
    }

    /// The next line, or None at the end of the stream.
    pub(crate) async fn next_line(&mut self) -> Option<String> {
        loop {
            while self.pos < self.filled {
                let b = self.buf[self.pos];
                self.pos += 1;
                let was_cr = std::mem::replace(&mut self.after_cr, b == b'\r');
                match b {
                    b'\n' if was_cr => continue,
                    b'\n' | b'\r' => return Some(self.take_line()),
                    _ => {
                        self.line.push(b);
                        if self.line.len() >= MAX_LINE {
                            return Some(self.take_line());
                        }
                    }
                }
            }
            let reader = self.reader.as_mut()?;
            match reader.read(&mut self.buf).await {
                Ok(0) | Err(_) => {
                    self.reader = None;
                    if self.line.is_empty() {
                        return None;
                    }
                    return Some(self.take_line());
                }
                Ok(n) => {
                    self.filled = n;
                    self.pos = 0;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn split(input: &[u8]) -> Vec<String> {
        let mut s = LineSplitter::new(Some(input));
        let mut out = Vec::new();
        while let Some(l) = s.next_line().await {
            out.push(l);
        }
        out
    }

    #[tokio::test]
    async fn splits_on_newline_and_carriage_return() {
        assert_eq!(split(b"a\nb\r\nc\rd").await, ["a", "b", "c", "d"]);
        assert_eq!(split(b"a\n\nb\n").await, ["a", "", "b"]);
        assert_eq!(split(b"").await, Vec::<String>::new());
    }
}
