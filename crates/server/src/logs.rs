//! The process's log output: lines formatted on the thread that logs them, written by a
//! thread of their own in batches, with terminal control characters escaped.

use std::io::Write;

use tracing_subscriber::EnvFilter;

/// The log filter without `RUST_LOG`. actix-http answers malformed requests (400) and
/// oversized heads (431) itself, before any gateway code runs, and logs each as an ERROR
/// "stream error": a client's mistake, not the gateway's, so its dispatcher is silenced.
///
/// rmcp logs each malformed MCP message a client sends as a WARN carrying the message
/// (up to the body limit): also the client's mistake, answered to it, so only its errors
/// are kept.
pub const DEFAULT_LOG_FILTER: &str = "info,actix_http::h1::dispatcher=off,rmcp=error";

/// Room for log lines written to standard output in one system call.
const LOG_BUFFER_BYTES: usize = 64 * 1024;

/// Lines that may wait for the log thread before logging threads wait in turn (as a
/// blocked standard output made them wait before). The queue's slots are allocated up
/// front: tracing-appender's default of 128,000 cost 4.4 MiB of resident memory at start;
/// 4,096 slots are 160 KiB, and the thread writes them out far faster than requests come.
const LOG_QUEUE_LINES: usize = 4_096;

/// How long the log thread rests after writing a batch, so that the next lines gather.
pub const LOG_GATHER: std::time::Duration = std::time::Duration::from_millis(1);

/// Installs the log subscriber (`format`: `json`, else text). Lines are formatted on the
/// thread that logs them and written by a thread of their own, which drains every line
/// waiting and writes them with one system call: an access line per request no longer
/// costs each request a `write`. Nothing is dropped (a full queue makes the logging thread
/// wait, as a blocking write did), and a line is written within about [`LOG_GATHER`] of
/// being logged (see [`Gathering`]). The returned guard writes what is queued when the
/// process ends.
///
/// Text logged from a request (its path, say) may hold terminal control characters. On a
/// terminal, tracing escapes each event's fields as it formats them (its own colour codes
/// pass; a span's recorded fields it leaves as they are); elsewhere, the log thread escapes
/// whole lines the same way ([`escape_controls`]), span fields included, at no cost to the
/// request: the formatter's escaping went character by character through the formatting
/// machinery, a visible share of a cached read. In JSON lines the encoder escapes the C0
/// controls and the log thread DEL and the C1 controls, as JSON escapes (`\u009b`): the
/// values a reader parses are unchanged.
pub fn init(format: &str) -> tracing_appender::non_blocking::WorkerGuard {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let json = format.eq_ignore_ascii_case("json");
    // Colours only on a terminal: log files and collectors get plain text.
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .thread_name("sacp-log")
        .finish(Gathering {
            output: stdout_writer(),
            escaping: match (json, terminal) {
                (true, _) => Escaping::Json,
                (false, true) => Escaping::Off,
                (false, false) => Escaping::Text,
            },
        });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(terminal)
        .with_ansi_sanitization(terminal);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
    guard
}

/// Standard output, buffered: the log thread flushes after each batch of lines. Rust's
/// own `Stdout` flushes at every newline, hence a descriptor of our own on the same output.
fn stdout_writer() -> Box<dyn Write + Send> {
    use std::os::fd::AsFd;
    match std::io::stdout().as_fd().try_clone_to_owned() {
        Ok(fd) => Box::new(std::io::BufWriter::with_capacity(
            LOG_BUFFER_BYTES,
            std::fs::File::from(fd),
        )),
        Err(_) => Box::new(std::io::stdout()),
    }
}

/// The log thread's output: lines pass on (with control characters escaped as `escaping`
/// says, see [`escape_controls`]), and after each batch is flushed the thread rests for
/// [`LOG_GATHER`]. Without the rest it went back to the queue at once, where the next line
/// was always a few microseconds away: the queue's receiver spun and yielded for each line
/// instead of sleeping (a quarter of the gateway's CPU under load, ≈ 1–2 µs per request;
/// `docs/benchmarks.md`). With it, lines wait at most about a millisecond and are written
/// dozens at a time; an idle thread still sleeps on the queue.
#[derive(Debug)]
pub struct Gathering<W> {
    /// Where lines go.
    pub output: W,
    /// How control characters are escaped on the way.
    pub escaping: Escaping,
}

