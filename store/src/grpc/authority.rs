//! Accepting a full URL as the HTTP/2 `:authority` on the client port, as etcd does.
//!
//! # Why
//! etcdctl 3.4 dials its Maintenance calls (`endpoint status`, `endpoint hashkv`, `snapshot
//! save`, `move-leader`) as `passthrough:///<endpoint>`. When the endpoint carries a scheme —
//! always with `--cluster`, which takes the client URLs from the member list, and whenever a user
//! writes `--endpoints=http://127.0.0.1:2379` — grpc-go sends the whole URL,
//! `http://127.0.0.1:2379`, as the `:authority` pseudo-header. etcd's server (grpc-go) accepts
//! it. Ours is tonic on hyper on `h2`, and `h2` answers a request whose authority does not parse
//! with `RST_STREAM(PROTOCOL_ERROR)` before tonic ever sees it, so `etcdctl
//! --endpoints=http://... endpoint status` failed while `get` worked. Nothing above `h2` can
//! change that, so the fix sits below it: in the byte stream of each accepted connection.
//!
//! # How
//! [`AuthorityFix`] wraps an accepted connection. Writes pass through untouched. Reads are
//! followed as HTTP/2: the client preface, then frames by their 9-byte headers. Every frame other
//! than a header block (HEADERS plus its CONTINUATIONs) passes through byte for byte and is never
//! copied: bytes are read straight into the reader's buffer and only the frame headers are looked
//! at. Each header block is HPACK-decoded with a decoder that mirrors the client's encoder
//! (dynamic table, size updates, Huffman). While no block has needed a change the blocks also
//! pass through untouched, so `h2`'s own decoder stays in step with the client. The first block
//! whose `:authority` is a URL is rewritten: the authority becomes the URL's `host:port`, and the
//! block is re-encoded as literals *without indexing* (no Huffman), split into a HEADERS frame
//! (END_STREAM kept; padding and priority dropped) and CONTINUATION frames of at most 16,384
//! bytes, `h2`'s default (and hyper's) SETTINGS_MAX_FRAME_SIZE. From then on every block of that
//! connection is re-encoded the same way: literals never touch `h2`'s dynamic table, so the
//! entries it already has are never referenced again and cannot disagree with the client's.
//!
//! The HPACK decoder is written here, with RFC 7541's static table and Huffman code lengths (the
//! code is canonical, so the lengths define it). The crates that decode HPACK were each unfit for
//! a per-request path: the original `hpack` and its maintained fork `loona-hpack` rebuild a
//! hash-map Huffman table for every string (about 30 µs per Huffman-coded value, and grpc-go
//! sends a fresh `grpc-timeout` with every call); `httlib-hpack` panics on a truncated integer;
//! `hpack_codec` mistakes a block whose first byte has bit 5 set for a table size update.
//!
//! # Bounds and failures
//! A header block is held only until it is complete, at most [`MAX_BLOCK`] bytes of frames, and
//! may decode to at most [`MAX_DECODED`] bytes (RFC 7541 sizing: name + value + 32 a field).
//! Anything this module does not understand — no HTTP/2 preface (HTTP/1, garbage), a frame over
//! the frame-size limit, a CONTINUATION out of sequence, an HPACK error, a block over the bounds,
//! a connection that ends mid-block — makes it step aside while nothing has been rewritten yet:
//! the bytes go on untouched and `h2` answers exactly as it did before this module existed. Once
//! a block has been rewritten, `h2`'s table no longer matches the client's, so such a fault ends
//! the connection with an I/O error instead (a frame over the size limit still goes to `h2`,
//! which refuses it before decoding anything).
//!
//! # Limitation: TLS
//! On an `https` client URL tonic terminates TLS itself, on top of the connection it is handed,
//! so this layer would see ciphertext: it is installed only on plaintext listeners, and a client
//! that sends a URL as the authority over TLS still gets `PROTOCOL_ERROR`.

use std::fmt;
use std::io;
use std::mem;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_stream::{Stream, StreamExt};
use tonic::transport::server::Connected;

/// What every HTTP/2 client sends first.
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER_LEN: usize = 9;
/// `h2`'s default SETTINGS_MAX_FRAME_SIZE, which hyper's server keeps: no frame we write is
/// larger, and a header-block frame the client sends larger than this is refused by `h2` anyway.
pub const MAX_FRAME: usize = 16_384;
/// Most bytes of frames (headers included) one header block may take while it is held.
pub const MAX_BLOCK: usize = 64 * 1024;
/// Most decoded bytes (name + value + 32 a field) one header block may hold.
pub const MAX_DECODED: usize = 64 * 1024;
/// SETTINGS_HEADER_TABLE_SIZE as `h2` announces it (the default): the client's HPACK table may
/// not grow past this.
const HEADER_TABLE_SIZE: usize = 4096;
/// Below this much room in the reader's buffer, reads go through a small buffer of our own, so a
/// frame header can always be seen whole.
const MIN_DIRECT: usize = 64;
const BOUNCE: usize = 1024;
/// Scratch buffers larger than this are released after use instead of kept per connection.
const KEEP_CAPACITY: usize = 16 * 1024;

const DATA_HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;

/// Wraps each accepted connection of `incoming` in [`AuthorityFix`]; `plaintext` false (a TLS
/// listener) leaves the bytes alone.
pub fn fix_incoming<I, S, E>(incoming: I, plaintext: bool) -> impl Stream<Item = Result<AuthorityFix<S>, E>>
where
    I: Stream<Item = Result<S, E>>,
{
    incoming.map(move |accepted| accepted.map(|stream| AuthorityFix::new(stream, plaintext)))
}

/// One client connection whose inbound HTTP/2 header blocks get a URL `:authority` rewritten to
/// `host:port`. See the module documentation.
pub struct AuthorityFix<S> {
    inner: S,
    rx: Inbound,
}

impl<S> AuthorityFix<S> {
    /// `active` false passes every byte through untouched (for TLS listeners).
    pub fn new(inner: S, active: bool) -> Self {
        AuthorityFix { inner, rx: Inbound::new(active) }
    }
}

impl<S: fmt::Debug> fmt::Debug for AuthorityFix<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorityFix").field("inner", &self.inner).field("rewriting", &self.rx.rewriting).finish()
    }
}

