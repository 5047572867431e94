//! Bytes read from the dispatcher's queue, in arbitrary chunks, through the frame decoder: no
//! panic, no unbounded buffering, every error prints; a frame that decodes re-encodes to a frame
//! that decodes to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use push_core::ipc::queue::{encode, Decoder};

fuzz_target!(|data: &[u8]| {
    // The first byte chooses the chunk size the pipe delivers the rest in.
    let Some((&chunk, stream)) = data.split_first() else {
        return;
    };
    let chunk = chunk as usize % 64 + 1;
    let mut decoder = Decoder::default();
    for piece in stream.chunks(chunk) {
        decoder.push(piece);
        while let Some(result) = decoder.next_message() {
            match result {
                Ok(message) => {
                    if let Ok(frame) = encode(&message) {
                        let mut again = Decoder::default();
                        again.push(&frame);
                        assert_eq!(again.next_message(), Some(Ok(message)));
                    }
                }
                Err(e) => {
                    let _ = format!("{e:?}");
                }
            }
        }
    }
});
