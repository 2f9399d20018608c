//! The single-writer queue's decoders. The first byte picks the path:
//! 0 the owner's TCP side (magic, hello, frames, merge; the second byte sets
//! how reads cut the stream), 1 a worker reading the owner's TCP answers,
//! 2 an ipc-channel message (owner and worker side).
#![no_main]

use ranklog::fuzzing::queue;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            let Some((&chunk, stream)) = rest.split_first() else {
                return;
            };
            queue::owner_tcp(usize::from(chunk) + 1, stream);
        }
        1 => queue::worker_tcp(rest),
        _ => queue::ipc_message(rest),
    }
});