impl<S: Connected> Connected for AuthorityFix<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFix<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.rx.phase == Phase::Raw && this.rx.pending_out.is_empty() && this.rx.pending_in.is_empty() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        if buf.remaining() >= MIN_DIRECT {
            return this.poll_read_direct(cx, buf);
        }
        let mut bounce = [0u8; BOUNCE];
        let mut small = ReadBuf::new(&mut bounce);
        match this.poll_read_direct(cx, &mut small) {
            Poll::Ready(Ok(())) => {
                let got = small.filled();
                let n = got.len().min(buf.remaining());
                buf.put_slice(&got[..n]);
                this.rx.pending_out.push_front(&got[n..]);
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<S: AsyncRead + Unpin> AuthorityFix<S> {
    /// One read into `buf` (at least [`MIN_DIRECT`] bytes of room): processed output first, then
    /// input already read but not yet processed, then the socket.
    fn poll_read_direct(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            if !self.rx.pending_out.is_empty() {
                self.rx.pending_out.take_into(buf);
                return Poll::Ready(Ok(()));
            }
            let start = buf.filled().len();
            let copied = self.rx.pending_in.take_into(buf);
            let mut waiting = false;
            if self.rx.pending_in.is_empty() && buf.remaining() > 0 && !self.rx.eof {
                let before = buf.filled().len();
                match Pin::new(&mut self.inner).poll_read(cx, buf) {
                    Poll::Ready(Ok(())) => {
                        if buf.filled().len() == before {
                            self.rx.eof = true;
                        }
                    }
                    Poll::Ready(Err(error)) => {
                        buf.set_filled(start);
                        return Poll::Ready(Err(error));
                    }
                    Poll::Pending if copied == 0 => return Poll::Pending,
                    Poll::Pending => waiting = true,
                }
            }
            if let Err(error) = self.rx.process(buf, start) {
                buf.set_filled(start);
                return Poll::Ready(Err(error));
            }
            if buf.filled().len() > start {
                return Poll::Ready(Ok(()));
            }
            if !self.rx.pending_out.is_empty() {
                continue;
            }
            if waiting {
                return Poll::Pending;
            }
            if self.rx.eof && self.rx.pending_in.is_empty() {
                return Poll::Ready(Ok(()));
            }
            // The bytes went into a header block still being held: read on.
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// This many bytes of the client preface matched so far.
    Preface(usize),
    /// At a frame boundary, or inside a pass-through frame's payload (`skip`).
    Frames,
    /// Holding the frames of a header block that continues in bytes not yet read.
    Block,
    /// Not following the stream (not HTTP/2, or stepped aside): every byte passes untouched.
    Raw,
}

/// Why a header block could not be handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// A HEADERS or CONTINUATION frame over [`MAX_FRAME`]: `h2` refuses it on its own.
    FrameSize,
    /// Another frame where a CONTINUATION of the block must come.
    Sequence,
    /// Over [`MAX_BLOCK`] or [`MAX_DECODED`].
    TooLarge,
    /// Bad padding or an HPACK decoding error.
    Malformed,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fault::FrameSize => "header block frame over the frame size limit",
            Fault::Sequence => "header block interrupted by another frame",
            Fault::TooLarge => "header block over the size limit",
            Fault::Malformed => "malformed header block",
        })
    }
}

/// The inbound (client→server) side of one connection.
struct Inbound {
    phase: Phase,
    /// Payload bytes of the current pass-through frame not yet seen.
    skip: usize,
    /// Bytes read but not processed yet (a frame header cut by a read, or bytes moved out of the
    /// reader's buffer to make room for a longer rewritten block).
    pending_in: Spool,
    /// Processed bytes that did not fit into the reader's buffer; handed out first.
    pending_out: Spool,
    /// The frames of a header block that spans reads.
    block: Vec<u8>,
    scan: BlockScan,
    /// The fragments of a multi-frame block, joined.
    fragment: Vec<u8>,
    /// The block re-encoded (HPACK).
    encoded: Vec<u8>,
    /// The block re-encoded, as frames.
    framed: Vec<u8>,
    decoder: hpack::Decoder,
    /// A block has been rewritten: every later block must be too.
    rewriting: bool,
    eof: bool,
}

impl Inbound {
    fn new(active: bool) -> Self {
        Inbound {
            phase: if active { Phase::Preface(0) } else { Phase::Raw },
            skip: 0,
            pending_in: Spool::default(),
            pending_out: Spool::default(),
            block: Vec::new(),
            scan: BlockScan::default(),
            fragment: Vec::new(),
            encoded: Vec::new(),
            framed: Vec::new(),
            decoder: hpack::Decoder::new(HEADER_TABLE_SIZE),
            rewriting: false,
            eof: false,
        }
    }

    /// Follows the bytes `buf.filled()[start..]` that just arrived, rewriting header blocks in
    /// place. Bytes it cannot judge yet leave the buffer for `pending_in` or `block`.
    fn process(&mut self, buf: &mut ReadBuf<'_>, start: usize) -> io::Result<()> {
        let mut p = start;
        loop {
            let end = buf.filled().len();
            match self.phase {
                Phase::Raw => return Ok(()),
                Phase::Preface(seen) => {
                    if p >= end {
                        return Ok(());
                    }
                    let n = (PREFACE.len() - seen).min(end - p);
                    if buf.filled()[p..p + n] != PREFACE[seen..seen + n] {
                        self.phase = Phase::Raw;
                        return Ok(());
                    }
                    p += n;
                    self.phase = if seen + n == PREFACE.len() { Phase::Frames } else { Phase::Preface(seen + n) };
                }
                Phase::Frames => {
                    if self.skip > 0 {
                        let n = self.skip.min(end - p);
                        p += n;
                        self.skip -= n;
                        if self.skip > 0 {
                            return Ok(());
                        }
                    }
                    if p >= end {
                        return Ok(());
                    }
                    if end - p < FRAME_HEADER_LEN {
                        if self.eof {
                            self.phase = Phase::Raw;
                        } else {
                            self.pending_in.push_front(&buf.filled()[p..end]);
                            buf.set_filled(p);
                        }
                        return Ok(());
                    }
                    let head = &buf.filled()[p..p + FRAME_HEADER_LEN];
                    if head[3] != DATA_HEADERS {
                        self.skip = frame_len(head);
                        p += FRAME_HEADER_LEN;
                        continue;
                    }
                    self.scan = BlockScan::default();
                    match self.scan.feed(&buf.filled()[p..end]) {
                        Err(fault) => return self.step_aside(fault),
                        Ok((n, true)) => match self.handle_block(&buf.filled()[p..p + n]) {
                            Err(fault) => return self.step_aside(fault),
                            Ok(false) => p += n,
                            Ok(true) => {
                                let framed = mem::take(&mut self.framed);
                                let next = self.splice(buf, p, p + n, &framed);
                                self.framed = framed;
                                trim(&mut self.framed);
                                match next {
                                    Some(next) => p = next,
                                    None => return Ok(()),
                                }
                            }
                        },
                        Ok((_, false)) => {
                            if self.eof {
                                return self.end_mid_block(buf, p);
                            }
                            self.block.extend_from_slice(&buf.filled()[p..end]);
                            buf.set_filled(p);
                            self.phase = Phase::Block;
                            return Ok(());
                        }
                    }
                }
                Phase::Block => {
                    let fed = self.scan.feed(&buf.filled()[p..end]);
                    match fed {
                        Err(fault) => {
                            if !self.rewriting || fault == Fault::FrameSize {
                                // The held frames go back, in front of what follows them.
                                let held = mem::take(&mut self.block);
                                let _ = self.splice(buf, p, p, &held);
                                self.block = held;
                            }
                            self.block.clear();
                            trim(&mut self.block);
                            return self.step_aside(fault);
                        }
                        Ok((n, false)) => {
                            self.block.extend_from_slice(&buf.filled()[p..p + n]);
                            buf.set_filled(p);
                            if self.eof {
                                return self.end_mid_block(buf, p);
                            }
                            return Ok(());
                        }
                        Ok((n, true)) => {
                            self.block.extend_from_slice(&buf.filled()[p..p + n]);
                            let held = mem::take(&mut self.block);
                            let handled = self.handle_block(&held);
                            let next = match handled {
                                Err(fault) => {
                                    if !self.rewriting {
                                        let _ = self.splice(buf, p, p + n, &held);
                                    }
                                    self.block = held;
                                    self.block.clear();
                                    trim(&mut self.block);
                                    return self.step_aside(fault);
                                }
                                Ok(false) => self.splice(buf, p, p + n, &held),
                                Ok(true) => {
                                    let framed = mem::take(&mut self.framed);
                                    let next = self.splice(buf, p, p + n, &framed);
                                    self.framed = framed;
                                    trim(&mut self.framed);
                                    next
                                }
                            };
                            self.block = held;
                            self.block.clear();
                            trim(&mut self.block);
                            self.phase = Phase::Frames;
                            match next {
                                Some(next) => p = next,
                                None => return Ok(()),
                            }
                        }
                    }
                }
            }
        }
    }

