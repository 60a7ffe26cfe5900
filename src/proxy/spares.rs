//! What a worker keeps for its connections' next requests: read buffers (for clients and for
//! pods), head buffers, header maps, lists of a head's lines and the heap slots requests run in
//! (docs/h1-plan.md step 6).
//! A connection takes them when a request arrives and gives them back when it waits, so an
//! idle connection (a client's, or a pooled one to a pod) holds none of them and a request in
//! the steady state allocates none of them. Each worker is a single-threaded runtime, so one
//! set per thread; each kind keeps at most [`KEEP`], so a burst's worth is not held for ever.

use std::any::Any;
use std::cell::RefCell;
use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;

use crate::h1::lines::ParsedHead;
use crate::upstream::h1_pod;

/// What a read for a request head asks for at least: most heads fit, and a slow client's
/// half head holds no more (nginx's `client_header_buffer_size` is 1 KiB). A longer head
/// grows the buffer.
pub const READ_SIZE: usize = 2048;
/// Spares of each kind a worker keeps (about the connections it serves at once under load).
const KEEP: usize = 128;
/// A head buffer that grew past this (a huge head) is not kept.
const HEAD_KEEP: usize = 16 * 1024;
/// A header map that grew past this many lines is not kept.
const MAP_KEEP: usize = 128;
/// The block small per-request values are copied into.
const SMALL_BLOCK: usize = 2048;

struct Spares {
    reads: Vec<BytesMut>,
    /// Buffers a pod's response is read into; handed from one pod connection to the next, the
    /// most recently used first, so a response lands in memory that is still in the cache.
    pod_reads: Vec<BytesMut>,
    heads: Vec<Vec<u8>>,
    maps: Vec<HeaderMap>,
    /// (Boxed: a request holds a pointer to its head's lines, lent and given back whole.)
    #[allow(clippy::vec_box)]
    heads_parsed: Vec<Box<ParsedHead>>,
    /// Where the next small value is copied (see [`small_bytes`]).
    small: Option<BytesMut>,
    /// Empty request slots, of whichever future types the worker's connections run.
    slots: Vec<Box<dyn Any>>,
}

thread_local! {
    static SPARES: RefCell<Spares> =
        const { RefCell::new(Spares {
            reads: Vec::new(),
            pod_reads: Vec::new(),
            heads: Vec::new(),
            maps: Vec::new(),
            heads_parsed: Vec::new(),
            small: None,
            slots: Vec::new(),
        }) };
}

/// A spare from `list`, if the worker has one.
fn take<T>(list: fn(&mut Spares) -> &mut Vec<T>) -> Option<T> {
    SPARES.with_borrow_mut(|s| list(s).pop())
}

/// Puts `spare` back on `list` unless it holds [`KEEP`] already, or the thread is ending (its
/// spares are gone): then it is simply dropped.
fn keep<T>(list: fn(&mut Spares) -> &mut Vec<T>, spare: T) {
    let _ = SPARES.try_with(|s| {
        let mut spares = s.borrow_mut();
        let list = list(&mut spares);
        if list.len() < KEEP {
            list.push(spare);
        }
    });
}

/// A buffer to read a client into, with at least [`READ_SIZE`] free when it is unshared.
pub fn read_buffer() -> BytesMut {
    buffer_from(|s| &mut s.reads, READ_SIZE)
}

/// Takes back a read buffer that holds nothing (a buffer with unread bytes stays with its
/// connection).
pub fn give_read_buffer(buf: &mut BytesMut) {
    if !buf.is_empty() {
        return;
    }
    let buf = std::mem::take(buf);
    // (One an upload grew is not kept: spares stay small.)
    if buf.capacity() == 0 || buf.capacity() > 4 * READ_SIZE {
        return;
    }
    keep(|s| &mut s.reads, buf);
}

/// Makes room to read a pod's response into `buf`: a spare buffer when the connection holds
/// none (it gave its own back when it went idle), else at least [`h1_pod::READ_SIZE`] free.
pub fn room_for_pod(buf: &mut BytesMut) {
    if buf.capacity() == 0 {
        *buf = buffer_from(|s| &mut s.pod_reads, h1_pod::READ_SIZE);
    } else {
        buf.reserve(h1_pod::READ_SIZE);
    }
}

/// Takes back a pod connection's read buffer as the connection goes idle, if it holds nothing.
/// One whose last body took all its room has no capacity left but still holds its memory,
/// which `reserve` reclaims once that body has been written: it is kept too.
pub fn give_pod_buffer(buf: &mut BytesMut) {
    if buf.is_empty() && buf.capacity() <= 2 * h1_pod::READ_SIZE {
        keep(|s| &mut s.pod_reads, std::mem::take(buf));
    }
}

fn buffer_from(list: fn(&mut Spares) -> &mut Vec<BytesMut>, size: usize) -> BytesMut {
    let mut buf = take(list).unwrap_or_default();
    // Reclaims the whole allocation in place once the last request's head is dropped.
    buf.reserve(size);
    buf
}

