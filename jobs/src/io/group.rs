//! Ending a dead consumer's group membership from another process: the Kafka protocol's
//! FindCoordinator (v0) and LeaveGroup (v0) for a member id, spoken directly, because
//! librdkafka sends LeaveGroup only for its own member. A process that replaces a crashed
//! one (see `stream::membership`) uses it so that the group need not wait out the dead
//! member's session. Blocking, each step bounded by a timeout; plaintext listeners only.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::{Error, Result};

const FIND_COORDINATOR: i16 = 10;
const LEAVE_GROUP: i16 = 13;
/// The member was not in the group (it had already left or expired): nothing to end.
pub const UNKNOWN_MEMBER_ID: i16 = 25;

fn err(what: impl Into<String>) -> Error {
    Error::Internal(format!("group membership: {}", what.into()))
}

/// A request: size, header v1 (api key, version 0, correlation id, client id), body.
fn request(api_key: i16, correlation: i32, body: &[u8]) -> Vec<u8> {
    let mut header = Vec::with_capacity(16 + body.len());
    header.extend_from_slice(&api_key.to_be_bytes());
    header.extend_from_slice(&0i16.to_be_bytes());
    header.extend_from_slice(&correlation.to_be_bytes());
    string(&mut header, "jobs");
    header.extend_from_slice(body);
    let mut out = (header.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&header);
    out
}

fn string(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as i16).to_be_bytes());
    buf.extend_from_slice(s.as_bytes());
}

/// Reads big-endian fields off a response, every read bounds-checked.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N]> {
        if self.0.len() < N {
            return Err(err("response truncated"));
        }
        let (head, rest) = self.0.split_at(N);
        self.0 = rest;
        Ok(head.try_into().expect("split at N"))
    }
    fn i16(&mut self) -> Result<i16> {
        self.take::<2>().map(i16::from_be_bytes)
    }
    fn i32(&mut self) -> Result<i32> {
        self.take::<4>().map(i32::from_be_bytes)
    }
    fn string(&mut self) -> Result<String> {
        let n = self.i16()?;
        let n = usize::try_from(n).map_err(|_| err("null string"))?;
        if self.0.len() < n {
            return Err(err("response truncated"));
        }
        let (s, rest) = self.0.split_at(n);
        self.0 = rest;
        String::from_utf8(s.to_vec()).map_err(|_| err("string not UTF-8"))
    }
}

/// Sends one request and returns the response body (after its correlation id).
fn call(addr: &str, api_key: i16, body: &[u8], timeout: Duration) -> Result<Vec<u8>> {
    let target = addr
        .to_socket_addrs()
        .map_err(|e| err(format!("{addr}: {e}")))?
        .next()
        .ok_or_else(|| err(format!("{addr}: no address")))?;
    let mut s = TcpStream::connect_timeout(&target, timeout)
        .map_err(|e| err(format!("connect to {addr}: {e}")))?;
    s.set_read_timeout(Some(timeout))
        .and_then(|()| s.set_write_timeout(Some(timeout)))
        .map_err(|e| err(e.to_string()))?;
    let correlation = 1;
    s.write_all(&request(api_key, correlation, body))
        .map_err(|e| err(format!("send to {addr}: {e}")))?;
    let mut size = [0u8; 4];
    s.read_exact(&mut size)
        .map_err(|e| err(format!("read from {addr}: {e}")))?;
    let size = usize::try_from(i32::from_be_bytes(size)).map_err(|_| err("negative size"))?;
    if !(4..=1 << 20).contains(&size) {
        return Err(err(format!("response of {size} bytes")));
    }
    let mut resp = vec![0u8; size];
    s.read_exact(&mut resp)
        .map_err(|e| err(format!("read from {addr}: {e}")))?;
    let mut f = Fields(&resp);
    if f.i32()? != correlation {
        return Err(err("response to another request"));
    }
    Ok(f.0.to_vec())
}

/// Asks the brokers for the group's coordinator: `host:port`.
fn coordinator(brokers: &str, group: &str, timeout: Duration) -> Result<String> {
    let mut body = Vec::new();
    string(&mut body, group);
    let mut last = err(format!("no broker in {brokers:?}"));
    for b in brokers.split(',').map(str::trim).filter(|b| !b.is_empty()) {
        match call(b, FIND_COORDINATOR, &body, timeout) {
            Ok(resp) => {
                let mut f = Fields(&resp);
                let code = f.i16()?;
                let _node = f.i32()?;
                let (host, port) = (f.string()?, f.i32()?);
                if code != 0 {
                    return Err(err(format!(
                        "FindCoordinator for {group}: error code {code}"
                    )));
                }
                return Ok(format!("{host}:{port}"));
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Ends `member_id`'s membership of `group`: the broker's error code (0, or
/// [`UNKNOWN_MEMBER_ID`] when it was not a member any more).
pub fn leave(brokers: &str, group: &str, member_id: &str, timeout: Duration) -> Result<i16> {
    let addr = coordinator(brokers, group, timeout)?;
    let mut body = Vec::new();
    string(&mut body, group);
    string(&mut body, member_id);
    let resp = call(&addr, LEAVE_GROUP, &body, timeout)?;
    Fields(&resp).i16()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_framed_as_the_protocol_says() {
        let mut body = Vec::new();
        string(&mut body, "g");
        string(&mut body, "m-1");
        let r = request(LEAVE_GROUP, 7, &body);
        // size, api key 13, version 0, correlation 7, client id "jobs", then the two strings
        let want: Vec<u8> = [
            &[0, 0, 0, 22][..],
            &[0, 13, 0, 0, 0, 0, 0, 7],
            &[0, 4, b'j', b'o', b'b', b's'],
            &[0, 1, b'g'],
            &[0, 3, b'm', b'-', b'1'],
        ]
        .concat();
        assert_eq!(r, want);
        let mut f = Fields(&[0, 25, 0, 2, b'h', b'i']);
        assert_eq!(f.i16().unwrap(), UNKNOWN_MEMBER_ID);
        assert_eq!(f.string().unwrap(), "hi");
        assert!(f.i16().is_err(), "truncated");
    }
}