    /// The connection ended inside a header block at `p` (the held part is in `block`): hand the
    /// partial block on as it came, unless blocks are being rewritten (then `h2` would read it
    /// against a table that no longer matches the client's: drop it).
    fn end_mid_block(&mut self, buf: &mut ReadBuf<'_>, p: usize) -> io::Result<()> {
        let end = buf.filled().len();
        if !self.rewriting && !self.block.is_empty() {
            let held = mem::take(&mut self.block);
            let _ = self.splice(buf, p, end, &held);
            self.block = held;
        } else if self.rewriting {
            buf.set_filled(p);
        }
        self.block.clear();
        trim(&mut self.block);
        self.phase = Phase::Raw;
        Ok(())
    }

    /// Stops following the stream after `fault`. Before any rewrite the bytes simply go on and
    /// `h2` judges them as always; after one, the connection fails (except for an oversized
    /// frame, which `h2` refuses before decoding anything).
    fn step_aside(&mut self, fault: Fault) -> io::Result<()> {
        self.phase = Phase::Raw;
        if self.rewriting && fault != Fault::FrameSize {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("HTTP/2 :authority fix: {fault}")));
        }
        Ok(())
    }

    /// Replaces `buf.filled()[a..b]` with `out`, keeping the bytes after `b` after it. Returns
    /// where processing continues, or None when the buffer had no room: then `out` waits in
    /// `pending_out` and the bytes after `b` in `pending_in`, and this read ends at `a`.
    fn splice(&mut self, buf: &mut ReadBuf<'_>, a: usize, b: usize, out: &[u8]) -> Option<usize> {
        let end = buf.filled().len();
        let removed = b - a;
        if out.len() <= removed {
            let filled = buf.filled_mut();
            filled[a..a + out.len()].copy_from_slice(out);
            filled.copy_within(b..end, a + out.len());
            buf.set_filled(end - (removed - out.len()));
            return Some(a + out.len());
        }
        let grow = out.len() - removed;
        if grow <= buf.remaining() {
            buf.initialize_unfilled_to(grow);
            buf.advance(grow);
            let filled = buf.filled_mut();
            filled.copy_within(b..end, b + grow);
            filled[a..a + out.len()].copy_from_slice(out);
            return Some(a + out.len());
        }
        self.pending_in.push_front(&buf.filled()[b..end]);
        self.pending_out.push_back(out);
        buf.set_filled(a);
        None
    }

    /// Decodes one complete header block (`frames`: its HEADERS and CONTINUATION frames). Returns
    /// true when it must be replaced by `framed`.
    fn handle_block(&mut self, frames: &[u8]) -> Result<bool, Fault> {
        let head = frames.get(..FRAME_HEADER_LEN).ok_or(Fault::Malformed)?;
        let first_len = frame_len(head);
        let flags = head[4];
        let stream = [head[5], head[6], head[7], head[8]];
        let payload = frames.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + first_len).ok_or(Fault::Malformed)?;
        let first = header_fragment(payload, flags)?;
        let block: &[u8] = if frames.len() == FRAME_HEADER_LEN + first_len {
            first
        } else {
            self.fragment.clear();
            self.fragment.extend_from_slice(first);
            let mut at = FRAME_HEADER_LEN + first_len;
            while at < frames.len() {
                let head = frames.get(at..at + FRAME_HEADER_LEN).ok_or(Fault::Malformed)?;
                let len = frame_len(head);
                let payload = frames.get(at + FRAME_HEADER_LEN..at + FRAME_HEADER_LEN + len).ok_or(Fault::Malformed)?;
                self.fragment.extend_from_slice(payload);
                at += FRAME_HEADER_LEN + len;
            }
            &self.fragment
        };

        let encoded = &mut self.encoded;
        encoded.clear();
        let mut changed = false;
        let mut list_size = 0usize;
        let decoded = self.decoder.decode(block, |field| {
            list_size += field.name.len() + field.value.len() + 32;
            if list_size > MAX_DECODED {
                return Err(Fault::TooLarge);
            }
            let mut value = field.value;
            if field.name == b":authority"
                && let Some(host) = url_authority(value)
            {
                value = host;
                changed = true;
            }
            hpack::encode_literal(encoded, field.static_name, field.name, value, field.never_indexed);
            Ok(())
        });
        trim(&mut self.fragment);
        decoded?;
        if !changed && !self.rewriting {
            return Ok(false);
        }
        self.rewriting = true;
        self.framed.clear();
        let mut chunks = self.encoded.chunks(MAX_FRAME).peekable();
        let mut kind = DATA_HEADERS;
        let mut first_flags = flags & FLAG_END_STREAM;
        if chunks.peek().is_none() {
            push_frame(&mut self.framed, kind, first_flags | FLAG_END_HEADERS, stream, &[]);
        }
        while let Some(chunk) = chunks.next() {
            let last = if chunks.peek().is_none() { FLAG_END_HEADERS } else { 0 };
            push_frame(&mut self.framed, kind, first_flags | last, stream, chunk);
            kind = CONTINUATION;
            first_flags = 0;
        }
        trim(&mut self.encoded);
        Ok(true)
    }
}

/// Finds where a header block ends, frame by frame, across reads.
#[derive(Default)]
struct BlockScan {
    started: bool,
    stream: [u8; 4],
    head: [u8; FRAME_HEADER_LEN],
    head_len: usize,
    /// Payload bytes of the current frame not yet seen.
    left: usize,
    /// The current frame carries END_HEADERS.
    last: bool,
    total: usize,
}