/// A buffer to write a head into, lent until it is dropped.
pub struct HeadBuffer(Vec<u8>);

impl HeadBuffer {
    pub fn lend() -> HeadBuffer {
        HeadBuffer(take(|s| &mut s.heads).unwrap_or_else(|| Vec::with_capacity(512)))
    }
}

impl std::ops::Deref for HeadBuffer {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl std::ops::DerefMut for HeadBuffer {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

impl Drop for HeadBuffer {
    fn drop(&mut self) {
        let mut out = std::mem::take(&mut self.0);
        if out.capacity() == 0 || out.capacity() > HEAD_KEEP {
            return;
        }
        out.clear();
        keep(|s| &mut s.heads, out);
    }
}

/// Room for a parsed head's bytes and lines, lent until it is dropped (a request holds a
/// pointer to it, not the lines).
pub struct HeadLines(Option<Box<ParsedHead>>);

impl HeadLines {
    pub fn lend() -> HeadLines {
        HeadLines(Some(take(|s| &mut s.heads_parsed).unwrap_or_default()))
    }
}

impl std::ops::Deref for HeadLines {
    type Target = ParsedHead;
    fn deref(&self) -> &ParsedHead {
        self.0.as_deref().expect("lent until dropped")
    }
}

impl std::ops::DerefMut for HeadLines {
    fn deref_mut(&mut self) -> &mut ParsedHead {
        self.0.as_deref_mut().expect("lent until dropped")
    }
}

impl Drop for HeadLines {
    fn drop(&mut self) {
        if let Some(mut head) = self.0.take() {
            head.clear();
            keep(|s| &mut s.heads_parsed, head);
        }
    }
}

/// An empty header map.
pub fn header_map() -> HeaderMap {
    take(|s| &mut s.maps).unwrap_or_default()
}

/// Takes back a header map whose request or response is written; its values are dropped.
pub fn give_header_map(mut map: HeaderMap) {
    if map.capacity() == 0 || map.capacity() > MAP_KEEP {
        return;
    }
    map.clear();
    keep(|s| &mut s.maps, map);
}

/// `value` as `Bytes` of its own, copied into a block shared with the worker's other small
/// values (a request ID): one allocation per block, not one per value. A block is freed when
/// the last value in it is dropped.
pub fn small_bytes(value: &[u8]) -> Bytes {
    if value.len() > SMALL_BLOCK / 8 {
        return Bytes::copy_from_slice(value);
    }
    SPARES.with_borrow_mut(|s| {
        let block = s.small.get_or_insert_with(|| BytesMut::with_capacity(SMALL_BLOCK));
        if block.capacity() - block.len() < value.len() {
            *block = BytesMut::with_capacity(SMALL_BLOCK);
        }
        block.extend_from_slice(value);
        block.split().freeze()
    })
}

/// A heap slot for a request's future, with the future `make` gives made in it: made where it
/// will run rather than made, then moved there (a request's future is kilobytes).
fn slot<F: 'static>(make: impl FnOnce() -> F) -> Pin<Box<Option<F>>> {
    let spare = SPARES.with_borrow_mut(|s| {
        let at = s.slots.iter().position(|slot| (**slot).is::<Option<F>>())?;
        Some(s.slots.swap_remove(at))
    });
    let mut slot = match spare.map(|slot| slot.downcast::<Option<F>>()) {
        Some(Ok(slot)) => slot,
        _ => Box::new(None),
    };
    // A spare is empty, so nothing pinned is overwritten; the box is pinned once the future is
    // in it (`Pin::set` would drop the old value first, which makes the new one a temporary).
    slot.get_or_insert_with(make);
    Box::into_pin(slot)
}

/// Takes back a request slot; what it still holds is dropped first.
fn give_slot<F: 'static>(mut slot: Pin<Box<Option<F>>>) {
    slot.set(None);
    // SAFETY: the slot holds no value: `set(None)` dropped the future in place, so the pinning
    // promise (a pinned value is dropped before its memory is reused) is kept, and an empty
    // `Option` has nothing pinned to move.
    let slot = unsafe { Pin::into_inner_unchecked(slot) };
    keep(|s| &mut s.slots, slot as Box<dyn Any>);
}

/// A future made in a slot the worker lends ([`slot`]) and given back when it ends or is dropped:
/// a request's future is kilobytes, and whoever holds a `Lent` (a connection, hyper's HTTP/2
/// stream task) holds and moves a pointer instead.
pub struct Lent<F: 'static> {
    slot: Option<Pin<Box<Option<F>>>>,
}

impl<F: 'static> Lent<F> {
    pub fn new(make: impl FnOnce() -> F) -> Self {
        Lent { slot: Some(slot(make)) }
    }

    /// The slot back to the worker (once), what it holds dropped.
    fn give_back(&mut self) {
        if let Some(slot) = self.slot.take() {
            give_slot(slot);
        }
    }
}

