//! Line framing for streamed HTTP bodies: NDJSON (Ollama) and server-sent events (OpenAI).

/// Splits a byte stream into complete lines; a partial line waits for the next chunk.
#[derive(Debug, Default)]
pub(crate) struct LineBuffer {
    pending: Vec<u8>,
}

impl LineBuffer {
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        self.pending.extend_from_slice(chunk);
        let mut lines = Vec::new();
        while let Some(pos) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=pos).collect();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]);
            lines.push(text.trim_end_matches('\r').to_string());
        }
        lines
    }

    /// What is left when the body ends without a final newline.
    pub(crate) fn finish(&mut self) -> Option<String> {
        let rest = std::mem::take(&mut self.pending);
        let text = String::from_utf8_lossy(&rest).trim().to_string();
        (!text.is_empty()).then_some(text)
    }
}

/// The payload of an SSE `data:` line; other fields (event, id, comments) carry nothing for us.
pub(crate) fn sse_data(line: &str) -> Option<&str> {
    let data = line.strip_prefix("data:")?;
    Some(data.strip_prefix(' ').unwrap_or(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_across_chunks() {
        let cases: &[(&[&str], &[&str])] = &[
            (&["a\nb\n"], &["a", "b"]),
            (&["a", "b\r\n", "c"], &["ab"]),
            (&["{\"x\":", "1}\n\n"], &["{\"x\":1}", ""]),
        ];
        for (chunks, want) in cases {
            let mut buf = LineBuffer::default();
            let got: Vec<String> = chunks.iter().flat_map(|c| buf.push(c.as_bytes())).collect();
            assert_eq!(&got, want, "{chunks:?}");
        }
    }

    #[test]
    fn sse_data_lines() {
        for (line, want) in [
            ("data: {}", Some("{}")),
            ("data:[DONE]", Some("[DONE]")),
            (": ping", None),
            ("event: x", None),
        ] {
            assert_eq!(sse_data(line), want, "{line}");
        }
    }
}