impl BlockScan {
    /// Takes the bytes of `data` that belong to the block. Returns how many, and whether the
    /// block is now complete.
    fn feed(&mut self, data: &[u8]) -> Result<(usize, bool), Fault> {
        let mut i = 0;
        loop {
            if self.left > 0 {
                let n = self.left.min(data.len() - i);
                i += n;
                self.left -= n;
                if self.left > 0 {
                    return Ok((i, false));
                }
            }
            if self.started && self.last {
                return Ok((i, true));
            }
            while self.head_len < FRAME_HEADER_LEN && i < data.len() {
                self.head[self.head_len] = data[i];
                self.head_len += 1;
                i += 1;
            }
            if self.head_len < FRAME_HEADER_LEN {
                return Ok((i, false));
            }
            self.head_len = 0;
            let len = frame_len(&self.head);
            let stream = [self.head[5], self.head[6], self.head[7], self.head[8]];
            if self.started {
                if self.head[3] != CONTINUATION || stream != self.stream {
                    return Err(Fault::Sequence);
                }
            } else {
                self.started = true;
                self.stream = stream;
            }
            if len > MAX_FRAME {
                return Err(Fault::FrameSize);
            }
            self.total += FRAME_HEADER_LEN + len;
            if self.total > MAX_BLOCK {
                return Err(Fault::TooLarge);
            }
            self.last = self.head[4] & FLAG_END_HEADERS != 0;
            self.left = len;
        }
    }
}

/// The header block fragment of a HEADERS frame's payload: without padding and priority.
fn header_fragment(payload: &[u8], flags: u8) -> Result<&[u8], Fault> {
    let mut from = 0;
    let mut pad = 0;
    if flags & FLAG_PADDED != 0 {
        pad = usize::from(*payload.first().ok_or(Fault::Malformed)?);
        from = 1;
    }
    if flags & FLAG_PRIORITY != 0 {
        from += 5;
    }
    let to = payload.len().checked_sub(pad).ok_or(Fault::Malformed)?;
    payload.get(from..to).ok_or(Fault::Malformed)
}

fn frame_len(head: &[u8]) -> usize {
    (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2])
}

fn push_frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: [u8; 4], payload: &[u8]) {
    let len = payload.len();
    out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
    out.extend_from_slice(&stream);
    out.extend_from_slice(payload);
}

/// `host:port` from an authority that is a URL (`scheme://host:port[/...]`); None for anything
/// else, which is left as it is.
fn url_authority(value: &[u8]) -> Option<&[u8]> {
    let sep = value.windows(3).position(|w| w == b"://")?;
    let scheme = &value[..sep];
    let valid_scheme = scheme.first().is_some_and(u8::is_ascii_alphabetic)
        && scheme.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'+' || c == b'-' || c == b'.');
    if !valid_scheme {
        return None;
    }
    let rest = &value[sep + 3..];
    let end = rest.iter().position(|&c| c == b'/' || c == b'?' || c == b'#').unwrap_or(rest.len());
    let host = &rest[..end];
    (!host.is_empty()).then_some(host)
}

fn trim(buf: &mut Vec<u8>) {
    if buf.capacity() > KEEP_CAPACITY {
        *buf = Vec::new();
    }
}

/// Bytes waiting their turn, consumed from the front.
#[derive(Default)]
struct Spool {
    buf: Vec<u8>,
    pos: usize,
}

impl Spool {
    fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn take_into(&mut self, dst: &mut ReadBuf<'_>) -> usize {
        let n = (self.buf.len() - self.pos).min(dst.remaining());
        dst.put_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        if self.is_empty() {
            self.buf.clear();
            self.pos = 0;
            trim(&mut self.buf);
        }
        n
    }

    fn push_back(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    fn push_front(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if bytes.len() <= self.pos {
            self.pos -= bytes.len();
            self.buf[self.pos..self.pos + bytes.len()].copy_from_slice(bytes);
            return;
        }
        let mut joined = Vec::with_capacity(bytes.len() + self.buf.len() - self.pos);
        joined.extend_from_slice(bytes);
        joined.extend_from_slice(&self.buf[self.pos..]);
        self.buf = joined;
        self.pos = 0;
    }
}

/// HPACK (RFC 7541): the decoder, and the one representation we encode (literal without
/// indexing, or never indexed, with no Huffman coding).
mod hpack {
    use std::collections::VecDeque;

    use super::Fault;

    /// One decoded field, borrowed for the length of the callback.
    pub struct Field<'a> {
        pub name: &'a [u8],
        pub value: &'a [u8],
        /// The name's index in the static table, when the client referred to it by that index.
        pub static_name: Option<usize>,
        /// Sent as "never indexed": kept so on re-encoding.
        pub never_indexed: bool,
    }

    struct Entry {
        /// Name then value.
        bytes: Box<[u8]>,
        name_len: usize,
    }

    pub struct Decoder {
        /// Newest first.
        table: VecDeque<Entry>,
        size: usize,
        max_size: usize,
        /// The most a size update may ask for: the SETTINGS_HEADER_TABLE_SIZE the server sent.
        limit: usize,
        name_buf: Vec<u8>,
        value_buf: Vec<u8>,
    }

    impl Decoder {
        pub fn new(limit: usize) -> Self {
            Decoder {
                table: VecDeque::new(),
                size: 0,
                max_size: limit,
                limit,
                name_buf: Vec::new(),
                value_buf: Vec::new(),
            }
        }

        /// Decodes one whole header block, calling `emit` for each field in order. On an error
        /// the table may be part-way updated: the caller stops decoding this connection.
        pub fn decode(
            &mut self,
            block: &[u8],
            mut emit: impl FnMut(Field<'_>) -> Result<(), Fault>,
        ) -> Result<(), Fault> {
            let mut at = 0;
            let mut first = true;
            while at < block.len() {
                let byte = block[at];
                if byte & 0x80 != 0 {
                    let index = integer(block, &mut at, 7)?;
                    let (name, value) = self.get(index)?;
                    emit(Field { name, value, static_name: static_index(index), never_indexed: false })?;
                } else if byte & 0x40 != 0 {
                    let index = integer(block, &mut at, 6)?;
                    let entry = {
                        let name = match index {
                            0 => string(block, &mut at, &mut self.name_buf)?,
                            _ => get(&self.table, index)?.0,
                        };
                        let value = string(block, &mut at, &mut self.value_buf)?;
                        emit(Field { name, value, static_name: static_index(index), never_indexed: false })?;
                        let mut bytes = Vec::with_capacity(name.len() + value.len());
                        bytes.extend_from_slice(name);
                        bytes.extend_from_slice(value);
                        Entry { bytes: bytes.into_boxed_slice(), name_len: name.len() }
                    };
                    self.insert(entry);
                } else if byte & 0x20 != 0 {
                    // A dynamic table size update: only at the start of a block.
                    if !first {
                        return Err(Fault::Malformed);
                    }
                    let size = integer(block, &mut at, 5)?;
                    if size > self.limit {
                        return Err(Fault::Malformed);
                    }
                    self.max_size = size;
                    self.evict(0);
                    continue;
                } else {
                    let never_indexed = byte & 0x10 != 0;
                    let index = integer(block, &mut at, 4)?;
                    let name = match index {
                        0 => string(block, &mut at, &mut self.name_buf)?,
                        _ => get(&self.table, index)?.0,
                    };
                    let value = string(block, &mut at, &mut self.value_buf)?;
                    emit(Field { name, value, static_name: static_index(index), never_indexed })?;
                }
                first = false;
            }
            super::trim(&mut self.name_buf);
            super::trim(&mut self.value_buf);
            Ok(())
        }

        fn get(&self, index: usize) -> Result<(&[u8], &[u8]), Fault> {
            get(&self.table, index)
        }

        fn insert(&mut self, entry: Entry) {
            let size = entry.bytes.len() + 32;
            if size > self.max_size {
                // RFC 7541 4.4: an entry larger than the table empties it and is not added.
                self.table.clear();
                self.size = 0;
                return;
            }
            self.evict(size);
            self.size += size;
            self.table.push_front(entry);
        }

        /// Evicts the oldest entries until `room` more bytes fit.
        fn evict(&mut self, room: usize) {
            while self.size + room > self.max_size {
                match self.table.pop_back() {
                    Some(old) => self.size -= old.bytes.len() + 32,
                    None => {
                        self.size = 0;
                        break;
                    }
                }
            }
        }
    }

