//! AFL entry point of the `frame_envelope` target (see src/targets/frame_envelope.rs).

fn main() {
    afl::fuzz!(|data: &[u8]| {
        opencore_fuzz::targets::run("frame_envelope", data);
    });
}