impl<F: std::future::Future + 'static> std::future::Future for Lent<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<F::Output> {
        let slot = self.slot.as_mut().expect("a `Lent` polled after it ended");
        let out = std::task::ready!(slot.as_mut().as_pin_mut().expect("made in its slot").poll(cx));
        self.give_back();
        std::task::Poll::Ready(out)
    }
}

impl<F: 'static> Drop for Lent<F> {
    fn drop(&mut self) {
        self.give_back();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_buffer_comes_back_with_its_memory() {
        let mut buf = read_buffer();
        buf.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        let first = buf.as_ptr();
        let head = buf.split_to(18).freeze();
        give_read_buffer(&mut buf);
        assert_eq!(buf.capacity(), 0, "given back: the connection holds nothing");
        drop(head);
        let again = read_buffer();
        assert_eq!(again.as_ptr(), first, "the same allocation, reclaimed whole");
        assert!(again.capacity() >= READ_SIZE);
    }

    #[test]
    fn a_buffer_with_unread_bytes_stays() {
        let mut buf = read_buffer();
        buf.extend_from_slice(b"GET");
        give_read_buffer(&mut buf);
        assert_eq!(&buf[..], b"GET");
    }

    #[test]
    fn small_values_share_a_block_and_keep_their_bytes() {
        let a = small_bytes(b"0123456789abcdef0123456789abcdef");
        let b = small_bytes(b"fedcba9876543210fedcba9876543210");
        assert_eq!(&a[..], b"0123456789abcdef0123456789abcdef");
        assert_eq!(&b[..], b"fedcba9876543210fedcba9876543210");
        assert_eq!(a.as_ptr() as usize + 32, b.as_ptr() as usize, "one block");
        let many: Vec<Bytes> = (0..200u8).map(|i| small_bytes(&[i; 32])).collect();
        assert!(many.iter().enumerate().all(|(i, v)| v[..] == [i as u8; 32]), "a new block when one is full");
    }

    #[test]
    fn header_maps_and_head_buffers_come_back_empty() {
        let mut map = header_map();
        map.insert("x-a", http::HeaderValue::from_static("1"));
        let capacity = map.capacity();
        give_header_map(map);
        let map = header_map();
        assert!(map.is_empty());
        assert_eq!(map.capacity(), capacity);
        let mut out = HeadBuffer::lend();
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        let at = out.as_ptr();
        drop(out);
        let out = HeadBuffer::lend();
        assert!(out.is_empty());
        assert_eq!(out.as_ptr(), at);
    }

    #[test]
    fn a_lent_future_gives_its_slot_back_when_it_ends_or_is_dropped() {
        use std::future::Future;
        use std::task::{Context, Poll, Waker};
        let mut cx = Context::from_waker(Waker::noop());
        // Ends: the slot is back, and the next future of the type is made in it.
        let mut ended = Lent::new(|| std::future::ready(7u16));
        let at = &**ended.slot.as_ref().unwrap() as *const Option<std::future::Ready<u16>> as usize;
        assert_eq!(Pin::new(&mut ended).poll(&mut cx), Poll::Ready(7));
        assert!(ended.slot.is_none(), "given back as it ended");
        let again = Lent::new(|| std::future::ready(8u16));
        assert_eq!(&**again.slot.as_ref().unwrap() as *const Option<std::future::Ready<u16>> as usize, at);
        // Dropped before it ends (a stream the client reset): what it held is dropped too.
        drop(again);
        let held = std::sync::Arc::new(());
        let pending = {
            let held = held.clone();
            Lent::new(move || async move {
                std::future::pending::<()>().await;
                drop(held);
            })
        };
        let mut pending = pending;
        assert!(Pin::new(&mut pending).poll(&mut cx).is_pending());
        assert_eq!(std::sync::Arc::strong_count(&held), 2);
        drop(pending);
        assert_eq!(std::sync::Arc::strong_count(&held), 1, "the future was dropped with its slot");
    }

    #[test]
    fn slots_come_back_by_type() {
        let a: Pin<Box<Option<u64>>> = slot(|| 7);
        let a_at = &*a as *const Option<u64> as usize;
        give_slot(a);
        let b: Pin<Box<Option<[u8; 64]>>> = slot(|| [1; 64]);
        assert_eq!(*b, Some([1; 64]));
        give_slot(b);
        let again: Pin<Box<Option<u64>>> = slot(|| 8);
        assert_eq!(&*again as *const Option<u64> as usize, a_at);
        assert_eq!(*again, Some(8), "made anew in the same memory");
        let other: Pin<Box<Option<[u8; 64]>>> = slot(|| [2; 64]);
        assert_eq!(*other, Some([2; 64]), "what a slot held is dropped when it is given back");
    }
}