    fn get(table: &VecDeque<Entry>, index: usize) -> Result<(&[u8], &[u8]), Fault> {
        if index == 0 {
            return Err(Fault::Malformed);
        }
        if let Some(&(name, value)) = STATIC_TABLE.get(index - 1) {
            return Ok((name, value));
        }
        let entry = table.get(index - 1 - STATIC_TABLE.len()).ok_or(Fault::Malformed)?;
        let (name, value) = entry.bytes.split_at(entry.name_len);
        Ok((name, value))
    }

    fn static_index(index: usize) -> Option<usize> {
        (1..=STATIC_TABLE.len()).contains(&index).then_some(index)
    }

    /// An integer with an `prefix`-bit prefix (RFC 7541 5.1), at most 4 continuation bytes.
    fn integer(src: &[u8], at: &mut usize, prefix: u32) -> Result<usize, Fault> {
        let max = (1usize << prefix) - 1;
        let first = *src.get(*at).ok_or(Fault::Malformed)?;
        *at += 1;
        let mut value = usize::from(first) & max;
        if value < max {
            return Ok(value);
        }
        for shift in [0, 7, 14, 21] {
            let byte = *src.get(*at).ok_or(Fault::Malformed)?;
            *at += 1;
            value += usize::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Fault::Malformed)
    }

    /// A string literal (RFC 7541 5.2): borrowed from `src`, or Huffman-decoded into `scratch`.
    fn string<'a>(src: &'a [u8], at: &mut usize, scratch: &'a mut Vec<u8>) -> Result<&'a [u8], Fault> {
        let huffman = src.get(*at).ok_or(Fault::Malformed)? & 0x80 != 0;
        let len = integer(src, at, 7)?;
        let end = at.checked_add(len).ok_or(Fault::Malformed)?;
        let raw = src.get(*at..end).ok_or(Fault::Malformed)?;
        *at = end;
        if !huffman {
            return Ok(raw);
        }
        scratch.clear();
        huffman_decode(raw, scratch)?;
        Ok(scratch)
    }

    /// Appends a literal field without indexing (or never indexed) with plain strings.
    pub fn encode_literal(out: &mut Vec<u8>, static_name: Option<usize>, name: &[u8], value: &[u8], never: bool) {
        let flag = if never { 0x10 } else { 0x00 };
        match static_name {
            Some(index) => encode_integer(out, flag, 4, index),
            None => {
                out.push(flag);
                encode_integer(out, 0, 7, name.len());
                out.extend_from_slice(name);
            }
        }
        encode_integer(out, 0, 7, value.len());
        out.extend_from_slice(value);
    }

    fn encode_integer(out: &mut Vec<u8>, flags: u8, prefix: u32, mut value: usize) {
        let max = (1usize << prefix) - 1;
        if value < max {
            out.push(flags | value as u8);
            return;
        }
        out.push(flags | max as u8);
        value -= max;
        while value >= 0x80 {
            out.push((value & 0x7f) as u8 | 0x80);
            value >>= 7;
        }
        out.push(value as u8);
    }

    /// RFC 7541 Appendix A.
    pub(super) const STATIC_TABLE: [(&[u8], &[u8]); 61] = [
        (b":authority", b""),
        (b":method", b"GET"),
        (b":method", b"POST"),
        (b":path", b"/"),
        (b":path", b"/index.html"),
        (b":scheme", b"http"),
        (b":scheme", b"https"),
        (b":status", b"200"),
        (b":status", b"204"),
        (b":status", b"206"),
        (b":status", b"304"),
        (b":status", b"400"),
        (b":status", b"404"),
        (b":status", b"500"),
        (b"accept-charset", b""),
        (b"accept-encoding", b"gzip, deflate"),
        (b"accept-language", b""),
        (b"accept-ranges", b""),
        (b"accept", b""),
        (b"access-control-allow-origin", b""),
        (b"age", b""),
        (b"allow", b""),
        (b"authorization", b""),
        (b"cache-control", b""),
        (b"content-disposition", b""),
        (b"content-encoding", b""),
        (b"content-language", b""),
        (b"content-length", b""),
        (b"content-location", b""),
        (b"content-range", b""),
        (b"content-type", b""),
        (b"cookie", b""),
        (b"date", b""),
        (b"etag", b""),
        (b"expect", b""),
        (b"expires", b""),
        (b"from", b""),
        (b"host", b""),
        (b"if-match", b""),
        (b"if-modified-since", b""),
        (b"if-none-match", b""),
        (b"if-range", b""),
        (b"if-unmodified-since", b""),
        (b"last-modified", b""),
        (b"link", b""),
        (b"location", b""),
        (b"max-forwards", b""),
        (b"proxy-authenticate", b""),
        (b"proxy-authorization", b""),
        (b"range", b""),
        (b"referer", b""),
        (b"refresh", b""),
        (b"retry-after", b""),
        (b"server", b""),
        (b"set-cookie", b""),
        (b"strict-transport-security", b""),
        (b"transfer-encoding", b""),
        (b"user-agent", b""),
        (b"vary", b""),
        (b"via", b""),
        (b"www-authenticate", b""),
    ];

    /// Code length in bits of each symbol (0..=255, then EOS as 256) of RFC 7541 Appendix B.
    /// The code is canonical: codes of one length are consecutive in symbol order, and each
    /// length's first code follows the last code of the length before. So these lengths are the
    /// whole code.
    pub(super) const CODE_LENGTHS: [u8; 257] = [
        13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, // 0x00
        28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, // 0x10
        6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, // 0x20
        5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, // 0x30
        13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, // 0x40
        7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, // 0x50
        15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, // 0x60
        6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, // 0x70
        20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, // 0x80
        24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, // 0x90
        22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, // 0xa0
        21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, // 0xb0
        26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, // 0xc0
        19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, // 0xd0
        20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, // 0xe0
        26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, // 0xf0
        30, // EOS
    ];

    const MAX_LEN: usize = 30;
    const EOS: u16 = 256;

    /// The canonical code in decoding form: for each length, the first code, the exclusive
    /// upper bound of all codes up to that length (left-aligned in 32 bits), and where its
    /// symbols start in `symbols`.
    pub(super) struct Canonical {
        first: [u32; MAX_LEN + 1],
        limit: [u64; MAX_LEN + 1],
        offset: [u16; MAX_LEN + 1],
        symbols: [u16; 257],
    }

    pub(super) const CANONICAL: Canonical = canonical();