/// How the log thread escapes the characters a terminal acts on (see [`escape_controls`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escaping {
    /// Lines pass as they are (the formatter escaped them).
    Off,
    /// As tracing-subscriber escapes text: `\x1b`, `\u{9b}`.
    Text,
    /// As JSON escapes, valid inside the strings where such characters can only appear:
    /// `\u001b`, `\u009b`.
    Json,
}

impl<W: Write> Write for Gathering<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_all(buf).map(|()| buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self.escaping {
            Escaping::Off => self.output.write_all(buf),
            style => escape_controls(buf, style, &mut self.output),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.output.flush()?;
        std::thread::sleep(LOG_GATHER);
        Ok(())
    }
}

/// Writes `text` to `output` with the characters a terminal acts on escaped: ESC, BEL, BS,
/// FF, DEL and the C1 controls U+0080–U+009F. [`Escaping::Text`] writes them as
/// tracing-subscriber escapes a field's text (so a line reads the same either way: `\x1b`,
/// `\x7f`, `\u{9b}`), [`Escaping::Json`] as JSON escapes (`\u001b`, `\u007f`, `\u009b`).
/// Line ends and tabs pass. A line without any is written as it is, found by one pass that
/// does not stop early (so that it has no branch per byte).
pub fn escape_controls(
    text: &[u8],
    style: Escaping,
    output: &mut impl Write,
) -> std::io::Result<()> {
    let suspect = |byte: u8| matches!(byte, 0x07 | 0x08 | 0x0c | 0x1b | 0x7f | 0xc2);
    if !text.iter().fold(false, |seen, &byte| seen | suspect(byte)) {
        return output.write_all(text);
    }
    let mut plain_from = 0;
    let mut index = 0;
    while let Some(&byte) = text.get(index) {
        // U+0080–U+009F are 0xC2 followed by 0x80–0x9F in UTF-8.
        let c1 = (byte == 0xc2)
            .then(|| text.get(index + 1).copied())
            .flatten()
            .filter(|next| (0x80..=0x9f).contains(next));
        let escaped_len = match (c1, byte) {
            (Some(_), _) => 2,
            (None, 0x07 | 0x08 | 0x0c | 0x1b | 0x7f) => 1,
            _ => 0,
        };
        if escaped_len == 0 {
            index += 1;
            continue;
        }
        output.write_all(text.get(plain_from..index).unwrap_or_default())?;
        match (style, c1) {
            (Escaping::Json, code) => write!(output, "\\u{:04x}", code.unwrap_or(byte))?,
            (_, Some(code)) => write!(output, "\\u{{{code:x}}}")?,
            (_, None) => write!(output, "\\x{byte:02x}")?,
        }
        index += escaped_len;
        plain_from = index;
    }
    output.write_all(text.get(plain_from..).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    use super::{Escaping, Gathering, LOG_GATHER, escape_controls};

    /// An output that records what reached it and how often it was flushed.
    #[derive(Default)]
    struct Recorded {
        bytes: Vec<u8>,
        flushes: usize,
    }

    impl Write for Recorded {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.bytes.extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            self.flushes += 1;
            Ok(())
        }
    }

    #[test]
    fn the_log_output_passes_every_line_on_and_rests_after_each_batch() {
        let mut output = Gathering {
            output: Recorded::default(),
            escaping: Escaping::Text,
        };
        output.write_all(b"first line\n").unwrap();
        output.write_all(b"second line\n").unwrap();
        let started = Instant::now();
        output.flush().unwrap();
        assert!(
            started.elapsed() >= LOG_GATHER,
            "the log thread rests after a batch"
        );
        assert_eq!(output.output.flushes, 1, "the batch reached the output");
        assert_eq!(output.output.bytes, b"first line\nsecond line\n");
    }

    /// A line's text after [`escape_controls`] in `style`.
    fn escaped_as(text: &str, style: Escaping) -> String {
        let mut output = Vec::new();
        escape_controls(text.as_bytes(), style, &mut output).unwrap();
        String::from_utf8(output).unwrap()
    }

    fn escaped(text: &str) -> String {
        escaped_as(text, Escaping::Text)
    }

    /// What a text subscriber writes for one event whose message holds `message`, in a span
    /// whose `key_id` is `field`, with tracing's own escaping (`sanitize`) or with none and
    /// the line passed through [`escape_controls`] afterwards.
    fn formatted(message: &str, field: &str, sanitize: bool) -> String {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let writer = {
            let lines = lines.clone();
            move || Gathering {
                output: Shared(lines.clone()),
                escaping: if sanitize {
                    Escaping::Off
                } else {
                    Escaping::Text
                },
            }
        };
        let subscriber = tracing_subscriber::fmt()
            .without_time()
            .with_ansi(false)
            .with_ansi_sanitization(sanitize)
            .with_writer(writer)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", key_id = tracing::field::Empty);
            span.record("key_id", tracing::field::display(field));
            let _entered = span.enter();
            tracing::info!(status = 200, "GET {message}");
        });
        let bytes = lines.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_logged_line_reads_as_tracing_would_have_escaped_it() {
        let hostile = "/a\x1b[31mred\x07\x08\x0c\x7f\u{80}\u{9b}2J\u{9f}\u{a0}é£€\t\x1b";
        let by_tracing = formatted(hostile, "key_1", true);
        assert!(by_tracing.contains("\\x1b[31mred"), "{by_tracing}");
        assert_eq!(formatted(hostile, "key_1", false), by_tracing);
        let plain = "/products/7f3c9a52 café £1";
        assert_eq!(
            formatted(plain, plain, false),
            formatted(plain, plain, true)
        );
    }

    #[test]
    fn span_fields_are_escaped_too() {
        // tracing-subscriber 0.3.23 escapes an event's fields but not a span's recorded ones.
        let by_tracing = formatted("/", "\x1b[2J", true);
        assert!(by_tracing.contains("key_id=\x1b[2J"), "{by_tracing:?}");
        let by_line = formatted("/", "\x1b[2J", false);
        assert!(by_line.contains("key_id=\\x1b[2J"), "{by_line:?}");
        assert!(!by_line.contains('\x1b'));
    }

    #[test]
    fn only_terminal_controls_are_escaped() {
        assert_eq!(escaped("plain line\n"), "plain line\n");
        assert_eq!(escaped("\x1b[2J"), "\\x1b[2J");
        assert_eq!(escaped("a\u{85}b\u{9b}c"), "a\\u{85}b\\u{9b}c");
        assert_eq!(escaped("\u{a0}£\u{c2}x"), "\u{a0}£\u{c2}x", "not C1");
        assert_eq!(escaped("tab\tand\r\n"), "tab\tand\r\n");
        let mut output = Vec::new();
        escape_controls(b"cut \xc2", Escaping::Text, &mut output).unwrap();
        assert_eq!(output, b"cut \xc2", "a lone lead byte passes as it came");
    }

    #[test]
    fn a_json_line_keeps_its_values_and_loses_its_raw_controls() {
        let hostile = "/a\x1b[31m\x7f\u{85}\u{9b}2J\u{a0}é\t";
        let lines = Arc::new(Mutex::new(Vec::new()));
        let writer = {
            let lines = lines.clone();
            move || Gathering {
                output: Shared(lines.clone()),
                escaping: Escaping::Json,
            }
        };
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_ansi(false)
            .with_writer(writer)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(path = hostile, "GET {hostile}");
        });
        let line = String::from_utf8(lines.lock().unwrap().clone()).unwrap();
        assert!(
            !line.contains(['\x1b', '\x7f', '\u{85}', '\u{9b}']),
            "{line:?}"
        );
        let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["fields"]["path"], hostile);
        assert_eq!(parsed["fields"]["message"], format!("GET {hostile}"));
        assert_eq!(
            escaped_as("a\x7fb\u{9f}", Escaping::Json),
            "a\\u007fb\\u009f"
        );
    }
}
