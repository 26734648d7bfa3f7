//! AUTH [username] password: the default user with `requirepass`.

use bytes::Bytes;

use super::Ctx;
use crate::resp::backend::Backend;
use crate::resp::exec::Job;

use super::syntax_error;
use crate::resp::frame::Frame;

/// Redis's answer to AUTH when no password is configured.
const NO_PASSWORD_SET: &str = "ERR AUTH <password> called without any password configured for \
     the default user. Are you sure your configuration is correct?";

pub fn prepare<B: Backend>(cx: &mut Ctx<'_, B>, args: &[Bytes]) -> Job {
    let (user, password) = match args {
        [_, password] => {
            if cx.shared.options.requirepass.is_empty() {
                return Job::Now(Frame::error(NO_PASSWORD_SET));
            }
            (&b"default"[..], password)
        }
        [_, user, password] => (&user[..], password),
        _ => return Job::Now(syntax_error()),
    };
    Job::Now(match check(cx, user, password) {
        Ok(()) => Frame::ok(),
        Err(frame) => frame,
    })
}

/// Checks a user and password, and marks the connection authenticated when they match.
pub fn check<B: Backend>(cx: &mut Ctx<'_, B>, user: &[u8], password: &[u8]) -> Result<(), Frame> {
    let required = cx.shared.options.requirepass.as_bytes();
    let matches = user == b"default" && (required.is_empty() || constant_eq(required, password));
    if matches {
        cx.client.authenticated = true;
        Ok(())
    } else {
        tracing::info!(client = cx.client.id, "authentication failed");
        Err(Frame::error(
            "WRONGPASS invalid username-password pair or user is disabled.",
        ))
    }
}

/// Compares without stopping at the first difference.
fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