    const fn canonical() -> Canonical {
        let mut count = [0u16; MAX_LEN + 1];
        let mut s = 0;
        while s < 257 {
            count[CODE_LENGTHS[s] as usize] += 1;
            s += 1;
        }
        let mut c =
            Canonical { first: [0; MAX_LEN + 1], limit: [0; MAX_LEN + 1], offset: [0; MAX_LEN + 1], symbols: [0; 257] };
        let mut code: u64 = 0;
        let mut offset: u16 = 0;
        let mut len = 1;
        while len <= MAX_LEN {
            c.first[len] = code as u32;
            c.offset[len] = offset;
            code += count[len] as u64;
            offset += count[len];
            c.limit[len] = code << (32 - len);
            code <<= 1;
            len += 1;
        }
        // Symbols ordered by (length, symbol).
        let mut next = c.offset;
        let mut s = 0;
        while s < 257 {
            let len = CODE_LENGTHS[s] as usize;
            c.symbols[next[len] as usize] = s as u16;
            next[len] += 1;
            s += 1;
        }
        c
    }

    impl Canonical {
        /// The code of `symbol` and its length (for tests).
        #[cfg(test)]
        pub fn code(&self, symbol: usize) -> (u32, usize) {
            let len = CODE_LENGTHS[symbol] as usize;
            let mut rank = 0;
            while self.symbols[self.offset[len] as usize + rank] as usize != symbol {
                rank += 1;
            }
            (self.first[len] + rank as u32, len)
        }
    }

    /// Decodes a Huffman-coded string (RFC 7541 5.2): the padding must be fewer than 8 bits, all
    /// ones, and EOS must not appear.
    pub(super) fn huffman_decode(src: &[u8], out: &mut Vec<u8>) -> Result<(), Fault> {
        let code = &CANONICAL;
        // The next bits, left-aligned; `bits` of them are valid.
        let mut acc: u64 = 0;
        let mut bits: usize = 0;
        let mut at = 0;
        out.reserve(src.len() * 8 / 5);
        loop {
            while bits <= 56 && at < src.len() {
                acc |= u64::from(src[at]) << (56 - bits);
                bits += 8;
                at += 1;
            }
            if bits == 0 {
                return Ok(());
            }
            // The top 32 bits, with ones after the valid bits (ones are EOS's prefix).
            let filler = if bits >= 64 { 0 } else { u64::MAX >> bits };
            let window = (acc | filler) >> 32;
            let mut len = 5;
            while len < MAX_LEN && window >= code.limit[len] {
                len += 1;
            }
            if window >= code.limit[len] {
                return Err(Fault::Malformed);
            }
            if len > bits {
                // No whole code left: what remains is padding.
                let all_ones = (1u64 << bits) - 1;
                if bits > 7 || (acc >> (64 - bits)) != all_ones {
                    return Err(Fault::Malformed);
                }
                return Ok(());
            }
            let rank = ((window >> (32 - len)) as u32).checked_sub(code.first[len]).ok_or(Fault::Malformed)?;
            let symbol = *code.symbols.get(code.offset[len] as usize + rank as usize).ok_or(Fault::Malformed)?;
            if symbol == EOS {
                return Err(Fault::Malformed);
            }
            out.push(symbol as u8);
            acc <<= len;
            bits -= len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// The first HEADERS block etcdctl 3.4.23 (grpc-go 1.33.3) sent for `--endpoints=
    /// http://127.0.0.1:23791 endpoint status`, captured on the wire: Huffman-coded literals with
    /// incremental indexing, `:authority` = `http://127.0.0.1:23791`.
    const ETCDCTL_BLOCK: &str = "8386459760a924882d9dcb6571afa066a925a87510ac6e48d36a3f41909d29aee30c044eae05c0b86e\
        09975f0f5f8b1d75d0620d263d4c4d65647a8b9acac8b4c7602bb2caecff40027465864d833505b11f40899acac8b24d494f6a7f8669f7\
        9e0b81b7408d25062d495875996ee5b1063d5f03332e34";

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
    }

    /// A Huffman encoder from the same canonical code, for tests only.
    fn huffman_encode(s: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut acc: u64 = 0;
        let mut bits = 0;
        for &b in s {
            let (code, len) = hpack::CANONICAL.code(usize::from(b));
            acc = (acc << len) | u64::from(code);
            bits += len;
            while bits >= 8 {
                out.push((acc >> (bits - 8)) as u8);
                bits -= 8;
            }
        }
        if bits > 0 {
            out.push(((acc << (8 - bits)) as u8) | (0xff >> bits));
        }
        out
    }

    /// A literal field with incremental indexing, new name, Huffman-coded name and value.
    fn huffman_literal(block: &mut Vec<u8>, name: &str, value: &str) {
        block.push(0x40);
        for s in [name, value] {
            let coded = huffman_encode(s.as_bytes());
            assert!(coded.len() < 127);
            block.push(0x80 | coded.len() as u8);
            block.extend_from_slice(&coded);
        }
    }

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        push_frame(&mut f, kind, flags, stream.to_be_bytes(), payload);
        f
    }

    /// Decodes every header block in `wire` (after the preface) with a fresh decoder, the way
    /// `h2` would: returns (frame types in order, the fields of each block, frame sizes ok).
    fn parse(wire: &[u8]) -> (Vec<u8>, Vec<Vec<(String, String)>>) {
        assert!(wire.starts_with(PREFACE), "preface kept");
        let mut at = PREFACE.len();
        let mut kinds = Vec::new();
        let mut blocks = Vec::new();
        let mut decoder = hpack::Decoder::new(HEADER_TABLE_SIZE);
        let mut pending: Vec<u8> = Vec::new();
        while at < wire.len() {
            let head = &wire[at..at + FRAME_HEADER_LEN];
            let len = frame_len(head);
            assert!(len <= MAX_FRAME, "frame of {len} bytes");
            let payload = &wire[at + FRAME_HEADER_LEN..at + FRAME_HEADER_LEN + len];
            kinds.push(head[3]);
            if head[3] == DATA_HEADERS {
                pending = header_fragment(payload, head[4]).expect("fragment").to_vec();
            } else if head[3] == CONTINUATION {
                pending.extend_from_slice(payload);
            }
            if (head[3] == DATA_HEADERS || head[3] == CONTINUATION) && head[4] & FLAG_END_HEADERS != 0 {
                let mut fields = Vec::new();
                decoder
                    .decode(&pending, |f| {
                        fields.push((
                            String::from_utf8_lossy(f.name).into_owned(),
                            String::from_utf8_lossy(f.value).into_owned(),
                        ));
                        Ok(())
                    })
                    .expect("decodes");
                blocks.push(fields);
            }
            at += FRAME_HEADER_LEN + len;
        }
        (kinds, blocks)
    }

    /// (type, flags, length) of each frame after the preface.
    fn frame_heads(wire: &[u8]) -> Vec<(u8, u8, usize)> {
        let mut at = PREFACE.len();
        let mut heads = Vec::new();
        while at < wire.len() {
            let len = frame_len(&wire[at..]);
            heads.push((wire[at + 3], wire[at + 4], len));
            at += FRAME_HEADER_LEN + len;
        }
        heads
    }

    /// A reader that hands out `data` in the given chunk sizes (cycled), answering Pending (and
    /// waking at once) before every other chunk.
    struct Chunked {
        data: Vec<u8>,
        at: usize,
        sizes: Vec<usize>,
        turn: usize,
        stall: bool,
    }

    impl AsyncRead for Chunked {
        fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            this.stall = !this.stall;
            if this.stall && this.turn % 2 == 1 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let size = this.sizes[this.turn % this.sizes.len()];
            this.turn += 1;
            let n = size.min(this.data.len() - this.at).min(buf.remaining());
            buf.put_slice(&this.data[this.at..this.at + n]);
            this.at += n;
            Poll::Ready(Ok(()))
        }
    }

    /// Everything the server side would read from `wire`, sent in chunks of `sizes` and read
    /// with a buffer of `read_size`.
    async fn through(wire: &[u8], sizes: &[usize], read_size: usize) -> io::Result<Vec<u8>> {
        let inner = Chunked { data: wire.to_vec(), at: 0, sizes: sizes.to_vec(), turn: 0, stall: false };
        let mut fix = AuthorityFix::new(inner, true);
        let mut out = Vec::new();
        let mut buf = vec![0u8; read_size];
        loop {
            let n = fix.read(&mut buf).await?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    fn connection(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut wire = PREFACE.to_vec();
        wire.extend_from_slice(&frame(4, 0, 0, &[]));
        for f in frames {
            wire.extend_from_slice(f);
        }
        wire
    }

    fn authority(fields: &[(String, String)]) -> Option<&str> {
        fields.iter().find(|(n, _)| n == ":authority").map(|(_, v)| v.as_str())
    }

    const SIZES: &[&[usize]] = &[&[1 << 20], &[1], &[7], &[3, 50, 1, 9, 200], &[100]];
    const READS: &[usize] = &[1, 5, 63, 64, 100, 8192];

    #[test]
    fn url_authorities_become_host_port() {
        assert_eq!(url_authority(b"http://127.0.0.1:2379"), Some(&b"127.0.0.1:2379"[..]));
        assert_eq!(url_authority(b"https://[::1]:2379/x/y"), Some(&b"[::1]:2379"[..]));
        assert_eq!(url_authority(b"unix+tls://host?q"), Some(&b"host"[..]));
        assert_eq!(url_authority(b"127.0.0.1:2379"), None);
        assert_eq!(url_authority(b"localhost"), None);
        assert_eq!(url_authority(b"http://"), None);
        assert_eq!(url_authority(b"://x"), None);
        assert_eq!(url_authority(b"1http://x"), None);
    }

    #[test]
    fn huffman_matches_rfc_7541_examples() {
        // RFC 7541 C.4.1 and C.4.2.
        for (coded, plain) in [
            ("f1e3c2e5f23a6ba0ab90f4ff", "www.example.com"),
            ("a8eb10649cbf", "no-cache"),
            ("25a849e95ba97d7f", "custom-key"),
            ("25a849e95bb8e8b4bf", "custom-value"),
        ] {
            let mut out = Vec::new();
            hpack::huffman_decode(&unhex(coded), &mut out).expect("decodes");
            assert_eq!(out, plain.as_bytes());
            assert_eq!(huffman_encode(plain.as_bytes()), unhex(coded));
        }
        // A complete code: the last length's bound is 2^32.
        let (eos, len) = hpack::CANONICAL.code(256);
        assert_eq!((eos, len), ((1 << 30) - 1, 30));
    }

    #[test]
    fn huffman_round_trips_every_byte_and_rejects_bad_padding() {
        let all: Vec<u8> = (0..=255).collect();
        for s in [&all[..], b"", b"a", b"http://127.0.0.1:2379", &[0xff, 0, 0xfe, 1]] {
            let mut out = Vec::new();
            hpack::huffman_decode(&huffman_encode(s), &mut out).expect("decodes");
            assert_eq!(out, s);
        }
        let mut out = Vec::new();
        // '0' is 00000: 3 bits of zero padding are not EOS's prefix.
        assert_eq!(hpack::huffman_decode(&[0b0000_0000], &mut out), Err(Fault::Malformed));
        // A whole byte of ones is padding longer than 7 bits.
        assert_eq!(hpack::huffman_decode(&[0x1f, 0xff], &mut out), Err(Fault::Malformed));
        // EOS itself.
        assert_eq!(hpack::huffman_decode(&[0xff, 0xff, 0xff, 0xfc], &mut out), Err(Fault::Malformed));
    }

    #[tokio::test]
    async fn etcdctl_block_gets_host_port_and_dynamic_table_follows() {
        let first = unhex(ETCDCTL_BLOCK);
        // The next request as grpc-go would send it: all fields from the dynamic table (newest
        // first: client-api-version, grpc-timeout, te, user-agent, content-type, :authority,
        // :path) after :method POST and :scheme http.
        let second = vec![0x83, 0x86, 0x80 | 68, 0x80 | 67, 0x80 | 66, 0x80 | 65, 0x80 | 64, 0x80 | 63, 0x80 | 62];
        let data = frame(0, 1, 1, &[0, 0, 0, 0, 0]);
        let wire = connection(&[
            frame(1, FLAG_END_HEADERS, 1, &first),
            data.clone(),
            frame(1, FLAG_END_HEADERS | FLAG_END_STREAM, 3, &second),
        ]);
        for sizes in SIZES {
            for &read in READS {
                let out = through(&wire, sizes, read).await.expect("read");
                let (kinds, blocks) = parse(&out);
                assert_eq!(kinds, [4, 1, 0, 1], "sizes {sizes:?} read {read}");
                assert_eq!(blocks.len(), 2);
                for block in &blocks {
                    assert_eq!(authority(block), Some("127.0.0.1:23791"));
                    assert_eq!(block.len(), 9);
                    assert_eq!(block[2], (":path".into(), "/etcdserverpb.Maintenance/Status".into()));
                    assert_eq!(block[7].0, "grpc-timeout");
                }
                assert!(out.windows(data.len()).any(|w| w == data), "DATA frame untouched");
                let flags: Vec<u8> = frame_heads(&out).iter().map(|h| h.1).collect();
                assert_eq!(flags, [0, FLAG_END_HEADERS, 1, FLAG_END_HEADERS | FLAG_END_STREAM]);
            }
        }
    }

    #[tokio::test]
    async fn valid_authority_passes_through_byte_for_byte() {
        let mut block = vec![0x83, 0x86];
        huffman_literal(&mut block, ":authority", "127.0.0.1:2379");
        huffman_literal(&mut block, ":path", "/etcdserverpb.KV/Range");
        let mut padded = vec![3];
        padded.extend_from_slice(&[0, 0, 0, 0, 16]); // priority
        padded.extend_from_slice(&[0x83, 0x86, 0x80 | 63, 0x80 | 62]);
        padded.extend_from_slice(&[0, 0, 0]);
        let wire = connection(&[
            frame(1, FLAG_END_HEADERS, 1, &block),
            frame(0, 1, 1, &[0; 300]),
            frame(1, FLAG_END_HEADERS | FLAG_PADDED | FLAG_PRIORITY, 3, &padded),
            frame(6, 0, 0, &[1; 8]),
        ]);
        for sizes in SIZES {
            for &read in READS {
                assert_eq!(through(&wire, sizes, read).await.expect("read"), wire, "sizes {sizes:?} read {read}");
            }
        }
    }

    #[tokio::test]
    async fn long_block_in_continuations_is_rewritten_into_bounded_frames() {
        let mut block = vec![0x83, 0x86];
        huffman_literal(&mut block, ":authority", "http://10.0.0.1:2379/");
        // 40 KiB of metadata: the block arrives as HEADERS + CONTINUATIONs of 10,000 bytes.
        for i in 0..40 {
            block.push(0);
            block.push(5);
            block.extend_from_slice(format!("x-m{i:02}").as_bytes());
            block.extend_from_slice(&[0x7f, 0xe9, 0x06]); // length 1000
            block.extend_from_slice(&[b'v'; 1000]);
        }
        let pieces: Vec<&[u8]> = block.chunks(10_000).collect();
        let mut frames = Vec::new();
        for (i, piece) in pieces.iter().enumerate() {
            let kind = if i == 0 { 1 } else { 9 };
            let end_stream = if i == 0 { FLAG_END_STREAM | FLAG_PADDED } else { 0 };
            let end_headers = if i + 1 == pieces.len() { FLAG_END_HEADERS } else { 0 };
            let payload = if i == 0 {
                let mut p = vec![2];
                p.extend_from_slice(piece);
                p.extend_from_slice(&[0, 0]);
                p
            } else {
                piece.to_vec()
            };
            frames.push(frame(kind, end_stream | end_headers, 5, &payload));
        }
        let wire = connection(&frames);
        for sizes in SIZES {
            for &read in [64, 100, 8192, 100_000].iter() {
                let out = through(&wire, sizes, read).await.expect("read");
                let (kinds, blocks) = parse(&out);
                assert_eq!(kinds[..3], [4, 1, 9]);
                assert!(kinds[1..].iter().skip(1).all(|&k| k == 9));
                assert_eq!(blocks.len(), 1);
                assert_eq!(authority(&blocks[0]), Some("10.0.0.1:2379"));
                assert_eq!(blocks[0].len(), 43);
                assert_eq!(blocks[0][42].1.len(), 1000);
                // END_STREAM on the HEADERS frame, END_HEADERS only on the last frame.
                let flags: Vec<u8> = frame_heads(&out).iter().map(|h| h.1).collect();
                assert_eq!(flags, [0, FLAG_END_STREAM, 0, FLAG_END_HEADERS]);
            }
        }
    }

    #[tokio::test]
    async fn non_http2_and_garbage_pass_untouched() {
        let mut x: u32 = 0x9e37_79b9;
        let garbage: Vec<u8> = (0..5000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 24) as u8
            })
            .collect();
        let http1 = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        let mut headers_garbage = PREFACE.to_vec();
        headers_garbage.extend_from_slice(&frame(1, FLAG_END_HEADERS, 1, &garbage[..3000]));
        headers_garbage.extend_from_slice(&frame(0, 0, 1, &[1, 2, 3]));
        let mut truncated = PREFACE.to_vec();
        truncated.extend_from_slice(&frame(1, 0, 1, &[0x82, 0x86])[..8]);
        let mut interrupted = PREFACE.to_vec();
        interrupted.extend_from_slice(&frame(1, 0, 1, &[0x82, 0x86]));
        interrupted.extend_from_slice(&frame(0, 0, 1, &[1, 2, 3]));
        let mut huge_frame = PREFACE.to_vec();
        huge_frame.extend_from_slice(&frame(1, FLAG_END_HEADERS, 1, &vec![0x82; MAX_FRAME + 1]));
        let mut cut_block = PREFACE.to_vec();
        cut_block.extend_from_slice(&frame(1, 0, 1, &[0x82, 0x86]));
        cut_block.extend_from_slice(&frame(9, 0, 1, &[0x84])[..10]);
        for wire in [garbage.clone(), http1, headers_garbage, truncated, interrupted, huge_frame, cut_block] {
            for sizes in SIZES {
                for &read in READS {
                    assert_eq!(through(&wire, sizes, read).await.expect("read"), wire);
                }
            }
        }
        // Random bytes after a valid preface, many seeds: never a panic.
        for seed in 1..300u32 {
            let mut x = seed;
            let mut wire = PREFACE.to_vec();
            for _ in 0..400 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                wire.push(match x % 7 {
                    0 => 1,
                    1 => 0,
                    2 => 9,
                    _ => (x >> 24) as u8,
                });
            }
            let _ = through(&wire, &[13, 1, 70], 64).await;
        }
    }

    #[tokio::test]
    async fn fault_after_a_rewrite_fails_the_connection() {
        let mut block = vec![0x83, 0x86];
        huffman_literal(&mut block, ":authority", "http://127.0.0.1:2379");
        let wire = connection(&[
            frame(1, FLAG_END_HEADERS, 1, &block),
            // Index 70 is past the end of the dynamic table.
            frame(1, FLAG_END_HEADERS, 3, &[0x83, 0x80 | 70]),
        ]);
        let error = through(&wire, &[1 << 20], 8192).await.expect_err("must fail");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        // The same bad block before any rewrite just goes on to h2.
        let wire = connection(&[frame(1, FLAG_END_HEADERS, 3, &[0x83, 0x80 | 70])]);
        assert_eq!(through(&wire, &[1 << 20], 8192).await.expect("read"), wire);
    }

    #[tokio::test]
    async fn oversized_decoded_block_is_refused_after_rewrite_and_passed_before() {
        // 2 KiB entry in the table, then a block referring to it 40 times (80 KiB decoded).
        let mut setup = vec![0x83, 0x86, 0x40, 0x01, b'k', 0x7f, 0x81, 0x0f];
        setup.extend_from_slice(&[b'v'; 2048]);
        let mut bomb = vec![0x83];
        bomb.extend(std::iter::repeat_n(0x80 | 62, 40));
        let wire = connection(&[frame(1, FLAG_END_HEADERS, 1, &setup), frame(1, FLAG_END_HEADERS, 3, &bomb)]);
        assert_eq!(through(&wire, &[1 << 20], 8192).await.expect("read"), wire);

        let mut first = vec![0x83, 0x86];
        huffman_literal(&mut first, ":authority", "http://127.0.0.1:2379");
        first.extend_from_slice(&setup[2..]);
        let wire = connection(&[frame(1, FLAG_END_HEADERS, 1, &first), frame(1, FLAG_END_HEADERS, 3, &bomb)]);
        assert!(through(&wire, &[1 << 20], 8192).await.is_err());
    }

    #[tokio::test]
    async fn inactive_wrapper_changes_nothing() {
        let mut block = vec![0x83, 0x86];
        huffman_literal(&mut block, ":authority", "http://127.0.0.1:2379");
        let wire = connection(&[frame(1, FLAG_END_HEADERS, 1, &block)]);
        let inner = Chunked { data: wire.clone(), at: 0, sizes: vec![7], turn: 0, stall: false };
        let mut fix = AuthorityFix::new(inner, false);
        let mut out = Vec::new();
        fix.read_to_end(&mut out).await.expect("read");
        assert_eq!(out, wire);
    }
}
